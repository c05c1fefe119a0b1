package main

import (
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// bar is a progress bar on stderr, shown only when stderr is a terminal.
// Its methods may be called from several goroutines and on a nil *bar.
type bar struct {
	mu sync.Mutex
	pb *progressbar.ProgressBar
}

// newBar returns a bar counting to total bytes (-1 when unknown).
func newBar(total int64, what string) *bar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return &bar{pb: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)}
}

// set moves the bar to n bytes.
func (b *bar) set(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.pb.Set64(n)
	b.mu.Unlock()
}

// done clears the bar so the summary that follows stands alone.
func (b *bar) done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.pb.Finish()
	b.pb.Clear()
	b.mu.Unlock()
}
