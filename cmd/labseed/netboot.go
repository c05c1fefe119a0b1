package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labseed/labseed/netboot"
	"github.com/labseed/labseed/netinit"
	"github.com/labseed/labseed/store"
	"golang.org/x/term"
)

var netbootCmd = &command{
	name:  "netboot",
	usage: "build [--store DIR] [--image NAME] [--kernel FILE --modules DIR] [--out DIR]",
	summary: `Build the clone environment that network-booted workstations run.
It writes into --out (default STORE/boot, where 'labseed serve --pxe' looks):
vmlinuz, initrd.img, and the iPXE first stages undionly.kpxe and ipxe.efi
(copied from the Debian package ipxe). The kernel and its modules come from the
published image itself (its /boot/vmlinuz-VERSION and /lib/modules/VERSION/,
read from the store without extracting the image), or with --kernel and
--modules from files of the print server. The initrd holds this labseed binary
(as /init), the workstations' keys (image.pub and lab.key, as 'labseed keys
export' writes them: nothing that can change the lab), the kernel modules of
lab PCs' network cards, disk controllers and file systems, and the tools
'labseed clone' runs with their libraries. Run it again after publishing an
image with a new kernel, or after upgrading labseed.`,
	example: `labseed netboot build
labseed netboot build --image lab1 --out /srv/labseed/boot
labseed netboot build --kernel /boot/vmlinuz-$(uname -r) --modules /lib/modules/$(uname -r)`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		if len(args) == 0 {
			return errUsage
		}
		if isHelp(args[0]) { // the help shows build's flags
			return netbootBuild(ctx, fs, args)
		}
		switch args[0] {
		case "build":
			return netbootBuild(ctx, fs, args[1:])
		case "init": // the clone environment's /init (PID 1): not for people
			return netbootInit(ctx, fs, args[1:])
		case "modprobe": // what the kernel runs as /sbin/modprobe in the clone environment
			return netbootModprobe(ctx, args[1:])
		}
		return errUsage
	},
}

func netbootBuild(ctx context.Context, fs *flag.FlagSet, args []string) error {
	var cfg netboot.Config
	dir := fs.String("store", defaultStore, "image store `DIR` (image, keys)")
	image := fs.String("image", "", "take the kernel from image `NAME` (default: the store's only image)")
	fs.StringVar(&cfg.Kernel, "kernel", "", "use this kernel `FILE` instead of the image's (with --modules)")
	fs.StringVar(&cfg.Modules, "modules", "", "its module `DIR`, /lib/modules/VERSION (with --kernel)")
	fs.StringVar(&cfg.Out, "out", "", "write into `DIR` (default STORE/boot)")
	fs.BoolVar(&cfg.Gzip, "gzip", false, "compress the initrd with gzip instead of zstd (kernels older than 5.9)")
	verbose := fs.Bool("v", false, "log detail")
	if err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	st, err := openExistingStore(*dir)
	if err != nil {
		return err
	}
	if cfg.Out == "" {
		cfg.Out = filepath.Join(st.Dir(), "boot")
	}
	if cfg.Kernel == "" {
		if cfg.Image, err = pickImage(st, *image); err != nil {
			return err
		}
	}
	keys, err := os.MkdirTemp("", "labseed-keys-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(keys)
	if _, err := st.ExportKeys(keys); err != nil {
		return err
	}
	cfg.KeysDir = keys
	if *verbose {
		cfg.Logger = logger(true)
	}
	cfg.Progress = progressLine()
	res, err := netboot.Build(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(os.Stderr, "\r\x1b[K")
	}
	if err != nil {
		return err
	}
	fmt.Printf("netboot: kernel %s (from %s), %d modules, %d tools, initrd %s (%s unpacked, %d files), %.1f s\n",
		res.KernelRelease, res.KernelFrom, len(res.Modules), len(res.Tools), mib(res.InitrdBytes), mib(res.RawBytes), res.Files, res.Took.Seconds())
	fmt.Printf("netboot: wrote %s\n", strings.Join(append([]string{netboot.KernelFile, netboot.InitrdFile}, res.IPXE...), ", ")+" into "+cfg.Out)
	if len(res.Absent) > 0 {
		fmt.Printf("netboot: not in kernel %s, left out: %s\n", res.KernelRelease, strings.Join(res.Absent, " "))
	}
	if len(res.MissingTools) > 0 {
		fmt.Printf("netboot: not installed here, left out: %s\n", strings.Join(res.MissingTools, ", "))
	}
	if res.IPXEMissing != nil {
		fmt.Fprintf(os.Stderr, "labseed: warning: %v\n", res.IPXEMissing)
	}
	return nil
}

// pickImage returns the named image, or the store's only one.
func pickImage(st *store.Store, name string) (*store.Image, error) {
	if name != "" {
		return st.Image(name)
	}
	imgs, err := st.Images()
	if err != nil {
		return nil, err
	}
	switch len(imgs) {
	case 1:
		return imgs[0], nil
	case 0:
		return nil, errors.New("the store has no image: publish one (labseed publish), or give --kernel and --modules")
	}
	var names []string
	for _, im := range imgs {
		names = append(names, im.Manifest.Name)
	}
	return nil, fmt.Errorf("the store has %d images (%s): say which has the kernel with --image", len(imgs), strings.Join(names, ", "))
}

// progressLine shows the build's stages on a terminal (stderr), with a
// count while the image's chunks are read; nothing otherwise.
func progressLine() func(string, int64, int64) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	var last time.Time
	return func(stage string, done, total int64) {
		if total > 0 && done < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		if total > 0 {
			fmt.Fprintf(os.Stderr, "\r\x1b[Knetboot: %s %d/%d", stage, done, total)
			return
		}
		fmt.Fprintf(os.Stderr, "\r\x1b[Knetboot: %s...", stage)
	}
}

// netbootInit runs the clone environment (netinit): what the initrd's
// /init, a link to labseed, starts as PID 1.
func netbootInit(ctx context.Context, fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	limitMemory(workstationMemory)
	err := netinit.Run(ctx, netinit.Config{})
	if os.Getpid() == 1 {
		// PID 1 must not exit (the kernel would panic): say so and stay.
		fmt.Fprintf(os.Stderr, "labseed: the clone environment stopped: %v; power the machine off\n", err)
		select {}
	}
	return err
}

// netbootModprobe is /sbin/modprobe of the clone environment, which the
// kernel runs to load a module it needs (a file system, a checksum).
func netbootModprobe(_ context.Context, args []string) error {
	return netinit.Modprobe(args)
}
