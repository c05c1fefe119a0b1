// Package follow makes a print server follow another one (labseed serve
// --upstream): every image version published upstream is replicated into
// the follower's store and then served to its lab exactly as if it had
// been published there.
//
// A Follower pins the upstream's image key (Pin: the key given, or the one
// the upstream shows on first contact, kept in the store as image.pub),
// then every Interval asks the upstream for its images (GET
// /api/v1/images). For each version it lacks it fetches the signed
// manifest and torrent (GET /api/v1/images/NAME), which store.Receive
// checks against the pinned key before anything is written (another key:
// the image is refused, and the refusal is in the status); takes the
// chunks its store already holds (content-defined chunks shared with an
// earlier version: store.Receive.Reuse); fetches the others with range
// requests on the upstream's web seed (GET /seed/NAME-vN.chunks), under a
// token bucket (Config.Rate), each chunk checked against the manifest's
// SHA-256 and synced before it counts; and commits the version once it
// verifies whole. A half-replicated version is never visible to the
// follower's lab; a follower restarted resumes with the chunks it had.
// While the upstream publishes (GET /api/v1/publishing lists the chunks
// its labseed publish has written so far), the follower already fetches
// them by SHA-256 into a staging area of its store (StageDir, bounded by
// Config.StageBytes, each chunk checked against its name, never served
// to the lab), sharing the work with the other followers; when the signed
// manifest appears, the staged chunks it names are put into the version
// (checked against it) and only the rest fetched; the others are
// discarded once the upstream publishes nothing.
// It reports its replication to the upstream (POST /api/v1/followers),
// which lists its followers in its lab status.
//
// Usage:
//
//	f, err := follow.New(follow.Config{Store: st, Upstream: "10.0.0.1", Rate: 2 << 20})
//	fp, pinned, err := f.Pin(ctx)
//	err = f.Run(ctx)
package follow
