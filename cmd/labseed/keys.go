package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/store"
)

var keysCmd = &command{
	name:  "keys",
	usage: "export [--store DIR] OUTDIR | admin [--store DIR] FILE",
	summary: `Write the keys a workstation needs, or a copy of the admin key.
  export OUTDIR  writes what a workstation gets: image.pub (checks image
                 signatures and the print server's answers) and lab.key (joins
                 the lab's encrypted gossip); on a print server that follows
                 another (serve --upstream), image.pub is the upstream's, and
                 identity.pub checks this print server's answers. The public
                 keys' fingerprints are shown: a follower that pinned the
                 upstream's key on first contact shows the same one. 'labseed netboot build' puts them
                 into the netboot image, so anyone on the lab network can have
                 them: they give no right to change anything.
  admin FILE     writes a copy of the admin key (mode 0600) for a sysadmin's
                 machine: with it 'labseed hosts import/next-boot' work from
                 there (--admin-key FILE, $LABSEED_ADMIN_KEY or
                 ~/.config/labseed/admin.key). Whoever holds it can make every
                 workstation of the lab run any command: keep it like a root
                 password.
The signing key (image.key) and the admin key never leave the store otherwise.
Keys are created if the store has none yet, and the command says so (a
mistyped --store would otherwise give keys that match no image). See docs/trust.md.`,
	example: `labseed keys export /srv/netboot/labseed-keys
labseed keys admin /root/admin.key   (then copy it to ~/.config/labseed/admin.key on the laptop)`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		dir := fs.String("store", defaultStore, "image store `DIR`")
		if len(args) > 0 && isHelp(args[0]) {
			return parse(fs, args, 0, 0)
		}
		if len(args) == 0 || (args[0] != "export" && args[0] != "admin") {
			return errUsage
		}
		if err := parse(fs, args[1:], 1, 1); err != nil {
			return err
		}
		// Keys made here, not found: say so, in case DIR is not the
		// print server's store (a mistyped --store): such keys match
		// none of its images.
		_, statErr := os.Stat(filepath.Join(*dir, "keys"))
		s, err := store.Open(*dir)
		if err != nil {
			return err
		}
		if errors.Is(statErr, os.ErrNotExist) {
			defer fmt.Fprintf(os.Stderr, "labseed: %s had no keys: new ones were made. If %s is not the print server's store (--store, default %s), they match none of its images.\n", *dir, *dir, defaultStore)
		}
		if args[0] == "admin" {
			k, err := s.AdminKey()
			if err != nil {
				return err
			}
			out := fs.Arg(0)
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			if err := keys.WriteHexKey(out, k); err != nil {
				return err
			}
			fmt.Println("wrote", out, "(the admin key: keep it secret)")
			return nil
		}
		files, err := s.ExportKeys(fs.Arg(0))
		if err != nil {
			return err
		}
		for _, f := range files {
			if pub, err := keys.ReadPublicKey(f); err == nil {
				fmt.Println("wrote", f, "("+keys.Fingerprint(pub)+")")
				continue
			}
			fmt.Println("wrote", f)
		}
		return nil
	},
}
