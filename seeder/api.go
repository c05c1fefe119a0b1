package seeder

import (
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/pxe"
)

// The print server's own records become the wire types of package api
// here, field by field: a change to a gossip, hosts or pxe struct never
// reaches the JSON unless it is written here too.

// hostStatus is a workstation member of the gossip as the lab status shows it.
func hostStatus(m gossip.Member) api.HostStatus {
	ws := workstationStatus(m.Status)
	return api.HostStatus{Name: m.Name, Addr: m.Addr, State: m.State, Phase: ws.Phase, Status: ws}
}

func workstationStatus(st gossip.Status) api.WorkstationStatus {
	return api.WorkstationStatus{
		Phase: st.Phase.String(), Image: st.Image, TorrentAddr: st.TorrentAddr,
		Percent: st.Percent, Chunks: int(st.Chunks), ChunksTotal: int(st.ChunksTotal),
		DownRate: st.DownRate, UpRate: st.UpRate,
		FromServer: st.FromServer, FromPeers: st.FromPeers, Uploaded: st.Uploaded,
		Peers: int(st.Peers), ETA: int64(st.ETA), HashFailures: int64(st.HashFailures),
		Started: unixTime(st.StartedUnix), Updated: unixTime(st.UpdatedUnix),
		Error: st.Err,
	}
}

// unixTime is Unix seconds as a UTC time; 0 is the zero time (unknown).
func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func apiReports(rs []hosts.Report) []api.Report {
	if rs == nil {
		return nil
	}
	out := make([]api.Report, len(rs))
	for i, r := range rs {
		out[i] = api.Report{Step: r.Step, State: r.State, Error: r.Error, Time: r.Time}
	}
	return out
}

func hostsReport(r api.Report) hosts.Report {
	return hosts.Report{Step: r.Step, State: r.State, Error: r.Error, Time: r.Time}
}

func apiEvents(es []pxe.Event) []api.BootEvent {
	if es == nil {
		return nil
	}
	out := make([]api.BootEvent, len(es))
	for i, e := range es {
		out[i] = api.BootEvent{Time: e.Time, Kind: string(e.Kind), Detail: e.Detail}
	}
	return out
}

func apiIdentity(id hosts.Identity) api.Identity {
	out := api.Identity{
		MAC: id.MAC, Hostname: id.Hostname, Domain: id.Domain, IP: id.IP, Prefix: id.Prefix,
		Gateway: id.Gateway, DNS: id.DNS, PrinterQueue: id.PrinterQueue, PrinterServer: id.PrinterServer,
		Display: id.Display, Image: id.Image, Filesystem: id.Filesystem, SwapMiB: id.SwapMiB, RootMiB: id.RootMiB,
		Bootloader: id.Bootloader, NextBoot: id.NextBoot, Enrolled: id.Enrolled,
		Vars: id.Vars, Templates: id.Templates,
	}
	for _, h := range id.Hooks {
		out.Hooks = append(out.Hooks, api.Hook{Name: h.Name, Script: h.Script})
	}
	return out
}
