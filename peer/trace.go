package peer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// traceEvery is how often the torrent client's status is traced.
const traceEvery = 5 * time.Second

// tracer appends the torrent client's own status (every connection's
// request queue, choke and interest flags, bytes) every traceEvery to
// DIR/ADDR.status, where DIR is Config.TraceDir and ADDR the agent's
// torrent address: how swarm behaviour in the lab bench is diagnosed
// (docs/lab-bench.md). The zero tracer (no directory) traces nothing.
type tracer struct {
	dir, name string
	at        time.Time // last trace
}

// trace writes the status write gives, elapsed into the run, if the
// last trace is traceEvery old. Errors are ignored: tracing is a
// diagnosis aid that must not stop a run.
func (tr *tracer) trace(now time.Time, elapsed time.Duration, write func(io.Writer)) {
	if tr.dir == "" || now.Sub(tr.at) < traceEvery {
		return
	}
	tr.at = now
	f, err := os.OpenFile(filepath.Join(tr.dir, tr.name+".status"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %.3f s\n", elapsed.Seconds())
	write(f)
}
