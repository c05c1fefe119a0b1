package pxe

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestLabInterface(t *testing.T) {
	lo := ifaceAddrs{name: "lo", up: true, loopback: true, ips: []net.IP{net.IPv4(127, 0, 0, 1).To4()}}
	lab := ifaceAddrs{name: "eth0", up: true, ips: []net.IP{net.IPv4(10, 1, 0, 1).To4()}}
	uplink := ifaceAddrs{name: "eth1", up: true, ips: []net.IP{net.IPv4(192, 168, 1, 5).To4()}}
	down := ifaceAddrs{name: "eth2", ips: []net.IP{net.IPv4(172, 16, 0, 1).To4()}}
	bare := ifaceAddrs{name: "eth3", up: true}
	for _, tc := range []struct {
		name   string
		ifs    []ifaceAddrs
		iface  string
		ip     net.IP
		want   Interface
		errHas []string // the error names these; nil: no error
	}{
		{"listen on the lab interface", []ifaceAddrs{lo, lab, uplink}, "", net.IPv4(10, 1, 0, 1), Interface{"eth0", net.IPv4(10, 1, 0, 1)}, nil},
		{"listen on loopback", []ifaceAddrs{lo, lab, uplink}, "", net.IPv4(127, 0, 0, 1), Interface{"lo", net.IPv4(127, 0, 0, 1)}, nil},
		{"one candidate, no listen", []ifaceAddrs{lo, lab, down, bare}, "", nil, Interface{"eth0", net.IPv4(10, 1, 0, 1)}, nil},
		{"unspecified listen is none", []ifaceAddrs{lo, lab}, "", net.IPv4zero, Interface{"eth0", net.IPv4(10, 1, 0, 1)}, nil},
		{"several candidates, no listen", []ifaceAddrs{lo, lab, uplink}, "", nil, Interface{}, []string{"eth0 (10.1.0.1)", "eth1 (192.168.1.5)", "--listen", "--interface"}},
		{"advertised address held by none, one candidate", []ifaceAddrs{lo, lab}, "", net.IPv4(203, 0, 113, 7), Interface{"eth0", net.IPv4(203, 0, 113, 7)}, nil},
		{"advertised address held by none, several", []ifaceAddrs{lo, lab, uplink}, "", net.IPv4(203, 0, 113, 7), Interface{}, []string{"eth0", "eth1"}},
		{"interface named", []ifaceAddrs{lo, lab, uplink}, "eth1", nil, Interface{"eth1", net.IPv4(192, 168, 1, 5)}, nil},
		{"interface named with listen", []ifaceAddrs{lo, lab, uplink}, "eth0", net.IPv4(10, 1, 0, 1), Interface{"eth0", net.IPv4(10, 1, 0, 1)}, nil},
		{"interface named without IPv4", []ifaceAddrs{lo, bare}, "eth3", nil, Interface{}, []string{"eth3", "--listen"}},
		{"no such interface", []ifaceAddrs{lo, lab}, "wlan0", nil, Interface{}, []string{`"wlan0"`}},
		{"no candidate", []ifaceAddrs{lo, down, bare}, "", nil, Interface{}, []string{"--interface"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := labInterface(tc.ifs, tc.iface, tc.ip)
			if tc.errHas != nil {
				if !errors.Is(err, errInterface) {
					t.Fatalf("got %+v, %v; want an error", got, err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil || got.Name != tc.want.Name || !got.IP.Equal(tc.want.IP) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
