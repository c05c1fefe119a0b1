package clone

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The partition layout labseed writes is an MBR ("dos") table: the root
// partition first, marked active, then the swap partition. An MBR is what
// BIOS booting needs with every bootloader preset (grub's i386-pc target,
// extlinux's mbr.bin, lilo); UEFI machines boot it in legacy (CSM) mode.

// Partition types of the layout, and the ones recognised in an existing
// table (sfdisk's spelling: MBR ids and GPT type GUIDs).
const (
	typeLinuxMBR = "83"
	typeSwapMBR  = "82"
	typeLinuxGPT = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	typeSwapGPT  = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
)

// minRootMiB is the smallest root partition labseed makes.
const minRootMiB = 64

// disk is the disk being re-imaged.
type disk struct {
	dev   string // the device node as given, /dev/sda
	name  string // the kernel's name, sda
	size  int64  // bytes
	label string // partition table type: dos or gpt
	root  partition
	swap  partition // num 0: none
}

// Partition is a partition of the new system, as the templates see it. In
// a template, {{.Root}} prints its device.
type Partition struct {
	// Device is the partition's device node in the cloning system, e.g.
	// /dev/sda1; "" for no partition (no swap).
	Device string
	// UUID is its file system's (or swap's) UUID, FSType its type (ext4,
	// swap...).
	UUID, FSType string
}

// String returns the partition's device, what {{.Root}} prints.
func (p Partition) String() string { return p.Device }

type partition struct {
	Partition
	num int // 1-based; 0: none
}

// dumpPart is one partition line of "sfdisk --dump".
type dumpPart struct {
	node     string
	num      int
	start    int64 // sectors
	size     int64 // sectors
	typ      string
	bootable bool
}

// parseDump reads "sfdisk --dump" output: header lines ("label: dos"), a
// blank line, then "/dev/sda1 : start=2048, size=..., type=83, bootable".
func parseDump(b []byte) (label string, parts []dumpPart, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		node, rest, isPart := strings.Cut(line, " : ")
		if !isPart {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "label" {
				label = strings.TrimSpace(v)
			}
			continue
		}
		p := dumpPart{node: strings.TrimSpace(node)}
		if p.num = trailingNumber(p.node); p.num == 0 {
			return "", nil, fmt.Errorf("sfdisk dump line %d: no partition number in %q", n, p.node)
		}
		for _, f := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			v = strings.TrimSpace(v)
			switch strings.TrimSpace(k) {
			case "start":
				p.start, err = strconv.ParseInt(v, 10, 64)
			case "size":
				p.size, err = strconv.ParseInt(v, 10, 64)
			case "type":
				p.typ = strings.ToUpper(v)
			case "bootable":
				p.bootable = true
			}
			if err != nil {
				return "", nil, fmt.Errorf("sfdisk dump line %d: %s: %w", n, k, err)
			}
		}
		parts = append(parts, p)
	}
	if label == "" {
		return "", nil, errors.New("sfdisk dump: no label line")
	}
	return label, parts, nil
}

// trailingNumber returns the decimal number n ends with (sda12: 12), 0 if none.
func trailingNumber(s string) int {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(s[i:])
	return n
}

// pickPartitions returns the first Linux and the first swap partition of
// an existing table (swap num 0 if there is none).
func pickPartitions(parts []dumpPart) (root, swap dumpPart, err error) {
	for _, p := range parts {
		switch p.typ {
		case typeLinuxMBR, typeLinuxGPT:
			if root.num == 0 {
				root = p
			}
		case typeSwapMBR, typeSwapGPT:
			if swap.num == 0 {
				swap = p
			}
		}
	}
	if root.num == 0 {
		return root, swap, errors.New("no Linux partition (type 83) to reuse: run with --partition to write the lab's layout")
	}
	return root, swap, nil
}

// layoutScript returns the sfdisk script of the lab's layout on a disk of
// size bytes: an MBR table, the root partition (rootMiB, 0 for the rest of
// the disk) marked active, then swapMiB of swap (0: none). The first MiB
// is left for the table and the bootloader, the last one unused.
func layoutScript(size int64, rootMiB, swapMiB int) (string, error) {
	avail := size>>20 - 2
	if rootMiB == 0 {
		rootMiB = int(avail) - swapMiB
	}
	if rootMiB < minRootMiB || int64(rootMiB+swapMiB) > avail {
		return "", fmt.Errorf("the disk holds %d MiB, too little for the layout (root %d MiB, at least %d, and swap %d MiB): lower root_mib or swap_mib in lab.conf",
			size>>20, rootMiB, minRootMiB, swapMiB)
	}
	var b strings.Builder
	b.WriteString("label: dos\n\n")
	fmt.Fprintf(&b, "size=%dMiB, type=%s, bootable\n", rootMiB, typeLinuxMBR)
	if swapMiB > 0 {
		fmt.Fprintf(&b, "size=%dMiB, type=%s\n", swapMiB, typeSwapMBR)
	}
	return b.String(), nil
}

// openDisk checks that dev is a whole disk and reads its kernel name and size.
func openDisk(dev string) (*disk, error) {
	maj, min, err := blockDevNum(dev)
	if err != nil {
		return nil, err
	}
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", maj, min))
	if err != nil {
		return nil, fmt.Errorf("disk %s: the kernel does not list it: %w", dev, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return nil, fmt.Errorf("disk %s is a partition of /dev/%s: give the whole disk (/dev/%s)", dev, filepath.Base(filepath.Dir(sys)), filepath.Base(filepath.Dir(sys)))
	}
	d := &disk{dev: dev, name: filepath.Base(sys)}
	sectors, err := readSysInt(filepath.Join(sys, "size"))
	if err != nil {
		return nil, fmt.Errorf("disk %s: size: %w", dev, err)
	}
	d.size = sectors * 512 // sysfs counts 512-byte sectors whatever the disk's
	if d.size == 0 {
		return nil, fmt.Errorf("disk %s is empty (no medium, or a loop device without a file)", dev)
	}
	if ro, _ := readSysInt(filepath.Join(sys, "ro")); ro != 0 {
		return nil, fmt.Errorf("disk %s is read-only", dev)
	}
	return d, nil
}

func readSysInt(name string) (int64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// sysPartitions returns the kernel's partitions of the disk: number → name.
func (d *disk) sysPartitions() map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir(filepath.Join("/sys/block", d.name))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), d.name) {
			continue
		}
		if n, err := readSysInt(filepath.Join("/sys/block", d.name, e.Name(), "partition")); err == nil {
			out[int(n)] = e.Name()
		}
	}
	return out
}

// devNums returns the major:minor of the disk and of each of its
// partitions, as /proc/self/mountinfo writes them.
func (d *disk) devNums() map[string]string {
	out := map[string]string{}
	names := []string{d.name}
	for _, p := range d.sysPartitions() {
		names = append(names, p)
	}
	for _, n := range names {
		p := filepath.Join("/sys/block", d.name, n, "dev")
		if n == d.name {
			p = filepath.Join("/sys/block", d.name, "dev")
		}
		if b, err := os.ReadFile(p); err == nil {
			out[strings.TrimSpace(string(b))] = "/dev/" + n
		}
	}
	return out
}

// checkUnused refuses a disk that is mounted (other than under the clone's
// own mount point), used as swap, or held by a device mapper or RAID.
func (d *disk) checkUnused(mountpoint string) error {
	nums := d.devNums()
	mis, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, m := range mis {
		if dev, ok := nums[m.dev]; ok && !under(m.point, mountpoint) {
			return fmt.Errorf("disk %s is in use: %s is mounted on %s (unmount it, or give another disk)", d.dev, dev, m.point)
		}
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if maj, min, err := blockDevNum(f[0]); err == nil {
				if dev, ok := nums[fmt.Sprintf("%d:%d", maj, min)]; ok {
					return fmt.Errorf("disk %s is in use: %s is active swap (swapoff %s)", d.dev, dev, dev)
				}
			}
		}
	}
	for _, n := range nums {
		name := filepath.Base(n)
		dir := filepath.Join("/sys/block", d.name, name, "holders")
		if name == d.name {
			dir = filepath.Join("/sys/block", d.name, "holders")
		}
		if hs, _ := os.ReadDir(dir); len(hs) > 0 {
			return fmt.Errorf("disk %s is in use: %s is held by /dev/%s (LVM, RAID or dm-crypt: stop it first)", d.dev, n, hs[0].Name())
		}
	}
	for _, n := range nums {
		if claimed(n) {
			return fmt.Errorf("disk %s is in use: %s is claimed by the kernel (mounted in another mount namespace, or opened exclusively by a program)", d.dev, n)
		}
	}
	return nil
}

// partitionTable reads the disk's table; ok is false when it has none.
func (d *disk) partitionTable(ctx context.Context) (label string, parts []dumpPart, ok bool, err error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "sfdisk", "--dump", d.dev)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "does not contain a recognized partition table") {
			return "", nil, false, nil
		}
		return "", nil, false, fmt.Errorf("sfdisk --dump %s: %w%s", d.dev, err, lines(stderr.Bytes()))
	}
	label, parts, err = parseDump(out.Bytes())
	if err != nil {
		return "", nil, false, fmt.Errorf("%s: %w", d.dev, err)
	}
	return label, parts, true, nil
}

// run runs a command, returning its output; the error names the command
// and ends with the last lines of its output.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w%s", name, strings.Join(args, " "), err, lines(out))
	}
	return out, nil
}

// mkfsCommands make each root file system type labseed knows, quietly and
// over whatever the partition held.
var mkfsCommands = map[string][]string{
	"ext4": {"mkfs.ext4", "-F", "-q"},
	"ext3": {"mkfs.ext3", "-F", "-q"},
	"xfs":  {"mkfs.xfs", "-f", "-q"},
}

// probe returns the type and UUID of what the device holds ("" if nothing
// blkid recognises), read from the device itself rather than a cache.
func probe(ctx context.Context, dev string) (typ, uuid string, err error) {
	out, err := exec.CommandContext(ctx, "blkid", "-p", "-o", "export", dev).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 { // nothing found
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("blkid %s: %w", dev, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE":
			typ = v
		case "UUID":
			uuid = v
		}
	}
	return typ, uuid, nil
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
