package metrics

import (
	"runtime"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// collector builds the lab's metrics from a Snapshot at scrape time. Its
// descriptors are built once, in newCollector.
type collector struct {
	m *Metrics

	hostReceived, hostUploaded, hostHashFailures *prometheus.Desc
	hostPhase, hostGossipState                   *prometheus.Desc
	hostProgress, hostChunksApplied, hostChunks  *prometheus.Desc
	hostPeers, hostETA                           *prometheus.Desc
	hostStart, hostUpdated                       *prometheus.Desc
	hostSync, hostChunksLocal, hostChunksFetched *prometheus.Desc
	hostFilesRemoved                             *prometheus.Desc

	gossipMembers *prometheus.Desc

	imagePayload, imageInput, imageVersion, imageChunks *prometheus.Desc

	serverUploaded, serverWebSeed, serverDealt, serverPeers, serverHashFailures *prometheus.Desc

	deployMachines, deployActive, deployInfo, deployStart *prometheus.Desc
	replBytes, replChunks, replRefused                    *prometheus.Desc
	replFromFollowers, replToFollowers                    *prometheus.Desc

	buildInfo *prometheus.Desc
}

// deployStates are the values of the state label of
// labseed_deploy_machines, in the order of a deploy.
var deployStates = []string{"waiting", "woken", "booted", "cloning", "done", "failed", "never-booted", "cancelled"}

func newCollector(m *Metrics) *collector {
	host := []string{"host"}
	img := []string{"image"}
	d := prometheus.NewDesc
	return &collector{
		m: m,

		hostReceived:      d("labseed_host_received_bytes_total", "Payload bytes a workstation received, by source: the print server (BitTorrent and web seed) or other workstations. Does not reset when the workstation's agent restarts.", []string{"host", "source"}, nil),
		hostUploaded:      d("labseed_host_uploaded_bytes_total", "Payload bytes a workstation uploaded to other workstations. Does not reset when its agent restarts.", host, nil),
		hostHashFailures:  d("labseed_host_hash_failures_total", "Pieces a workstation received that failed their hash check. Does not reset when its agent restarts.", host, nil),
		hostPhase:         d("labseed_host_phase", "Phase a workstation is in: 1 for the current phase, 0 for the others.", []string{"host", "phase"}, nil),
		hostGossipState:   d("labseed_host_gossip_state", "Gossip member state of a workstation: 1 for the current state (alive, suspect, dead, left), 0 for the others.", []string{"host", "state"}, nil),
		hostProgress:      d("labseed_host_progress_ratio", "Fraction of the image a workstation has, 0 to 1.", host, nil),
		hostChunksApplied: d("labseed_host_chunks_applied", "Chunks a workstation has applied to its disk.", host, nil),
		hostChunks:        d("labseed_host_chunks", "Chunks in the image a workstation is fetching.", host, nil),
		hostPeers:         d("labseed_host_peers", "BitTorrent peers a workstation is connected to.", host, nil),
		hostETA:           d("labseed_host_eta_seconds", "A workstation's estimate of the time left until it has the image (0 when unknown or done).", host, nil),
		hostStart:         d("labseed_host_start_time_seconds", "Start time of a workstation's agent process, in seconds since the Unix epoch.", host, nil),
		hostUpdated:       d("labseed_host_last_status_timestamp_seconds", "Time a workstation last updated its gossiped status, in seconds since the Unix epoch.", host, nil),
		hostSync:          d("labseed_host_sync", "1 when a workstation re-images a disk that holds an image by syncing it (only what changed is fetched and written), 0 for a full clone.", host, nil),
		hostChunksLocal:   d("labseed_host_chunks_local", "Chunks of the image a syncing workstation found on its own disk (not fetched; seeded to the lab).", host, nil),
		hostChunksFetched: d("labseed_host_chunks_fetched", "Chunks a workstation applied from the lab (the print server or other workstations) in its current run.", host, nil),
		hostFilesRemoved:  d("labseed_host_files_removed", "Paths a syncing workstation removed from its disk because the image does not hold them (what students added), once every chunk is applied.", host, nil),

		gossipMembers: d("labseed_gossip_members", "Workstations the print server's gossip knows, by member state.", []string{"state"}, nil),

		imagePayload: d("labseed_image_payload_bytes", "Size of the payload of a published image's current version: what every workstation downloads.", img, nil),
		imageInput:   d("labseed_image_input_bytes", "Size of the tarball a published image's current version was made from.", img, nil),
		imageVersion: d("labseed_image_version", "Current version number of a published image.", img, nil),
		imageChunks:  d("labseed_image_chunks", "Chunks in a published image's current version.", img, nil),

		serverUploaded:     d("labseed_server_uploaded_bytes_total", "Payload bytes the print server uploaded over BitTorrent.", nil, nil),
		serverWebSeed:      d("labseed_server_webseed_bytes_total", "Payload bytes the print server served over HTTP as a web seed.", nil, nil),
		serverDealt:        d("labseed_server_dealt_bytes_total", "Payload bytes the print server dealt to workstations over HTTP (each piece into the lab once).", nil, nil),
		serverPeers:        d("labseed_server_peers", "BitTorrent peers connected to the print server.", nil, nil),
		serverHashFailures: d("labseed_server_hash_failures_total", "Pieces the print server received that failed their hash check.", nil, nil),

		deployMachines:    d("labseed_deploy_machines", "Machines of the print server's deploy task (the current one, or the last; 0 before the first), by state: waiting, woken (not booted yet), booted, cloning, done, failed, never-booted, cancelled.", []string{"state"}, nil),
		deployActive:      d("labseed_deploy_active", "1 while a deploy task is scheduled or running, 0 once it ended.", nil, nil),
		deployInfo:        d("labseed_deploy_info", "Always 1; labels give the deploy task's id, image and state (scheduled, running, finished, cancelled, failed).", []string{"id", "image", "state"}, nil),
		deployStart:       d("labseed_deploy_start_time_seconds", "When the deploy task started, in seconds since the Unix epoch.", nil, nil),
		replBytes:         d("labseed_replication_bytes_total", "Payload bytes this print server fetched from the one it follows (labseed serve --upstream).", nil, nil),
		replChunks:        d("labseed_replication_chunks_total", "Chunks of new versions this print server got for replication, by source: fetched from the upstream, or reused (found in its store, shared with an earlier version).", []string{"source"}, nil),
		replFromFollowers: d("labseed_replication_follower_bytes_total", "Payload bytes this print server fetched from the other followers of its upstream instead of from the upstream.", nil, nil),
		replToFollowers:   d("labseed_replication_served_bytes_total", "Payload bytes this print server served to the other followers of its upstream.", nil, nil),
		replRefused:       d("labseed_replication_refused_images", "Images of the upstream refused because their manifest is not signed with the pinned key.", nil, nil),

		buildInfo: d("labseed_build_info", "Always 1; labels give labseed's version and the Go version it was built with.", []string{"version", "goversion"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.hostReceived, c.hostUploaded, c.hostHashFailures, c.hostPhase, c.hostGossipState,
		c.hostProgress, c.hostChunksApplied, c.hostChunks, c.hostPeers, c.hostETA,
		c.hostStart, c.hostUpdated, c.hostSync, c.hostChunksLocal, c.hostChunksFetched, c.hostFilesRemoved, c.gossipMembers,
		c.imagePayload, c.imageInput, c.imageVersion, c.imageChunks,
		c.serverUploaded, c.serverWebSeed, c.serverDealt, c.serverPeers, c.serverHashFailures, c.buildInfo,
		c.deployMachines, c.deployActive, c.deployInfo, c.deployStart,
		c.replBytes, c.replChunks, c.replRefused, c.replFromFollowers, c.replToFollowers,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it takes a snapshot of the lab
// and turns it into metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap, hosts, srv := c.m.sample()
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}

	for _, h := range hosts {
		st := h.status
		counter(c.hostReceived, h.total.fromServer, h.name, "server")
		counter(c.hostReceived, h.total.fromPeers, h.name, "peers")
		counter(c.hostUploaded, h.total.uploaded, h.name)
		counter(c.hostHashFailures, h.total.hashFailures, h.name)
		oneOf(gauge, c.hostPhase, h.name, phases, st.Phase.String())
		oneOf(gauge, c.hostGossipState, h.name, memberStates, h.state)
		gauge(c.hostProgress, min(max(st.Percent/100, 0), 1), h.name)
		gauge(c.hostChunksApplied, float64(st.Chunks), h.name)
		gauge(c.hostChunks, float64(st.ChunksTotal), h.name)
		gauge(c.hostPeers, float64(st.Peers), h.name)
		gauge(c.hostETA, float64(st.ETA), h.name)
		if st.StartedUnix > 0 {
			gauge(c.hostStart, float64(st.StartedUnix), h.name)
		}
		sync := 0.0
		if st.Sync {
			sync = 1
		}
		gauge(c.hostSync, sync, h.name)
		gauge(c.hostChunksLocal, float64(st.ChunksLocal), h.name)
		gauge(c.hostChunksFetched, float64(st.ChunksFetched), h.name)
		gauge(c.hostFilesRemoved, float64(st.FilesRemoved), h.name)
		if st.UpdatedUnix > 0 {
			gauge(c.hostUpdated, float64(st.UpdatedUnix), h.name)
		}
	}

	members := map[string]int{}
	for _, s := range memberStates {
		members[s] = 0
	}
	for _, h := range workstations(snap.Hosts) {
		if _, ok := members[h.State]; ok {
			members[h.State]++
		}
	}
	for _, s := range memberStates {
		gauge(c.gossipMembers, float64(members[s]), s)
	}

	for _, im := range currentImages(snap.Images) {
		name := strings.ToValidUTF8(im.Name, "\uFFFD")
		gauge(c.imagePayload, float64(im.PayloadBytes), name)
		gauge(c.imageInput, float64(im.InputBytes), name)
		gauge(c.imageVersion, float64(im.Version), name)
		gauge(c.imageChunks, float64(im.Chunks), name)
	}

	if r := snap.Replication; r.Following {
		counter(c.replBytes, nonNeg(r.BytesFetched))
		counter(c.replChunks, nonNeg(r.ChunksFetched), "upstream")
		counter(c.replChunks, nonNeg(r.ChunksReused), "reused")
		counter(c.replChunks, nonNeg(r.ChunksFromFollowers), "followers")
		counter(c.replFromFollowers, nonNeg(r.BytesFromFollowers))
		counter(c.replToFollowers, nonNeg(r.BytesToFollowers))
		gauge(c.replRefused, float64(r.Refused))
	}
	counter(c.serverUploaded, srv.uploaded)
	counter(c.serverWebSeed, srv.webSeed)
	counter(c.serverDealt, srv.dealt)
	gauge(c.serverPeers, float64(srv.peers))
	counter(c.serverHashFailures, srv.hashFailures)

	// The deploy's counts are exported (as 0) before the first deploy, so
	// that the dashboard's panels show zeros rather than no data.
	dp := snap.Deploy
	if dp == nil {
		dp = &Deploy{}
	}
	for _, st := range deployStates {
		gauge(c.deployMachines, float64(dp.Machines[st]), st)
	}
	gauge(c.deployActive, b2f(dp.Active))
	if snap.Deploy != nil {
		valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
		gauge(c.deployInfo, 1, valid(dp.ID), valid(dp.Image), valid(dp.State))
		if !dp.Started.IsZero() {
			gauge(c.deployStart, float64(dp.Started.Unix()))
		}
	}

	gauge(c.buildInfo, 1, c.m.cfg.Version, runtime.Version())
}

// oneOf exports a state set: 1 for cur, 0 for the other values of all. A cur
// outside all is exported as well, so that a new state is not lost.
func oneOf(gauge func(*prometheus.Desc, float64, ...string), d *prometheus.Desc, host string, all []string, cur string) {
	for _, v := range all {
		gauge(d, b2f(v == cur), host, v)
	}
	if cur != "" && !slices.Contains(all, cur) {
		gauge(d, 1, host, strings.ToValidUTF8(cur, "\uFFFD"))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// currentImages returns the images with a name, the highest version of each
// name, sorted by name.
func currentImages(imgs []Image) []Image {
	best := map[string]Image{}
	for _, im := range imgs {
		if im.Name == "" {
			continue
		}
		if b, ok := best[im.Name]; !ok || im.Version > b.Version {
			best[im.Name] = im
		}
	}
	out := make([]Image, 0, len(best))
	for _, im := range best {
		out = append(out, im)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out
}
