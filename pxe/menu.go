package pxe

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// BootMenu is the two-entry boot menu of one host: boot the local disk, or
// boot the labseed netboot kernel to clone an image.
type BootMenu struct {
	// MAC is shown in the menu title and, in the iPXE script, appended to
	// the kernel and initrd URLs as "?mac=aa-bb-cc-dd-ee-ff" so that the
	// server records those downloads for the host; optional.
	MAC string
	// Server is "IP:PORT" of labseed's HTTP server: the kernel and initrd
	// are fetched from it and it is passed as labseed.server=.
	Server string
	// KernelPath and InitrdPath are HTTP paths on Server.
	KernelPath, InitrdPath string
	// Image is passed as labseed.image=; omitted when empty.
	Image string
	// Args are appended to the kernel command line, after labseed.server=,
	// labseed.image= and BOOTIF= (the MAC, which tells the clone
	// environment which interface the machine booted from).
	Args string
	// Clone makes the clone entry the default.
	Clone bool
	// Timeout before the default entry boots; rounded up to 0.1 s for
	// pxelinux and to 1 ms for iPXE, never 0 (which would wait forever).
	Timeout time.Duration
}

// bootURL is the URL of path on Server; tagged adds the MAC as a query
// parameter (HTTPHandler records the download under it). pxelinux gets
// untagged URLs: lpxelinux's handling of query strings is untested, and
// the server finds its MAC by address instead.
func (m BootMenu) bootURL(path string, tagged bool) string {
	u := "http://" + m.Server + path
	if tagged && m.MAC != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "mac=" + url.QueryEscape(strings.ReplaceAll(m.MAC, ":", "-"))
	}
	return u
}

// cmdline is the clone entry's kernel command line (without initrd=).
func (m BootMenu) cmdline() string {
	args := []string{"labseed.server=" + m.Server}
	if m.Image != "" {
		args = append(args, "labseed.image="+m.Image)
	}
	if m.MAC != "" {
		args = append(args, "BOOTIF=01-"+strings.ReplaceAll(strings.ToLower(m.MAC), ":", "-"))
	}
	if m.Args != "" {
		args = append(args, m.Args)
	}
	return strings.Join(args, " ")
}

func (m BootMenu) imageLabel() string {
	if m.Image == "" {
		return "labseed: network boot to clone"
	}
	return "labseed: clone image " + m.Image
}

// PXELinuxConfig renders m as a pxelinux configuration (the file
// pxelinux.cfg/01-<mac>). The local entry is "LOCALBOOT 0"; the clone
// entry loads the kernel and initrd over HTTP, which needs lpxelinux.0.
func PXELinuxConfig(m BootMenu) string {
	def, tenths := "local", (m.Timeout+99*time.Millisecond)/(100*time.Millisecond)
	if m.Clone {
		def = "clone"
	}
	if tenths < 1 {
		tenths = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# labseed boot menu for %s (generated)\n", m.MAC)
	fmt.Fprintf(&b, "DEFAULT %s\nPROMPT 0\nTIMEOUT %d\n\n", def, tenths)
	b.WriteString("LABEL local\n  MENU LABEL Boot from local disk\n  LOCALBOOT 0\n\n")
	fmt.Fprintf(&b, "LABEL clone\n  MENU LABEL %s\n  KERNEL %s\n  INITRD %s\n  APPEND %s\n",
		m.imageLabel(), m.bootURL(m.KernelPath, false), m.bootURL(m.InitrdPath, false), m.cmdline())
	return b.String()
}

// IPXEScript renders m as an iPXE script. The local entry is
// "sanboot --no-describe --drive 0x80" on BIOS and "exit" on UEFI (which
// returns to the firmware's next boot option).
func IPXEScript(m BootMenu, uefi bool) string {
	def, ms := "local", m.Timeout.Milliseconds()
	if m.Clone {
		def = "clone"
	}
	if ms < 1 {
		ms = 1
	}
	local := "sanboot --no-describe --drive 0x80"
	if uefi {
		local = "exit"
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# labseed boot menu for %s (generated)\n", m.MAC)
	fmt.Fprintf(&b, "menu labseed %s\n", m.MAC)
	b.WriteString("item local Boot from local disk\n")
	fmt.Fprintf(&b, "item clone %s\n", m.imageLabel())
	fmt.Fprintf(&b, "choose --default %s --timeout %d target || goto %s\n", def, ms, def)
	b.WriteString("goto ${target}\n\n")
	fmt.Fprintf(&b, ":local\n%s\n\n", local)
	fmt.Fprintf(&b, ":clone\nkernel %s initrd=initrd.img %s\n", m.bootURL(m.KernelPath, true), m.cmdline())
	fmt.Fprintf(&b, "initrd --name initrd.img %s\n", m.bootURL(m.InitrdPath, true))
	b.WriteString("boot\n")
	return b.String()
}
