package seeder

import (
	"testing"

	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/pxe"
)

// TestPXEHostsArgs: a host's boot_args and on_failure reach its clone
// entry's kernel command line.
func TestPXEHostsArgs(t *testing.T) {
	var got []pxe.Host
	for _, id := range []hosts.Identity{
		{MAC: "52:54:00:12:34:01", Hostname: "a", IP: "10.1.0.1", NextBoot: hosts.BootClone, BootArgs: "labseed.disk=/dev/sdb", OnFailure: "shell"},
		{MAC: "52:54:00:12:34:02", Hostname: "b", IP: "10.1.0.2"},
	} {
		if h, ok := pxeHost(id); ok {
			got = append(got, h)
		}
	}
	if len(got) != 2 || got[0].Args != "labseed.disk=/dev/sdb labseed.on_failure=shell" || !got[0].Clone || got[1].Args != "" || got[1].Clone {
		t.Errorf("pxeHosts = %+v", got)
	}
}
