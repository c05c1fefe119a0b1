package peer

import "time"

// stallWatch measures how long the download has made no progress (no
// piece verified, no piece data received, no deal answered by the print
// server, not even with "nothing now"): the web-seed fallback
// (Config.WebSeedAfter) goes by it.
type stallWatch struct {
	progress int64     // at since
	since    time.Time // when it last grew (or the first update)
}

// update records progress at now, a count that grows with any progress
// (bytes received and verified, deal answers), and returns how long it
// has not grown since the download began (fetching: the torrent is
// added). The time before, joining the lab's gossip, is no stall: a
// workstation of a lab of 90 that started late took 13 s to join, and
// counted them as a stall of a download not begun.
func (w *stallWatch) update(now time.Time, progress int64, fetching bool) time.Duration {
	if !fetching {
		w.since = time.Time{}
		return 0
	}
	if progress != w.progress || w.since.IsZero() {
		w.progress, w.since = progress, now
	}
	return now.Sub(w.since)
}

// webSeedDue reports whether the print server's HTTP web seed is to be
// added now: the download has stalled longer than Config.WebSeedAfter,
// pieces are still missing, and it was not added before nor forbidden
// (Config.NoWebSeed). (It is not used from the start: see NoWebSeed.)
func webSeedDue(cfg *Config, added bool, stalled time.Duration, remaining int64) bool {
	return !added && !cfg.NoWebSeed && remaining > 0 && stalled > cfg.WebSeedAfter
}
