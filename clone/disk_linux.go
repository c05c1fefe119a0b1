package clone

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"golang.org/x/sys/unix"
)

// blockDevNum returns the device numbers of the block device dev.
func blockDevNum(dev string) (maj, min uint32, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return 0, 0, fmt.Errorf("disk %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("disk %s is not a block device", dev)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// claimed reports whether the kernel holds the block device dev for
// someone: mounted in any mount namespace, active swap, or opened with
// O_EXCL by a program.
func claimed(dev string) bool {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Is(err, unix.EBUSY)
	}
	unix.Close(fd)
	return false
}

// prepareDisk is the disk step: check the disk, partition it (or keep its
// partitions), make the file systems and mount the root.
func (c *cloner) prepareDisk(ctx context.Context) error {
	if c.cfg.Disk == DiskAuto {
		dev, err := autoDisk()
		if err != nil {
			return err
		}
		c.say("the disk to re-image is %s (the only fixed disk)", dev)
		c.cfg.Disk = dev
	}
	d, err := openDisk(c.cfg.Disk)
	if err != nil {
		return err
	}
	c.disk = d
	// A clone killed outright (power, SIGKILL) leaves its mounts behind.
	if err := c.mounts.unmountUnder(c.cfg.Mountpoint); err != nil {
		return err
	}
	if err := d.checkUnused(c.cfg.Mountpoint); err != nil {
		return err
	}
	label, parts, hasTable, err := d.partitionTable(ctx)
	if err != nil {
		return err
	}
	fresh := c.cfg.Partition || !hasTable
	if fresh {
		script, err := layoutScript(d.size, c.id.RootMiB, c.id.SwapMiB)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.dev, err)
		}
		c.say("partitioning %s (%d MiB): root, swap %d MiB", d.dev, d.size>>20, c.id.SwapMiB)
		c.log.Info("partitioning", "disk", d.dev, "script", script)
		cmd := exec.CommandContext(ctx, "sfdisk", "--wipe", "always", "--wipe-partitions", "always", d.dev)
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sfdisk %s: %w%s", d.dev, err, lines(out))
		}
		if label, parts, _, err = d.partitionTable(ctx); err != nil {
			return err
		}
	} else {
		c.say("keeping the partitions of %s (--partition writes the lab's layout)", d.dev)
	}
	root, swap, err := pickPartitions(parts)
	if err != nil {
		return fmt.Errorf("disk %s: %w", d.dev, err)
	}
	d.label = label
	if label == "dos" && !root.bootable {
		// BIOS boot code (extlinux's mbr.bin) boots the active partition.
		if _, err := run(ctx, "sfdisk", "--activate", d.dev, fmt.Sprint(root.num)); err != nil {
			return err
		}
	}
	d.root = partition{num: root.num, Partition: Partition{FSType: c.id.Filesystem}}
	if d.root.Device, err = d.waitPartition(ctx, root.num); err != nil {
		return err
	}
	if swap.num != 0 {
		d.swap = partition{num: swap.num, Partition: Partition{FSType: "swap"}}
		if d.swap.Device, err = d.waitPartition(ctx, swap.num); err != nil {
			return err
		}
	}

	switch {
	case c.cfg.Partition:
		c.full = "--partition writes the lab's partition layout"
	case fresh:
		c.full = "the disk had no partition table"
	default:
		c.full = c.keepRoot(ctx)
	}
	switch {
	case c.sync:
		c.reportDetail(ctx, StepDisk, api.StateRunning, "", fmt.Sprintf("sync: the disk holds %s v%d", c.installed.Name, c.installed.Version))
	case c.full != "":
		c.say("full clone: %s", c.full)
		c.reportDetail(ctx, StepDisk, api.StateRunning, "", "full clone: "+c.full)
	}
	if c.full != "" {
		mkfs := mkfsCommands[c.id.Filesystem]
		c.say("making the %s file system on %s", c.id.Filesystem, d.root.Device)
		if _, err := run(ctx, mkfs[0], append(mkfs[1:], d.root.Device)...); err != nil {
			return err
		}
		if err := c.mountRoot(); err != nil {
			return err
		}
	}
	if _, d.root.UUID, err = probe(ctx, d.root.Device); err != nil {
		return err
	}
	if d.root.UUID == "" {
		return fmt.Errorf("%s: blkid finds no UUID on the new file system", d.root.Device)
	}
	if d.swap.num != 0 {
		if _, err := run(ctx, "mkswap", d.swap.Device); err != nil {
			return err
		}
		if _, d.swap.UUID, err = probe(ctx, d.swap.Device); err != nil {
			return err
		}
	}
	c.log.Info("disk ready", "disk", d.dev, "root", d.root.Device, "root_uuid", d.root.UUID, "swap", d.swap.Device, "swap_uuid", d.swap.UUID)
	return nil
}

// mountRoot mounts the root partition on the mount point.
func (c *cloner) mountRoot() error {
	if err := os.MkdirAll(c.cfg.Mountpoint, 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	return c.mounts.mount(c.disk.root.Device, c.cfg.Mountpoint, c.id.Filesystem, 0, "")
}

// fsckCommands check each root file system type without changing it:
// exit status 0 means clean.
var fsckCommands = map[string][]string{
	"ext4": {"e2fsck", "-f", "-n"},
	"ext3": {"e2fsck", "-f", "-n"},
	"xfs":  {"xfs_repair", "-n"},
}

// checkFS checks the unmounted file system of type typ on dev.
func checkFS(ctx context.Context, dev, typ string) error {
	cmd, ok := fsckCommands[typ]
	if !ok {
		return fmt.Errorf("labseed does not check %s file systems", typ)
	}
	if _, err := exec.LookPath(cmd[0]); err != nil {
		return fmt.Errorf("%s is not installed (rebuild the clone environment with labseed netboot build)", cmd[0])
	}
	_, err := run(ctx, cmd[0], append(cmd[1:], dev)...)
	return err
}

// keepRoot decides whether the existing root file system is kept: it
// mounts it and returns "" when it holds an interrupted run of this clone
// (resumable) or an image labseed installed (syncable). Otherwise it
// leaves it unmounted and returns why it is formatted: no file system, not
// the lab's type, one that does not mount or does not check clean, or no
// record of an image labseed installed.
func (c *cloner) keepRoot(ctx context.Context) string {
	dev := c.disk.root.Device
	typ, _, err := probe(ctx, dev)
	switch {
	case err != nil:
		return err.Error()
	case typ == "":
		return dev + " holds no file system"
	case typ != c.id.Filesystem:
		return fmt.Sprintf("%s holds %s, the lab's file system is %s", dev, typ, c.id.Filesystem)
	}
	// Mounted once and unmounted before the check: the kernel replays the
	// journal of a machine that was switched off, which the check cannot.
	if err := c.mountRoot(); err != nil {
		return fmt.Sprintf("the file system on %s does not mount (%v)", dev, err)
	}
	if err := c.mounts.unmountTop(); err != nil {
		return fmt.Sprintf("unmount %s: %v", dev, err)
	}
	if err := checkFS(ctx, dev, typ); err != nil {
		c.log.Warn("the file system does not check clean", "dev", dev, "err", err)
		return fmt.Sprintf("the file system on %s is damaged or cannot be checked (%v)", dev, err)
	}
	if err := c.mountRoot(); err != nil {
		return fmt.Sprintf("the file system on %s does not mount (%v)", dev, err)
	}
	if c.resumable() {
		return ""
	}
	why := c.syncable()
	if why != "" {
		if err := c.mounts.unmountTop(); err != nil {
			c.log.Warn("unmount the old root file system", "err", err)
		}
	}
	return why
}

// fullAsked says why the clone may not sync: Config.Full or labseed.full;
// "" if neither.
func (c *cloner) fullAsked() string {
	if c.cfg.Full {
		return "--full"
	}
	if _, ok := c.params[ParamFull]; ok {
		return ParamFull + " on the kernel command line"
	}
	return ""
}

// resumable reports whether the mounted root file system holds an
// interrupted download of the image this clone installs that was not
// configured yet (a full clone, or a sync unless a full one is asked for).
func (c *cloner) resumable() bool {
	state := filepath.Join(c.cfg.Mountpoint, stagingDir)
	got, err := chunker.StateImage(state)
	_, merr := os.Lstat(filepath.Join(c.cfg.Mountpoint, configuringMarker))
	if err != nil || got != c.resolved.Manifest.ID() || !errors.Is(merr, os.ErrNotExist) {
		return false
	}
	what := "download"
	if chunker.StateSyncing(state) {
		if c.fullAsked() != "" {
			return false
		}
		what = "sync"
	}
	c.say("resuming the interrupted %s on %s", what, c.disk.root.Device)
	c.log.Info("resuming", "root", c.disk.root.Device, "image", got, "sync", what == "sync")
	return true
}

// syncable reports, with "", whether the mounted root file system is to
// be synced (Config.Full): it holds the record of an image labseed
// installed. The state of a run that cannot resume is removed. Otherwise
// it says why not.
func (c *cloner) syncable() string {
	if why := c.fullAsked(); why != "" {
		return why
	}
	dev := c.disk.root.Device
	rec, _, err := chunker.ReadInstalled(c.cfg.Mountpoint)
	if errors.Is(err, chunker.ErrNotInstalled) {
		return fmt.Sprintf("%s holds no record of an image installed by labseed (/%s/%s)", dev, chunker.StateDirName, chunker.InstalledDirName)
	}
	if err != nil {
		return fmt.Sprintf("the record of the image installed on %s is unusable (%v)", dev, err)
	}
	if err := chunker.RemoveState(c.cfg.Mountpoint); err != nil {
		return fmt.Sprintf("cannot remove the state of an earlier run from %s (%v)", dev, err)
	}
	c.sync, c.installed = true, rec
	c.say("syncing %s: it holds %s v%d, installed by labseed on %s; only what differs from %s is fetched and written (--full, or %s on the kernel command line, formats it instead)",
		dev, rec.Name, rec.Version, rec.Time.Format("2006-01-02 15:04"), c.resolved, ParamFull)
	c.log.Info("syncing", "root", dev, "installed", fmt.Sprintf("%s-v%d", rec.Name, rec.Version), "image", c.resolved.String())
	return ""
}

// waitPartition waits until the kernel shows partition num of the disk and
// its device node exists, asking the kernel to re-read the table and
// making the node when no udev does (containers, small netboot systems).
func (d *disk) waitPartition(ctx context.Context, num int) (string, error) {
	start := time.Now()
	var seen time.Time
	kicks := 0
	for {
		if name, ok := d.sysPartitions()[num]; ok {
			node := "/dev/" + name
			b, err := os.ReadFile(filepath.Join("/sys/block", d.name, name, "dev"))
			if err != nil {
				return "", fmt.Errorf("partition %d of %s: %w", num, d.dev, err)
			}
			var maj, min uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
				return "", fmt.Errorf("partition %d of %s: device number %q", num, d.dev, b)
			}
			if gmaj, gmin, err := blockDevNum(node); err == nil && gmaj == maj && gmin == min {
				return node, nil
			}
			if seen.IsZero() {
				seen = time.Now()
			}
			if _, err := os.Stat("/run/udev/control"); err != nil || time.Since(seen) > 3*time.Second {
				os.Remove(node) // a stale node, with other numbers
				if err := unix.Mknod(node, unix.S_IFBLK|0o660, int(unix.Mkdev(maj, min))); err != nil {
					return "", fmt.Errorf("make the device node %s: %w", node, err)
				}
				continue
			}
		}
		switch el := time.Since(start); {
		case el > 10*time.Second:
			return "", fmt.Errorf("the kernel shows no partition %d of %s (a loop device needs losetup -P)", num, d.dev)
		case el > 100*time.Millisecond && kicks == 0, el > 3*time.Second && kicks == 1:
			kicks++
			exec.CommandContext(ctx, "partx", "-u", d.dev).Run()
			exec.CommandContext(ctx, "partx", "-a", d.dev).Run()
			if kicks == 2 {
				exec.CommandContext(ctx, "blockdev", "--rereadpt", d.dev).Run()
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// blockDevs lists the block devices under /sys/block.
func blockDevs() ([]blockDev, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, fmt.Errorf("list the disks: %w", err)
	}
	var out []blockDev
	for _, e := range ents {
		dir := filepath.Join("/sys/block", e.Name())
		d := blockDev{Name: e.Name()}
		d.Sys, _ = filepath.EvalSymlinks(dir)
		sectors, _ := readSysInt(filepath.Join(dir, "size"))
		d.Size = sectors * 512
		rem, _ := readSysInt(filepath.Join(dir, "removable"))
		ro, _ := readSysInt(filepath.Join(dir, "ro"))
		d.Removable, d.ReadOnly = rem != 0, ro != 0
		out = append(out, d)
	}
	return out, nil
}

// autoDisk picks the disk for Config.Disk "auto".
func autoDisk() (string, error) {
	devs, err := blockDevs()
	if err != nil {
		return "", err
	}
	return pickDisk(devs)
}
