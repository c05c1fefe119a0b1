package seeder

import (
	"reflect"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/deploy"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/pxe"
)

// TestWireConversions fills every field of the internal records and checks
// that the wire types of package api get every field: a field added to api
// and forgotten here fails.
func TestWireConversions(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	st := gossip.Status{Role: gossip.RolePeer, Phase: gossip.PhaseFailed, Image: "lab1-v3", TorrentAddr: "10.1.0.17:6881",
		HTTPAddr: "-", Percent: 41.5, Chunks: 626, ChunksTotal: 1510, DownRate: 1, UpRate: 2, FromServer: 3, FromPeers: 4,
		Uploaded: 5, Peers: 6, ETA: 7, HashFailures: 8, StartedUnix: t0.Unix() - 14, UpdatedUnix: t0.Unix(), Err: "disk full",
		Sync: true, ChunksLocal: 9, ChunksFetched: 10, FilesRemoved: 11}
	hs := hostStatus(gossip.Member{Name: "ws07", Addr: "10.1.0.17:7946", State: gossip.StateAlive, Status: withMAC(st, "52:54:00:12:34:56")})
	allSet(t, "HostStatus", reflect.ValueOf(hs))
	if hs.Phase != "failed" || hs.Status.Phase != "failed" || hs.Status.ETA != 7 || !hs.Status.Updated.Equal(t0) {
		t.Errorf("host status: %+v", hs)
	}

	id := hosts.Identity{MAC: "52:54:00:12:34:56", Hostname: "ws07", Domain: "lab", IP: "10.1.0.17", Prefix: 24,
		Gateway: "10.1.0.1", DNS: []string{"10.1.0.1"}, PrinterQueue: "q", PrinterServer: "p", Display: "1920x1080",
		Image: "lab1", Filesystem: "xfs", SwapMiB: 1, RootMiB: 2, Bootloader: "extlinux", NextBoot: hosts.BootClone,
		Enrolled: true, Keep: []string{"/home"}, Vars: map[string]string{"x_a": "b"}, Templates: map[string]string{"etc/motd": "hi"},
		Hooks: []hosts.Hook{{Name: "10-a", Script: "true"}}, Groups: []string{"b104"}}
	aid := apiIdentity(id)
	aid.MinVersion, aid.Time, aid.Nonce = 3, t0, "00ff" // handleWhoAmI sets these
	allSet(t, "Identity", reflect.ValueOf(aid))

	rep := api.Report{Step: "fetch", State: hosts.StateFailed, Error: "boom", Time: t0, Detail: "sync"}
	if got := hostsReport(rep); got != (hosts.Report{Step: "fetch", State: hosts.StateFailed, Error: "boom", Time: t0, Detail: "sync"}) {
		t.Errorf("report: %+v", got)
	}

	rec := lifecycle.Record{MAC: id.MAC, Stage: lifecycle.StageFailed, Step: "fetch", Error: "boom",
		Started: t0.Add(-time.Minute), Heard: t0, Updated: t0,
		Events:  []lifecycle.Event{{Time: t0, Kind: string(pxe.EventHTTPFile), Detail: "initrd.img"}},
		Reports: []lifecycle.Report{{Step: "fetch", State: hosts.StateFailed, Error: "boom", Time: t0, Detail: "full clone"}},
		Agent:   &lifecycle.Agent{Name: "ws07", Addr: "10.1.0.17:7946", State: gossip.StateAlive, Status: withMAC(st, id.MAC)}}
	allSet(t, "BootHost", reflect.ValueOf(bootHost(id, rec)))

	task := &deploy.Task{ID: "d1", Image: "lab1", State: deploy.TaskFailed, Wave: 4, WaveTimeout: time.Minute, WakeTries: 3,
		StallTimeout: time.Hour, At: t0, Created: t0, Started: t0, Ended: t0, Error: "x", WakeError: "y"}
	for _, s := range deploy.States {
		task.Machines = append(task.Machines, deploy.Machine{MAC: id.MAC, Hostname: "ws07", IP: "10.1.0.17", State: s,
			Woken: 2, FirstWoken: t0, LastWoken: t0, Booted: t0, Ended: t0, Changed: t0, Step: "fetch", Error: "boom"})
	}
	d := apiDeploy(task, true)
	d.Attached = true // set by the handler
	allSet(t, "Deploy", reflect.ValueOf(d))

	wr := apiWakeResult(pxe.WakeResult{Interface: "eth1", Broadcast: []byte{10, 1, 0, 255}, Port: 9, Raw: true, RawError: "-", Sent: 6}, 1)
	allSet(t, "WakeResult", reflect.ValueOf(wr))
	if wr.Broadcast != "10.1.0.255:9" {
		t.Errorf("wake result: %+v", wr)
	}
}

func withMAC(st gossip.Status, mac string) gossip.Status {
	st.MAC = mac
	return st
}

// allSet fails for every zero field in v, a struct, and the structs it holds.
func allSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		if _, ok := v.Interface().(time.Time); ok {
			break
		}
		for i := range v.NumField() {
			allSet(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
		return
	case reflect.Slice:
		for i := range v.Len() {
			allSet(t, path, v.Index(i))
		}
	}
	if v.IsZero() {
		t.Errorf("%s: not carried over", path)
	}
}
