package gossip

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// keyWarnEvery rate-limits the warning about gossip that could not be
// decrypted: a workstation with a wrong key retries its join every few seconds.
const keyWarnEvery = 30 * time.Second

// logWriter adapts memberlist's *log.Logger output ("[LEVEL] memberlist: msg"
// lines) to slog at Debug level. Messages showing that a host with another lab
// key (or none) is talking to this one are also logged once at Warn level per
// keyWarnEvery, because that is a set-up mistake a sysadmin must see.
type logWriter struct {
	log         *slog.Logger
	lastKeyWarn atomic.Int64 // UnixNano
}

// Write implements io.Writer for log.Logger, which calls it once per line.
func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	ctx := context.Background()
	w.log.Debug(line, "source", "memberlist", "memberlist_level", level)
	if isKeyMismatch(line) {
		now := time.Now().UnixNano()
		last := w.lastKeyWarn.Load()
		if now-last >= int64(keyWarnEvery) && w.lastKeyWarn.CompareAndSwap(last, now) {
			w.log.Log(ctx, slog.LevelWarn,
				"gossip rejected: a host uses another lab key (or none); check the key on the host named in the detail",
				"detail", line)
		}
	}
	return len(p), nil
}

// isKeyMismatch reports whether a memberlist log message is about gossip that
// failed decryption or came unencrypted to an encrypted lab (or the reverse).
func isKeyMismatch(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "could decrypt") ||
		strings.Contains(m, "decrypt packet failed") ||
		strings.Contains(m, "remote state is not encrypted") ||
		strings.Contains(m, "encryption is not configured")
}
