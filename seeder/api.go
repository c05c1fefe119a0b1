package seeder

import (
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/textsafe"
	"github.com/labseed/labseed/lifecycle"
)

// The print server's own records become the wire types of package api
// here, field by field: a change to a gossip, hosts or pxe struct never
// reaches the JSON unless it is written here too.

// What a workstation gossips, reports or sends in a boot request is shown
// on terminals (labseed status) and in logs: every string of it is cleaned
// of control characters (terminal escape sequences) and bounded here.
const (
	maxName  = 128  // names, addresses, images, kinds
	maxError = 1024 // errors and details
)

func clean(s string) string    { return textsafe.Clean(s, maxName) }
func cleanErr(s string) string { return textsafe.Clean(s, maxError) }

// hostStatus is a workstation member of the gossip as the lab status shows it.
func hostStatus(m gossip.Member) api.HostStatus {
	ws := workstationStatus(m.Status)
	return api.HostStatus{Name: clean(m.Name), Addr: clean(m.Addr), State: clean(m.State), Phase: ws.Phase, Status: ws, MAC: clean(m.Status.MAC)}
}

// bootHost is a machine's record (the table's id, if any, and its
// lifecycle record).
func bootHost(id hosts.Identity, r lifecycle.Record) api.BootHost {
	b := api.BootHost{MAC: id.MAC, Hostname: id.Hostname, IP: id.IP, NextBoot: id.NextBoot, Groups: id.Groups,
		Stage: string(r.Stage), Step: clean(r.Step), Error: cleanErr(r.Error), Started: r.Started, Heard: r.Heard, Updated: r.Updated}
	for _, rep := range r.Reports {
		b.Clone = append(b.Clone, api.Report{Step: clean(rep.Step), State: clean(rep.State), Error: cleanErr(rep.Error), Time: rep.Time,
			Detail: textsafe.Clean(rep.Detail, 1024)})
	}
	for _, e := range r.Events {
		b.Events = append(b.Events, api.BootEvent{Time: e.Time, Kind: clean(e.Kind), Detail: cleanErr(e.Detail)})
	}
	if a := r.Agent; a != nil {
		hs := hostStatus(gossip.Member{Name: a.Name, Addr: a.Addr, State: a.State, Status: a.Status})
		b.Agent = &hs
	}
	return b
}

func workstationStatus(st gossip.Status) api.WorkstationStatus {
	return api.WorkstationStatus{
		Phase: clean(st.Phase.String()), Image: clean(st.Image), TorrentAddr: clean(st.TorrentAddr),
		Percent: st.Percent, Chunks: int(st.Chunks), ChunksTotal: int(st.ChunksTotal),
		DownRate: st.DownRate, UpRate: st.UpRate,
		FromServer: st.FromServer, FromPeers: st.FromPeers, Uploaded: st.Uploaded,
		Peers: int(st.Peers), ETA: int64(st.ETA), HashFailures: int64(st.HashFailures),
		Started: unixTime(st.StartedUnix), Updated: unixTime(st.UpdatedUnix),
		Error: cleanErr(st.Err),
		Sync:  st.Sync, ChunksLocal: int(st.ChunksLocal), ChunksFetched: int(st.ChunksFetched), FilesRemoved: int64(st.FilesRemoved),
	}
}

// unixTime is Unix seconds as a UTC time; 0 is the zero time (unknown).
func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func hostsReport(r api.Report) hosts.Report {
	return hosts.Report{Step: r.Step, State: r.State, Error: r.Error, Time: r.Time, Detail: r.Detail}
}

func apiIdentity(id hosts.Identity) api.Identity {
	out := api.Identity{
		MAC: id.MAC, Hostname: id.Hostname, Domain: id.Domain, IP: id.IP, Prefix: id.Prefix,
		Gateway: id.Gateway, DNS: id.DNS, PrinterQueue: id.PrinterQueue, PrinterServer: id.PrinterServer,
		Display: id.Display, Image: id.Image, Filesystem: id.Filesystem, SwapMiB: id.SwapMiB, RootMiB: id.RootMiB,
		Bootloader: id.Bootloader, NextBoot: id.NextBoot, Enrolled: id.Enrolled, Keep: id.Keep,
		Vars: id.Vars, Templates: id.Templates,
	}
	for _, h := range id.Hooks {
		out.Hooks = append(out.Hooks, api.Hook{Name: h.Name, Script: h.Script})
	}
	return out
}
