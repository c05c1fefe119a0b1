package netinit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWorkstationSide: the clone environment is served to anyone on the
// LAN and runs on workstations; it must not carry the print server's code.
func TestWorkstationSide(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, server := range []string{"seeder", "pxe", "store", "metrics", "netboot"} {
			if dep == "github.com/labseed/labseed/"+server {
				t.Errorf("netinit depends on %s", dep)
			}
		}
	}
}
