package chunker

import (
	"errors"
	"testing"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{in: "./", want: "."},
		{in: ".", want: "."},
		{in: "./etc/passwd", want: "etc/passwd"},
		{in: "usr/bin/", want: "usr/bin"},
		{in: "a//b/./c", want: "a/b/c"},
		{in: "caf\xe9", want: "caf\xe9"},
		{in: "../etc/passwd", err: ErrUnsafePath},
		{in: "a/../../b", err: ErrUnsafePath},
		{in: "a/../b", err: ErrUnsafePath},
		{in: "/etc/passwd", err: ErrUnsafePath},
		{in: "", err: ErrUnsafePath},
		{in: "a\x00b", err: ErrUnsafePath},
		{in: ".labseed/x", err: ErrReservedPath},
		{in: "./.labseed", err: ErrReservedPath},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := cleanName(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("cleanName(%q) error %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("cleanName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
