package pxe

import (
	"strings"
	"testing"
	"time"
)

func TestMenus(t *testing.T) {
	cfg := testConfig(t)
	hosts := table(t, Host{MAC: macB, Clone: true, Image: "exam", Args: "labseed.disk=/dev/nvme0n1 labseed.on_failure=shell"})
	cfg.Hosts = hosts
	s := newServer(t, cfg)
	tests := []struct {
		name string
		got  func() string
		want []string
	}{
		{"ipxe bios local default", func() string { return s.IPXEScript(macA, false) }, []string{
			"#!ipxe\n", "choose --default local --timeout 5000 target", ":local\nsanboot --no-describe --drive 0x80\n",
			"kernel http://10.78.0.1:7480/pxe/boot/vmlinuz?mac=52-54-00-12-34-56 initrd=initrd.img labseed.server=10.78.0.1:7480 labseed.image=lab-2025 BOOTIF=01-52-54-00-12-34-56 console=ttyS0,115200n8 console=tty0\n",
			"initrd --name initrd.img http://10.78.0.1:7480/pxe/boot/initrd.img?mac=52-54-00-12-34-56\n"}},
		{"ipxe uefi exits", func() string { return s.IPXEScript(macA, true) }, []string{":local\nexit\n"}},
		{"ipxe clone host", func() string { return s.IPXEScript(macB, false) }, []string{
			"choose --default clone --timeout 1000 target",
			"labseed.image=exam BOOTIF=01-" + strings.ReplaceAll(macB.String(), ":", "-") + " console=ttyS0,115200n8 console=tty0 labseed.disk=/dev/nvme0n1 labseed.on_failure=shell\n"}},
		{"pxelinux local default", func() string { return s.PXELinuxConfig(macA) }, []string{
			"DEFAULT local\n", "TIMEOUT 50\n", "LOCALBOOT 0\n", "KERNEL http://10.78.0.1:7480/pxe/boot/vmlinuz\n",
			"INITRD http://10.78.0.1:7480/pxe/boot/initrd.img\n", "APPEND labseed.server=10.78.0.1:7480 labseed.image=lab-2025 BOOTIF=01-52-54-00-12-34-56 console=ttyS0,115200n8 console=tty0\n"}},
		{"pxelinux clone host", func() string { return s.PXELinuxConfig(macB) }, []string{"DEFAULT clone\n", "TIMEOUT 10\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.got()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
		})
	}
	// The marks are the table's: a change holds from the next request on.
	hosts.SetNextBoot(macA, true)
	if !strings.Contains(s.IPXEScript(macA, false), "--default clone --timeout 1000") || !s.NextBoot(macA) {
		t.Error("SetNextBoot(true) did not make clone the default")
	}
	hosts.SetNextBoot(macB, false)
	if !strings.Contains(s.PXELinuxConfig(macB), "DEFAULT local") {
		t.Error("SetNextBoot(false) did not restore local boot")
	}
}

func TestBootURLs(t *testing.T) {
	tests := []struct {
		name, mac, path string
		tagged          bool
		want            string
	}{
		{"tagged", "52:54:00:12:34:56", "/pxe/boot/vmlinuz", true, "http://s:80/pxe/boot/vmlinuz?mac=52-54-00-12-34-56"},
		{"path has a query", "52:54:00:12:34:56", "/k?v=2", true, "http://s:80/k?v=2&mac=52-54-00-12-34-56"},
		{"no MAC", "", "/pxe/boot/vmlinuz", true, "http://s:80/pxe/boot/vmlinuz"},
		{"pxelinux untagged", "52:54:00:12:34:56", "/pxe/boot/vmlinuz", false, "http://s:80/pxe/boot/vmlinuz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (BootMenu{Server: "s:80", MAC: tt.mac}).bootURL(tt.path, tt.tagged); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMenuTimeoutNeverZero(t *testing.T) {
	m := BootMenu{Server: "10.78.0.1:80", Timeout: 0}
	if !strings.Contains(PXELinuxConfig(m), "TIMEOUT 1\n") || !strings.Contains(IPXEScript(m, false), "--timeout 1 ") {
		t.Error("zero timeout rendered as wait forever")
	}
	m.Timeout = 1234 * time.Millisecond
	if !strings.Contains(PXELinuxConfig(m), "TIMEOUT 13\n") {
		t.Error("timeout not rounded up to tenths")
	}
}
