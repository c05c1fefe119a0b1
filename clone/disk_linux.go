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

	if fresh || !c.resumable(ctx) {
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

// resumable mounts the existing root file system and reports whether it
// holds an interrupted download of the image this clone installs that was
// not configured yet; if not, it unmounts it again. Anything it cannot
// tell counts as "no": the file system is then made anew.
func (c *cloner) resumable(ctx context.Context) bool {
	typ, _, err := probe(ctx, c.disk.root.Device)
	if err != nil || typ != c.id.Filesystem {
		return false
	}
	want := c.resolved.Manifest.ID()
	if err := c.mountRoot(); err != nil {
		c.log.Warn("cannot mount the existing root file system: formatting", "err", err)
		return false
	}
	got, err := chunker.StateImage(filepath.Join(c.cfg.Mountpoint, stagingDir))
	_, merr := os.Lstat(filepath.Join(c.cfg.Mountpoint, configuringMarker))
	if err == nil && got == want && errors.Is(merr, os.ErrNotExist) {
		c.say("resuming the interrupted download on %s", c.disk.root.Device)
		c.log.Info("resuming", "root", c.disk.root.Device, "image", want)
		return true
	}
	if err := c.mounts.unmountTop(); err != nil {
		c.log.Warn("unmount the old root file system", "err", err)
	}
	return false
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
