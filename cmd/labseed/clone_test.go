package main

import (
	"errors"
	"strings"
	"testing"
)

// TestCloneCommand checks the clone command's flags and the errors it
// gives before touching anything; clone's own tests run the whole clone
// on loop devices.
func TestCloneCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no disk", []string{"--server", "127.0.0.1", "--insecure"}, "usage"},
		{"extra argument", []string{"--disk", "/dev/sda", "--insecure", "now"}, "usage"},
		{"no keys", []string{"--disk", "/dev/null", "--keys", t.TempDir()}, "labseed keys export"},
		{"not a disk", []string{"--disk", "/dev/null", "--insecure", "--no-reboot"}, "/dev/null is not a block device"},
		{"no such disk", []string{"--disk", "/dev/labseed-no-such-disk", "--insecure", "--no-reboot"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runCommand(t.Context(), cloneCmd, tc.args)
			if tc.want == "usage" {
				if !errors.Is(err, errUsage) {
					t.Fatalf("error %v, want the usage", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
