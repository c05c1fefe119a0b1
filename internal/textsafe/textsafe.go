// Package textsafe makes strings that came from the network safe to log
// and to print on a terminal: Clean removes control characters (terminal
// escape sequences among them) and bounds the length, and Limiter lets a
// log line about one client through at most once per interval.
//
// The print server cleans what it takes in (gossip names and statuses,
// clone reports, boot events); the commands clean again what they print,
// since a print server (or whatever answers in its place) is not to be
// trusted with a terminal either.
package textsafe

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Clean returns s with every control character (C0, DEL, C1 - ESC and
// CSI among them -, and the bidirectional overrides and isolates that
// reorder what a terminal shows) and every invalid UTF-8 byte replaced by
// '?', cut to at most max bytes ("..." ends a cut string). max <= 0 means
// no bound. Tabs and newlines are replaced too: the result is one line.
func Clean(s string, max int) string {
	cut := max > 0 && len(s) > max
	if !cut && strings.IndexFunc(s, bad) < 0 {
		return s
	}
	budget := len(s) // a replacement is never longer than what it replaces
	if cut {
		budget = max - 3
	}
	var b strings.Builder
	for _, r := range s {
		if bad(r) {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > budget {
			break
		}
		b.WriteRune(r)
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// CleanLines is Clean for a message of several lines (a print server's
// list of errors): each line is cleaned, and at most maxLines are kept
// (a last line says how many were left out).
func CleanLines(s string, maxLines, max int) string {
	lines := strings.Split(s, "\n")
	left := 0
	if len(lines) > maxLines {
		left = len(lines) - maxLines
		lines = lines[:maxLines]
	}
	for i, l := range lines {
		lines[i] = Clean(l, max)
	}
	if left > 0 {
		lines = append(lines, fmt.Sprintf("(lines left out: %d)", left))
	}
	return strings.Join(lines, "\n")
}

// bad reports whether r must not reach a log or a terminal.
func bad(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true // invalid UTF-8 (or a literal U+FFFD, harmless either way)
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return !unicode.IsPrint(r) && r != ' '
}

// Limiter lets through one event per key per Interval (a log line about
// a MAC, a client address), remembering at most Keys keys: when that many
// were let through within the interval, events of new keys are dropped
// (and counted) until old ones expire. The zero Limiter lets one event per
// key per minute through, for up to 1024 keys. Safe for concurrent use.
type Limiter struct {
	// Interval is the least time between two events of one key; default
	// one minute.
	Interval time.Duration
	// Keys bounds the keys remembered; default 1024.
	Keys int

	mu      sync.Mutex
	last    map[string]time.Time
	dropped int
}

// Allow reports whether an event of key may go through at now; if so, the
// next one of key goes through an Interval later.
func (l *Limiter) Allow(key string, now time.Time) bool {
	iv, keys := l.Interval, l.Keys
	if iv <= 0 {
		iv = time.Minute
	}
	if keys <= 0 {
		keys = 1024
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok {
		if now.Sub(t) < iv {
			l.dropped++
			return false
		}
		l.last[key] = now
		return true
	}
	if len(l.last) >= keys {
		for k, t := range l.last {
			if now.Sub(t) >= iv {
				delete(l.last, k)
			}
		}
		if len(l.last) >= keys {
			l.dropped++
			return false
		}
	}
	l.last[key] = now
	return true
}

// Dropped returns how many events were dropped since the last call, and
// resets the count.
func (l *Limiter) Dropped() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.dropped
	l.dropped = 0
	return n
}
