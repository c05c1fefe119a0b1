package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseRate parses a link rate as sysadmins write it: "100mbit", "20Mbit/s",
// "1gbit", "12MB/s", "500kbit", or a plain number of bytes per second.
// It returns bytes per second; "0" or "" is unlimited (0).
func parseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	t = strings.TrimSuffix(t, "ps")
	if t == "" || t == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		bytes  float64
	}{
		{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
		{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10},
		{"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"b", 1},
	}
	mult := 1.0
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = n, u.bytes
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("rate %q: use e.g. 100mbit, 1gbit or 12MB/s", s)
	}
	return int64(v * mult), nil
}

// fmtRate formats bytes per second in the units switch ports are sold in.
func fmtRate(bps float64) string {
	switch bits := bps * 8; {
	case bits >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bits/1e9)
	case bits >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bits/1e6)
	default:
		return fmt.Sprintf("%.0f kbit/s", bits/1e3)
	}
}
