package clone

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Bootloader presets (api.Identity.Bootloader, lab.conf's bootloader);
// any other value is a shell command template run in the new system's
// chroot, with TemplateData: "grub-install {{.Disk}} && update-grub".
const (
	// BootGrub installs GRUB for BIOS booting into the disk's MBR
	// (grub-install --target=i386-pc DISK), then writes its menu
	// (update-grub, or grub-mkconfig where there is none). The default.
	BootGrub = "grub"
	// BootExtlinux installs extlinux into /boot/extlinux of the root file
	// system, writes boot/extlinux/extlinux.conf (a template: the newest
	// kernel, root=UUID=) and extlinux's MBR boot code (mbr.bin, or
	// gptmbr.bin on a GPT disk) into the disk's first 440 bytes. The
	// image's extlinux and boot code are used, else the cloning system's.
	BootExtlinux = "extlinux"
	// BootLilo writes etc/lilo.conf (a template) and runs lilo.
	BootLilo = "lilo"
	// BootNone installs no bootloader.
	BootNone = "none"
)

// grubScript is BootGrub's command.
const grubScript = `set -e
if ! command -v grub-install >/dev/null 2>&1; then
	echo "the image has no grub-install: install grub-pc in it, or choose another bootloader in lab.conf" >&2
	exit 127
fi
grub-install --target=i386-pc {{.Disk}}
if command -v update-grub >/dev/null 2>&1; then
	update-grub
else
	grub-mkconfig -o /boot/grub/grub.cfg
fi
`

// bootloader is the bootloader step.
func (c *cloner) bootloader(ctx context.Context) error {
	d := c.sys.data
	script := ""
	switch b := c.id.Bootloader; b {
	case BootNone:
		c.say("no bootloader (bootloader = none)")
		return nil
	case BootExtlinux:
		return c.extlinux(ctx)
	case BootGrub:
		script = grubScript
	case BootLilo:
		if d.Kernel == "" {
			return errNoKernel
		}
		if err := c.writeTemplate(liloConf, 0o600); err != nil {
			return err
		}
		script = "lilo"
	default:
		script = b
	}
	cmd, err := render("bootloader", script, d)
	if err != nil {
		return err
	}
	return c.chroot(ctx, "bootloader "+c.id.Bootloader, "/bin/sh", "-c", string(cmd))
}

// writeTemplate renders the shipped (or the lab's) template p and writes it.
func (c *cloner) writeTemplate(p string, mode os.FileMode) error {
	lab, err := labTemplates(c.id.Templates)
	if err != nil {
		return err
	}
	text, _, ok, err := shippedTemplate(p, lab)
	if err != nil || !ok {
		return err
	}
	b, err := render(p, text, c.sys.data)
	if err != nil {
		return err
	}
	if err := writeFile(c.sys.root, p, b, mode); err != nil {
		return err
	}
	c.log.Info("configured", "file", "/"+p)
	return nil
}

// mbrFiles are where extlinux's MBR boot code is found, in the new system
// and then on the cloning one (Debian's extlinux, syslinux-common).
var mbrFiles = []string{"usr/lib/EXTLINUX/", "usr/lib/syslinux/mbr/", "usr/share/syslinux/"}

// extlinux installs BootExtlinux.
func (c *cloner) extlinux(ctx context.Context) error {
	d := c.sys.data
	if d.Kernel == "" {
		return errNoKernel
	}
	if err := c.writeTemplate(extlinuxConf, 0o644); err != nil {
		return err
	}
	if inImage := firstExisting(c.sys.root, "usr/bin/extlinux", "usr/sbin/extlinux", "sbin/extlinux", "bin/extlinux"); inImage != "" {
		if err := c.chroot(ctx, "extlinux", inImage, "--install", "/boot/extlinux"); err != nil {
			return err
		}
	} else {
		host, err := exec.LookPath("extlinux")
		if err != nil {
			return errors.New("neither the image nor this system has extlinux (Debian: extlinux)")
		}
		c.log.Info("no extlinux in the image: using this system's", "extlinux", host)
		if _, err := run(ctx, host, "--install", filepath.Join(c.sys.dir, "boot/extlinux")); err != nil {
			return err
		}
	}
	name := "mbr.bin"
	if c.disk.label == "gpt" {
		name = "gptmbr.bin"
	}
	mbr, from, err := c.findMBR(name)
	if err != nil {
		return err
	}
	if len(mbr) < bootCodeSize {
		return fmt.Errorf("%s: %d bytes, not boot code", from, len(mbr))
	}
	if err := writeBootCode(c.disk.dev, mbr[:bootCodeSize]); err != nil {
		return err
	}
	c.log.Info("MBR boot code written", "disk", c.disk.dev, "from", from)
	return nil
}

// bootCodeSize is the part of the MBR that holds boot code: the disk
// signature and the partition table follow.
const bootCodeSize = 440

// findMBR reads extlinux's boot code file name from the new system, or
// else from the cloning system.
func (c *cloner) findMBR(name string) ([]byte, string, error) {
	for _, dir := range mbrFiles {
		if b, err := c.sys.root.ReadFile(dir + name); err == nil {
			return b, "/" + dir + name + " of the image", nil
		}
	}
	for _, dir := range mbrFiles {
		if b, err := os.ReadFile("/" + dir + name); err == nil {
			return b, "/" + dir + name, nil
		}
	}
	return nil, "", fmt.Errorf("no %s in the image nor on this system (Debian: syslinux-common)", name)
}

// writeBootCode writes code over the start of the disk's MBR and syncs.
func writeBootCode(dev string, code []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write the boot code: %w", err)
	}
	_, err = f.WriteAt(code, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the boot code to %s: %w", dev, err)
	}
	return nil
}
