package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/labseed/labseed/api"
)

var wakeCmd = &command{
	name:  "wake",
	usage: "[--server HOST] (--all | MAC... | --file FILE | --group GROUP) [--store DIR | --admin-key FILE]",
	summary: `Switch machines on with Wake-on-LAN.
The print server sends the magic packets from its lab interface: a UDP
datagram to the lab network's broadcast address, port 9, and a raw Ethernet
frame of type 0x0842 (when its socket allows: root or CAP_NET_RAW), each
three times. So it works from a laptop through the API as well as on the
print server. It needs the admin key, as 'labseed hosts next-boot' does: on
the print server STORE/keys/admin.key; elsewhere --admin-key FILE (default
$LABSEED_ADMIN_KEY, then ~/.config/labseed/admin.key).
The machines need Wake-on-LAN on in their firmware, and power at the wall;
a machine already running an operating system stays as it is. To re-image
machines in waves, with re-wakes and a report, use 'labseed deploy'.`,
	example: `labseed wake --all
labseed wake --group b104 --server 10.1.0.1
labseed wake 52:54:00:12:34:56 52:54:00:12:34:57`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		server := fs.String("server", "127.0.0.1", "print server `HOST[:PORT]` (port "+strconv.Itoa(api.DefaultPort)+" by default)")
		adminKey := addAdminKeyFlags(fs)
		selFlags := addSelectionFlags(fs, "the machines to wake")
		operands, err := parseInterleaved(fs, args)
		if err != nil {
			return err
		}
		sel, err := selFlags.parse(operands)
		if err != nil {
			return err
		}
		key, err := adminKey.read()
		if err != nil {
			return err
		}
		c := api.NewClient(*server)
		c.Auth = api.AdminAuth(key)
		res, err := c.Wake(ctx, api.WakeRequest{MACs: sel.macs, All: sel.all, Group: sel.group})
		if err != nil {
			return err
		}
		how := "and raw 0x0842 frames"
		if !res.Raw {
			how = "only (no raw frames: " + shown(res.RawError) + ")"
		}
		fmt.Printf("woke %d machines from %s: UDP to %s %s, %d packets\n", res.Woken, shown(res.Interface), shown(res.Broadcast), how, res.Packets)
		return nil
	},
}
