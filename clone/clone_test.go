package clone

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/peer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"empty", "", map[string]string{}},
		{"netboot", "BOOT_IMAGE=/vmlinuz initrd=initrd.img ip=dhcp labseed.server=10.1.0.1 labseed.image=lab1 quiet\n",
			map[string]string{"BOOT_IMAGE": "/vmlinuz", "initrd": "initrd.img", "ip": "dhcp", ParamServer: "10.1.0.1", ParamImage: "lab1", "quiet": ""}},
		{"port", "labseed.server=print1.lab:8080", map[string]string{ParamServer: "print1.lab:8080"}},
		{"quoted", `console=ttyS0 labseed.image="lab 1" x="a=b c"`, map[string]string{"console": "ttyS0", ParamImage: "lab 1", "x": "a=b c"}},
		{"last wins", "labseed.server=a labseed.server=b", map[string]string{ParamServer: "b"}},
		{"tabs and empty value", "a=\tb= labseed.server=", map[string]string{"a": "", "b": "", ParamServer: ""}},
		{"bootif", "BOOTIF=01-52-54-00-12-34-56", map[string]string{paramBootIF: "01-52-54-00-12-34-56"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseCmdline(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("parseCmdline(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("parseCmdline(%q)[%q] = %q, want %q", tc.in, k, got[k], v)
				}
			}
		})
	}
}

func TestBootMAC(t *testing.T) {
	for in, want := range map[string]string{
		"01-52-54-00-12-34-56": "52:54:00:12:34:56",
		"01-52-54-00-AB-CD-EF": "52:54:00:ab:cd:ef",
		"06-52-54-00-12-34-56": "", // not Ethernet
		"52-54-00-12-34-56":    "",
		"01-zz":                "",
		"":                     "",
	} {
		got, ok := bootMAC(in)
		if got != want || ok != (want != "") {
			t.Errorf("bootMAC(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestCheckIdentity(t *testing.T) {
	good := api.Identity{MAC: "52-54-00-12-34-56", Hostname: "ws07", IP: "10.1.0.17", Prefix: 24}
	id := good
	if err := checkIdentity(&id); err != nil {
		t.Fatal(err)
	}
	if id.MAC != "52:54:00:12:34:56" || id.Filesystem != "ext4" || id.Bootloader != BootGrub {
		t.Errorf("defaults not filled: %+v", id)
	}
	for name, change := range map[string]func(*api.Identity){
		"no host name": func(id *api.Identity) { id.Hostname = "" },
		"bad address":  func(id *api.Identity) { id.IP = "10.1.0" },
		"IPv6":         func(id *api.Identity) { id.IP = "fe80::1" },
		"prefix":       func(id *api.Identity) { id.Prefix = 0 },
		"file system":  func(id *api.Identity) { id.Filesystem = "btrfs" },
		"swap":         func(id *api.Identity) { id.SwapMiB = -1 },
		"MAC":          func(id *api.Identity) { id.MAC = "nope" },
	} {
		id := good
		change(&id)
		if err := checkIdentity(&id); err == nil {
			t.Errorf("%s: accepted %+v", name, id)
		}
	}
}

func TestParseDump(t *testing.T) {
	dos := `label: dos
label-id: 0x96516342
device: /dev/loop0
unit: sectors
sector-size: 512

/dev/loop0p1 : start=        2048, size=     2091008, type=83, bootable
/dev/loop0p2 : start=     2093056, size=      262144, type=82
`
	label, parts, err := parseDump([]byte(dos))
	if err != nil {
		t.Fatal(err)
	}
	want := []dumpPart{
		{node: "/dev/loop0p1", num: 1, start: 2048, size: 2091008, typ: "83", bootable: true},
		{node: "/dev/loop0p2", num: 2, start: 2093056, size: 262144, typ: "82"},
	}
	if label != "dos" || !slices.Equal(parts, want) {
		t.Errorf("parseDump: %q %+v", label, parts)
	}

	gpt := `label: gpt
label-id: 2E5B5F43-8A0A-4C4E-9C0B-3B9D6E6B7A11
device: /dev/nvme0n1
unit: sectors
first-lba: 2048
last-lba: 1000215182
sector-size: 512

/dev/nvme0n1p1 : start=        2048, size=     1048576, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0B1A, name="EFI"
/dev/nvme0n1p2 : start=     1050624, size=    16777216, type=0657fd6d-a4ab-43c4-84e5-0933c84b4f4f, uuid=0B1B
/dev/nvme0n1p12 : start=    17827840, size=   982386688, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=0B1C, name="root, with a comma"
`
	label, parts, err = parseDump([]byte(gpt))
	if err != nil {
		t.Fatal(err)
	}
	root, swap, err := pickPartitions(parts)
	if label != "gpt" || err != nil || root.num != 12 || swap.num != 2 {
		t.Errorf("gpt: label %q, root %+v, swap %+v, %v", label, root, swap, err)
	}

	if _, _, err := parseDump([]byte("/dev/sda1 : start=2048\n")); err == nil {
		t.Error("a dump without a label line was accepted")
	}
	if _, _, err := parseDump([]byte("label: dos\n/dev/sda : start=x\n")); err == nil {
		t.Error("a partition without a number was accepted")
	}
	_, parts, _ = parseDump([]byte("label: dos\n/dev/sda1 : start=2048, size=100, type=7\n"))
	if _, _, err := pickPartitions(parts); err == nil || !strings.Contains(err.Error(), "--partition") {
		t.Errorf("a table without a Linux partition: %v", err)
	}
}

func TestLayoutScript(t *testing.T) {
	for _, tc := range []struct {
		name          string
		size          int64
		root, swap    int
		want, wantErr string
	}{
		{"rest of the disk", 1 << 30, 0, 128, "label: dos\n\nsize=894MiB, type=83, bootable\nsize=128MiB, type=82\n", ""},
		{"no swap", 1 << 30, 0, 0, "label: dos\n\nsize=1022MiB, type=83, bootable\n", ""},
		{"fixed root", 500 << 30, 20480, 4096, "label: dos\n\nsize=20480MiB, type=83, bootable\nsize=4096MiB, type=82\n", ""},
		{"too small", 1 << 30, 0, 1000, "", "too little"},
		{"root too big", 1 << 30, 1000, 128, "", "lower root_mib"},
		{"exactly full", 1 << 30, 1000, 22, "label: dos\n\nsize=1000MiB, type=83, bootable\nsize=22MiB, type=82\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := layoutScript(tc.size, tc.root, tc.swap)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("layoutScript = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTrailingNumber(t *testing.T) {
	for in, want := range map[string]int{"/dev/sda1": 1, "/dev/loop0p12": 12, "/dev/nvme0n1p3": 3, "/dev/sda": 0, "": 0} {
		if got := trailingNumber(in); got != want {
			t.Errorf("trailingNumber(%q) = %d, want %d", in, got, want)
		}
	}
}

// tree makes files (path → content; a trailing "/" makes a directory, an
// "->" prefix a symlink) under a new directory and opens it as a root.
func tree(t *testing.T, files map[string]string) *os.Root {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], full)
		default:
			err = os.WriteFile(full, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestDetectNetwork(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"empty", map[string]string{"etc/": ""}, ""},
		{"ifupdown", map[string]string{"etc/network/interfaces": "auto lo\n"}, NetworkIfupdown},
		{"ifup only, merged /usr", map[string]string{"sbin": "->usr/sbin", "usr/sbin/ifup": "#!"}, NetworkIfupdown},
		{"networkd", map[string]string{"etc/network/interfaces": "",
			"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "->/lib/systemd/system/systemd-networkd.service"}, NetworkNetworkd},
		{"networkd by socket", map[string]string{"etc/systemd/system/sockets.target.wants/systemd-networkd.socket": "->/x"}, NetworkNetworkd},
		{"networkd installed, not enabled", map[string]string{"etc/network/interfaces": "", "lib/systemd/system/systemd-networkd.service": ""}, NetworkIfupdown},
		{"NetworkManager over ifupdown", map[string]string{"etc/network/interfaces": "", "etc/NetworkManager/NetworkManager.conf": "",
			"usr/sbin/NetworkManager": "#!"}, NetworkManager},
		{"NetworkManager's directory without it", map[string]string{"etc/network/interfaces": "", "etc/NetworkManager/": ""}, NetworkIfupdown},
		{"absolute symlinks stay inside", map[string]string{"etc/NetworkManager": "->/etc", "usr/sbin/NetworkManager": "->/usr/bin/true"}, NetworkManager},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := detectNetwork(tree(t, tc.files)); got != tc.want {
				t.Errorf("detectNetwork = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFindKernel(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		files                  map[string]string
		wantKernel, wantInitrd string
	}{
		{"none", map[string]string{"boot/": ""}, "", ""},
		{"no boot", map[string]string{"etc/": ""}, "", ""},
		{"debian, newest", map[string]string{
			"boot/vmlinuz-6.1.0-9-amd64": "k", "boot/initrd.img-6.1.0-9-amd64": "i",
			"boot/vmlinuz-6.1.0-18-amd64": "k", "boot/initrd.img-6.1.0-18-amd64": "i",
			"boot/vmlinuz-6.1.0-18-amd64.bak": "->x"},
			"/boot/vmlinuz-6.1.0-18-amd64", "/boot/initrd.img-6.1.0-18-amd64"},
		{"fedora", map[string]string{"boot/vmlinuz-6.5.6-300.fc39.x86_64": "k", "boot/initramfs-6.5.6-300.fc39.x86_64.img": "i"},
			"/boot/vmlinuz-6.5.6-300.fc39.x86_64", "/boot/initramfs-6.5.6-300.fc39.x86_64.img"},
		{"no initrd", map[string]string{"boot/vmlinuz-5.10.0": "k"}, "/boot/vmlinuz-5.10.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, i := findKernel(tree(t, tc.files).FS())
			if k != tc.wantKernel || i != tc.wantInitrd {
				t.Errorf("findKernel = %q, %q; want %q, %q", k, i, tc.wantKernel, tc.wantInitrd)
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"6.1.0-9-amd64", "6.1.0-18-amd64", true},
		{"6.1.0-18-amd64", "6.1.0-9-amd64", false},
		{"5.10.0", "6.1.0", true},
		{"6.1", "6.1.0", true},
		{"6.1.0", "6.1.0", false},
		{"linux", "linux-lts", true},
		{"6.1.0-rc1", "6.1.0-rc2", true},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func TestNetmask(t *testing.T) {
	for p, want := range map[int]string{24: "255.255.255.0", 16: "255.255.0.0", 22: "255.255.252.0", 32: "255.255.255.255"} {
		if got := netmask(p); got != want {
			t.Errorf("netmask(%d) = %q, want %q", p, got, want)
		}
	}
}

// testData is a host as the templates see it.
func testData(network string) *TemplateData {
	return &TemplateData{
		Identity: api.Identity{
			MAC: "52:54:00:12:34:56", Hostname: "ws07", Domain: "lab.example", IP: "10.1.0.17", Prefix: 24,
			Gateway: "10.1.0.1", DNS: []string{"10.1.0.2", "10.1.0.3"},
			PrinterQueue: "lab1-laser", PrinterServer: "printsrv", Display: "1920x1080",
			Image: "lab1-v3", Filesystem: "ext4", SwapMiB: 1024, Bootloader: BootGrub,
			Vars: map[string]string{"x_room": "B204"},
		},
		FQDN: "ws07.lab.example", Netmask: "255.255.255.0", Interface: "enp3s0", Network: network, Disk: "/dev/sda",
		Root:   Partition{Device: "/dev/sda1", UUID: "6f1c3f6e-8a31-4d38-9a5e-2c4b1f0e9d21", FSType: "ext4"},
		Swap:   Partition{Device: "/dev/sda2", UUID: "0a8e1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b", FSType: "swap"},
		Kernel: "/boot/vmlinuz-6.1.0-18-amd64", Initrd: "/boot/initrd.img-6.1.0-18-amd64", Server: "10.1.0.1:7480",
		StaticResolvConf: true,
	}
}

// TestTemplates renders every shipped template for each network system
// and compares with testdata/golden/PATH (go test -update rewrites them);
// each network system has a configuration file of its own.
func TestTemplates(t *testing.T) {
	for _, network := range []string{NetworkIfupdown, NetworkNetworkd, NetworkManager, ""} {
		name := network
		if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			d := testData(network)
			files, err := configFiles(d, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{extlinuxConf, liloConf} {
				text, _, _, err := shippedTemplate(p, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, err := render(p, text, d)
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, renderedFile{path: p, content: b})
			}
			var paths []string
			for _, f := range files {
				paths = append(paths, f.path)
				golden := filepath.Join("testdata", "golden", f.path)
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, f.content, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (go test -update writes it)", err)
				}
				if string(want) != string(f.content) {
					t.Errorf("%s:\n%s\nwant (%s):\n%s", f.path, f.content, golden, want)
				}
			}
			// Exactly one network configuration, the detected system's.
			nets := 0
			for _, p := range paths {
				if strings.Contains(p, "network") || strings.Contains(p, "NetworkManager") {
					nets++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[network != ""]; nets != want {
				t.Errorf("network files %v for %q", paths, network)
			}
		})
	}
}

func TestConfigFilesLab(t *testing.T) {
	d := testData(NetworkIfupdown)
	d.PrinterQueue, d.Display = "", ""
	files, err := configFiles(d, map[string]string{
		"etc/hosts":            "{{.IP}} {{.Hostname}} # the lab's\n",
		"/etc/motd":            "{{.Hostname}} in {{.Vars.x_room}}{{.Vars.x_unset}}\n",
		"etc/fstab":            "  \n", // empty: not written
		"etc/printcap":         "# the lab's, but no printer for this host: not written\n",
		"etc/labseed/./a.conf": "a\n",
		extlinuxConf:           "# the bootloader step writes this one\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	for _, f := range files {
		got[f.path] = string(f.content)
		order = append(order, f.path)
	}
	want := []string{"etc/hostname", "etc/hosts", "etc/network/interfaces", "etc/resolv.conf", "etc/labseed/a.conf", "etc/motd"}
	if !slices.Equal(order, want) {
		t.Errorf("files %v, want %v", order, want)
	}
	if got["etc/hosts"] != "10.1.0.17 ws07 # the lab's\n" || got["etc/motd"] != "ws07 in B204\n" {
		t.Errorf("lab templates rendered as %q and %q", got["etc/hosts"], got["etc/motd"])
	}

	for _, bad := range []string{"../etc/passwd", "", "/", ".", "etc/../../x"} {
		if _, err := configFiles(d, map[string]string{bad: "x"}); err == nil || !strings.Contains(err.Error(), "not a path in the new system") {
			t.Errorf("lab template %q: %v", bad, err)
		}
	}
	if _, err := configFiles(d, map[string]string{"etc/x": "{{.Nope}}"}); err == nil || !strings.Contains(err.Error(), "template etc/x") {
		t.Errorf("a template using an unknown field: %v", err)
	}
	if _, err := configFiles(d, map[string]string{"etc/x": "{{if}}"}); err == nil || !strings.Contains(err.Error(), "template etc/x") {
		t.Errorf("a template that does not parse: %v", err)
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
301 27 259:0 / /mnt/labseed rw,relatime - ext4 /dev/loop0p1 rw
302 301 0:6 / /mnt/labseed/dev rw,relatime master:2 - devtmpfs devtmpfs rw,size=1k
303 27 259:1 / /mnt/with\040space rw - ext4 /dev/loop0p2 rw
`
	ms, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 || ms[2].dev != "259:0" || ms[2].point != "/mnt/labseed" || ms[2].source != "/dev/loop0p1" ||
		ms[3].parent != 301 || ms[3].fstype != "devtmpfs" || ms[4].point != "/mnt/with space" {
		t.Errorf("parseMountinfo: %+v", ms)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("a short line was accepted")
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\134b`: `a\b`, `tab\011`: "tab\t", `x\04`: `x\04`, `plain`: "plain"} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/mnt/labseed", "/mnt/labseed", true}, {"/mnt/labseed/dev", "/mnt/labseed", true},
		{"/mnt/labseed2", "/mnt/labseed", false}, {"/mnt", "/mnt/labseed", false}, {"/mnt/labseed/x", "/mnt/labseed/", true},
	} {
		if got := under(tc.p, tc.dir); got != tc.want {
			t.Errorf("under(%q, %q) = %v", tc.p, tc.dir, got)
		}
	}
}

func TestStepError(t *testing.T) {
	inner := errors.New("hook 50-x: exit status 1")
	var err error = &StepError{Step: StepHooks, Err: inner}
	if err.Error() != "clone: hooks: hook 50-x: exit status 1" || !errors.Is(err, inner) {
		t.Errorf("StepError: %q", err)
	}
}

func TestLines(t *testing.T) {
	if got := lines([]byte("  \n")); got != "" {
		t.Errorf("lines of nothing: %q", got)
	}
	if got := lines([]byte("a\nb\n")); got != ": a / b" {
		t.Errorf("lines: %q", got)
	}
	long := strings.Repeat("x\n", 20) + "last\n"
	if got := lines([]byte(long)); !strings.HasPrefix(got, ": ... / x") || !strings.HasSuffix(got, " / last") {
		t.Errorf("lines of a long output: %q", got)
	}
}

func TestNewConfig(t *testing.T) {
	key := make([]byte, 32)
	pub := make([]byte, 32)
	for name, cfg := range map[string]Config{
		"no disk":       {Config: peer.Config{PublicKey: pub, LabKey: key}},
		"no keys":       {Disk: "/dev/sda"},
		"mount on root": {Disk: "/dev/sda", Config: peer.Config{Insecure: true}, Mountpoint: "/"},
		"target":        {Disk: "/dev/sda", Config: peer.Config{Insecure: true, Target: "/mnt"}},
	} {
		if _, err := newCloner(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := newCloner(Config{Disk: "/dev/sda", Config: peer.Config{PublicKey: pub, LabKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Mountpoint != DefaultMountpoint || c.cfg.CmdlinePath != "/proc/cmdline" || c.cfg.HTTPClient == nil {
		t.Errorf("defaults: %+v", c.cfg)
	}
}
