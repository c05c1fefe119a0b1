package textsafe

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"ws01-10.1.0.17", 0, "ws01-10.1.0.17"},
		{"née à Zürich", 64, "née à Zürich"},
		{"\x1b]0;owned\x07\x1b[2J", 0, "?]0;owned??[2J"},
		{"a\u009b31mb", 0, "a?31mb"},                 // C1 CSI
		{"safe\u202etxt.exe", 0, "safe?txt.exe"},     // right-to-left override
		{"line\nother\tcol\r", 0, "line?other?col?"}, // one line
		{"bad \xff\xfe utf8", 0, "bad ?? utf8"},      // invalid bytes
		{strings.Repeat("x", 100), 10, "xxxxxxx..."}, // bounded
		{strings.Repeat("é", 10), 9, "ééé..."},       // never half a rune
		{"short", 10, "short"},
	} {
		got := Clean(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("Clean(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
		if tc.max > 0 && len(got) > tc.max {
			t.Errorf("Clean(%q, %d): %d bytes", tc.in, tc.max, len(got))
		}
	}
}

func TestLimiter(t *testing.T) {
	l := Limiter{Interval: time.Minute, Keys: 100}
	t0 := time.Now()
	if !l.Allow("a", t0) || l.Allow("a", t0.Add(59*time.Second)) || !l.Allow("a", t0.Add(61*time.Second)) {
		t.Fatal("once per key per interval")
	}
	allowed := 0
	for i := range 100000 {
		if l.Allow(fmt.Sprint(i), t0.Add(62*time.Second)) {
			allowed++
		}
	}
	if allowed != 99 || len(l.last) != 100 {
		t.Fatalf("100000 new keys: %d let through, %d remembered, want 99 and 100", allowed, len(l.last))
	}
	if d := l.Dropped(); d != 100000-99+1 {
		t.Errorf("dropped %d", d)
	}
	// Once the interval has passed, new keys go through again.
	if !l.Allow("new", t0.Add(5*time.Minute)) {
		t.Fatal("a new key after the interval")
	}
}

func TestCleanLines(t *testing.T) {
	got := CleanLines("line 1: bad\x1b[2J\nline 2: bad\tcell\nline 3\nline 4", 3, 0)
	want := "line 1: bad?[2J\nline 2: bad?cell\nline 3\n(lines left out: 1)"
	if got != want {
		t.Fatalf("CleanLines = %q, want %q", got, want)
	}
}
