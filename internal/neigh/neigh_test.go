package neigh

import (
	"net/netip"
	"testing"
)

func TestLocal(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		p, err := Lookup(netip.MustParseAddr(a))
		if err != nil || p.Kind != Local {
			t.Errorf("%s: %v, %v, want local", a, p.Kind, err)
		}
	}
}
