package hosts

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const table = `mac,hostname,ip,next_boot,printer_queue
52:54:00:00:00:01,lab1-ws01,10.1.0.101,,
52-54-00-00-00-02,lab1-ws02,10.1.0.102,clone,lab1-color
`

const conf = `# lab 1
netmask = 255.255.255.0   # or 24
gateway = 10.1.0.1
dns = 10.1.0.1, 10.1.0.2
domain = lab1.example.org
printer_queue = lab1
printer_server = 10.1.0.1
image = debian
enroll_name = lab1-ws%02d
enroll_range = 10.1.0.101-10.1.0.104
x_motd = Welcome
`

func mac(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openLab(t *testing.T) (*DB, string) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, HostsFile), []byte(table), 0o644)
	os.WriteFile(filepath.Join(dir, SettingsFile), []byte(conf), 0o644)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db, dir
}

func TestParseCSVErrors(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"no ip column", "mac,hostname\n", `line 1: no "ip" column`},
		{"bad mac", "mac,hostname,ip\nzz,a,10.0.0.1\n", `line 2: "zz" is not an Ethernet MAC`},
		{"bad ip", "mac,hostname,ip\n52:54:00:00:00:01,a,10.0.0\n", `line 2: ip "10.0.0" is not an IPv4`},
		{"bad name", "mac,hostname,ip\n52:54:00:00:00:01,-a,10.0.0.1\n", `line 2: host name "-a"`},
		{"dup mac", "mac,hostname,ip\n# c\n52:54:00:00:00:01,a,10.0.0.1\n52:54:00:00:00:01,b,10.0.0.2\n", "line 4: MAC 52:54:00:00:00:01 is already a"},
		{"dup name", "mac,hostname,ip\n52:54:00:00:00:01,a,10.0.0.1\n52:54:00:00:00:02,a,10.0.0.2\n", "line 3: host name a is already used"},
		{"dup ip", "mac,hostname,ip\n52:54:00:00:00:01,a,10.0.0.1\n52:54:00:00:00:02,b,10.0.0.1\n", "line 3: address 10.0.0.1 is already a's"},
		{"unknown column", "mac,hostname,ip,gatway\n", `column "gatway": unknown setting`},
		{"bad setting", "mac,hostname,ip,display\n52:54:00:00:00:01,a,10.0.0.1,big\n", `line 2: display = "big"`},
		{"bad next boot", "mac,hostname,ip,next_boot\n52:54:00:00:00:01,a,10.0.0.1,now\n", `line 2: next_boot "now"`},
		{"short row", "mac,hostname,ip\n52:54:00:00:00:01,a\n", `line 2: ip "" is not`},
		{"long row", "mac,hostname,ip\n52:54:00:00:00:01,a,10.0.0.1,x\n", "line 2: 4 cells"},
		{"bad group", "mac,hostname,ip,group\n52:54:00:00:00:01,a,10.0.0.1,row1 ;rm\n", `line 2: group ";rm"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSV(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCSVRoundTrip(t *testing.T) {
	hosts, err := ParseCSV(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[1].NextBoot != BootClone || hosts[1].Settings[KeyPrinterQueue] != "lab1-color" || hosts[0].Settings != nil {
		t.Fatalf("parsed %+v", hosts)
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, hosts); err != nil {
		t.Fatal(err)
	}
	again, err := ParseCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var b1, b2 bytes.Buffer
	WriteCSV(&b1, hosts)
	WriteCSV(&b2, again)
	if b1.String() != b2.String() {
		t.Fatalf("round trip changed the table:\n%s\n%s", b1.String(), b2.String())
	}
}

// TestKeepSetting: lab.conf's keep becomes the identity's list, a host's
// column overrides it.
func TestKeepSetting(t *testing.T) {
	s, err := ParseSettings(strings.NewReader("keep = /home, /srv/shared /var/lib/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{settings: s}
	h := Host{MAC: mac(t, "52:54:00:00:00:01"), Hostname: "a", IP: netip.MustParseAddr("10.0.0.1")}
	if got := db.identity(h, false).Keep; !slices.Equal(got, []string{"/home", "/srv/shared", "/var/lib/x"}) {
		t.Errorf("keep %q", got)
	}
	h.Settings = map[string]string{KeyKeep: "/opt"}
	if got := db.identity(h, false).Keep; !slices.Equal(got, []string{"/opt"}) {
		t.Errorf("keep of the host's column: %q", got)
	}
	h.Settings = nil
	if got := (&DB{settings: defaultSettings}).identity(h, false).Keep; got != nil {
		t.Errorf("default keep %q", got)
	}
}

func TestParseSettingsErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"gateway 10.0.0.1\n", `line 1: "gateway 10.0.0.1" is not "key = value"`},
		{"# x\n\ngatway = 10.0.0.1\n", `line 3: unknown setting "gatway"`},
		{"netmask = 255.0.255.0\n", "line 1: netmask"},
		{"swap_mib = -1\n", "line 1: swap_mib"},
		{"enroll_range = 10.0.0.9-10.0.0.1\n", "ends before it starts"},
		{"enroll_name = ws\n", "enroll_name"},
		{"filesystem = ntfs\n", "must be one of ext4, ext3, xfs"},
		{"dns = 1.1.1.1\ndns = 2.2.2.2\n", "line 2: dns already set on line 1"},
		{"keep = home\n", `keep = "home": "home": give absolute paths`},
		{"keep = /home, /\n", `"/": give absolute paths`},
		{"keep = /srv/../etc\n", "give absolute paths"},
		{"keep = /.labseed/installed\n", "not /.labseed"},
	} {
		_, err := ParseSettings(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestWhoAmIKnown(t *testing.T) {
	db, dir := openLab(t)
	os.MkdirAll(filepath.Join(dir, TemplatesDir, "all", "etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, TemplatesDir, "debian", "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, TemplatesDir, "all", "etc", "motd"), []byte("lab"), 0o644)
	os.WriteFile(filepath.Join(dir, TemplatesDir, "all", "etc", "issue"), []byte("all"), 0o644)
	os.WriteFile(filepath.Join(dir, TemplatesDir, "debian", "etc", "issue"), []byte("debian"), 0o644)
	os.MkdirAll(filepath.Join(dir, HooksDir), 0o755)
	os.WriteFile(filepath.Join(dir, HooksDir, "20-b.sh"), []byte("echo b"), 0o755)
	os.WriteFile(filepath.Join(dir, HooksDir, "10-a.sh"), []byte("echo a"), 0o755)
	os.WriteFile(filepath.Join(dir, HooksDir, "10-a.sh~"), []byte("old"), 0o755)

	id, err := db.WhoAmI([]net.HardwareAddr{mac(t, "02:00:00:00:00:99"), mac(t, "52:54:00:00:00:02")})
	if err != nil {
		t.Fatal(err)
	}
	if id.Hostname != "lab1-ws02" || id.IP != "10.1.0.102" || id.Prefix != 24 || id.Gateway != "10.1.0.1" ||
		len(id.DNS) != 2 || id.PrinterQueue != "lab1-color" || id.PrinterServer != "10.1.0.1" ||
		id.Image != "debian" || id.Filesystem != "ext4" || id.SwapMiB != 1024 || id.Bootloader != "grub" ||
		id.NextBoot != BootClone || id.Enrolled || id.Vars["x_motd"] != "Welcome" {
		t.Fatalf("identity %+v", id)
	}
	if id.Templates["etc/motd"] != "lab" || id.Templates["etc/issue"] != "debian" {
		t.Fatalf("templates %v", id.Templates)
	}
	if len(id.Hooks) != 2 || id.Hooks[0].Name != "10-a.sh" || id.Hooks[1].Script != "echo b" {
		t.Fatalf("hooks %+v", id.Hooks)
	}
}

func TestEnrolment(t *testing.T) {
	db, dir := openLab(t)
	// 10.1.0.101 and .102 are taken: the next free are .103, .104.
	want := []struct{ name, ip string }{{"lab1-ws03", "10.1.0.103"}, {"lab1-ws04", "10.1.0.104"}}
	for i, w := range want {
		m := mac(t, "02:00:00:00:01:0"+string(rune('1'+i)))
		id, err := db.WhoAmI([]net.HardwareAddr{m})
		if err != nil {
			t.Fatal(err)
		}
		if !id.Enrolled || id.Hostname != w.name || id.IP != w.ip {
			t.Fatalf("enrolled %+v, want %v", id, w)
		}
		again, err := db.WhoAmI([]net.HardwareAddr{m})
		if err != nil || again.Enrolled || again.IP != w.ip {
			t.Fatalf("second ask: %+v, %v", again, err)
		}
	}
	_, err := db.WhoAmI([]net.HardwareAddr{mac(t, "02:00:00:00:01:09")})
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "every address of enroll_range") {
		t.Fatalf("full range: %v", err)
	}
	// The enrolled hosts were saved: a new DB sees them.
	db2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := db2.Hosts()
	if len(hosts) != 4 || hosts[3].Hostname != "lab1-ws04" {
		t.Fatalf("saved table %+v", hosts)
	}
	// Enrolment off: refused, and the error says how to turn it on.
	os.WriteFile(filepath.Join(dir, SettingsFile), []byte(conf+"enroll = off\n"), 0o644)
	_, err = db2.WhoAmI([]net.HardwareAddr{mac(t, "02:00:00:00:01:0a")})
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "enroll = off") {
		t.Fatalf("enrolment off: %v", err)
	}
}

func TestImportAndNextBoot(t *testing.T) {
	db, dir := openLab(t)
	// clone says what the network boot sees of m's next boot.
	clone := func(m string) bool {
		id, ok := db.Lookup(mac(t, m))
		return ok && id.NextBoot == BootClone
	}
	before, _ := os.ReadFile(filepath.Join(dir, HostsFile))
	err := db.Import(strings.NewReader("mac,hostname,ip\n52:54:00:00:00:03,a,10.1.0.5\n52:54:00:00:00:04,a,10.1.0.6\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad import: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, HostsFile)); !bytes.Equal(before, after) {
		t.Fatal("a refused import changed hosts.csv")
	}
	if err := db.Import(strings.NewReader("mac,hostname,ip\n52:54:00:00:00:03,a,10.1.0.5\n52:54:00:00:00:04,b,10.1.0.6\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := db.SetNextBoot([]net.HardwareAddr{mac(t, "52:54:00:00:00:04")}, BootClone); n != 1 || err != nil {
		t.Fatalf("mark one: %d, %v", n, err)
	}
	if _, err := db.SetNextBoot([]net.HardwareAddr{mac(t, "52:54:00:00:00:09")}, BootClone); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("mark unknown: %v", err)
	}
	hosts, _ := db.Hosts()
	if hosts[0].NextBoot != BootLocal || hosts[1].NextBoot != BootClone {
		t.Fatalf("marks %+v", hosts)
	}
	if clone("52:54:00:00:00:03") || !clone("52:54:00:00:00:04") || len(db.List()) != 2 {
		t.Fatalf("the network boot's view: %+v", db.List())
	}
	if n, _ := db.SetNextBoot(nil, BootClone); n != 2 {
		t.Fatalf("mark all: %d", n)
	}
	// A finished clone returns its host to local boot by itself.
	m := mac(t, "52:54:00:00:00:03")
	db.Report(m, Report{Step: "fetch", State: StateRunning, Time: time.Now()})
	db.Report(m, Report{Step: "done", State: StateDone, Time: time.Now()})
	hosts, _ = db.Hosts()
	if hosts[0].NextBoot != BootLocal || hosts[1].NextBoot != BootClone {
		t.Fatalf("after done: %+v", hosts)
	}
	if err := db.Report(m, Report{Step: "x", State: "weird"}); err == nil {
		t.Fatal("a report with an unknown state was accepted")
	}
	if clone("52:54:00:00:00:03") || !clone("52:54:00:00:00:04") {
		t.Fatalf("the network boot's view after done: %+v", db.List())
	}
	var buf bytes.Buffer
	db.Export(&buf)
	if !strings.Contains(buf.String(), "52:54:00:00:00:04,b,10.1.0.6,clone") {
		t.Fatalf("export:\n%s", buf.String())
	}
}

func TestHandEditBroken(t *testing.T) {
	db, dir := openLab(t)
	os.WriteFile(filepath.Join(dir, HostsFile), []byte(table+"52:54:00:00:00:07,lab1-ws01,10.1.0.107\n"), 0o644)
	// Make sure the stamp differs even on coarse clocks.
	os.Chtimes(filepath.Join(dir, HostsFile), time.Now(), time.Now().Add(time.Second))
	_, err := db.Hosts()
	if err == nil || !strings.Contains(err.Error(), "hosts.csv: hosts table: line 4: host name lab1-ws01") {
		t.Fatalf("broken edit: %v", err)
	}
	// The network boot goes on with the last good table.
	if ids := db.List(); len(ids) == 0 {
		t.Fatal("List lost the last good table")
	} else if _, ok := db.Lookup(mac(t, ids[0].MAC)); !ok {
		t.Fatalf("Lookup(%s) lost the last good table", ids[0].MAC)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add(table)
	f.Add("mac,hostname,ip,x_a\n52:54:00:00:00:01,a,10.0.0.1,\"q\"\"\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		hosts, err := ParseCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, hosts); err != nil {
			t.Fatal(err)
		}
		again, err := ParseCSV(&buf)
		if err != nil {
			t.Fatalf("written table does not parse: %v\n%s", err, buf.String())
		}
		if len(again) != len(hosts) {
			t.Fatalf("%d hosts became %d", len(hosts), len(again))
		}
	})
}

func FuzzParseSettings(f *testing.F) {
	f.Add(conf)
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSettings(strings.NewReader(in))
		if err != nil {
			return
		}
		for k, v := range s {
			if err := checkSetting(k, v); err != nil {
				t.Fatalf("accepted an invalid setting: %v", err)
			}
		}
	})
}

func TestGroups(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, HostsFile), []byte(`mac,hostname,ip,group,next_boot
52:54:00:00:00:01,ws01,10.1.0.101,row1 b104,
52:54:00:00:00:02,ws02,10.1.0.102,"row2,b104",
52:54:00:00:00:03,ws03,10.1.0.103,,
`), 0o644)
	os.WriteFile(filepath.Join(dir, SettingsFile), []byte("image = lab1\n"), 0o644)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := func(hs []Host) string {
		var n []string
		for _, h := range hs {
			n = append(n, h.Hostname)
		}
		return strings.Join(n, " ")
	}
	for _, tc := range []struct {
		name string
		sel  Selection
		want string // host names, or the error
	}{
		{"all", Selection{All: true}, "ws01 ws02 ws03"},
		{"a room", Selection{Group: "b104"}, "ws01 ws02"},
		{"a row", Selection{Group: "row2"}, "ws02"},
		{"no such group", Selection{Group: "row3"}, `no host is in group "row3" (the table's groups: b104, row1, row2)`},
		{"MACs", Selection{MACs: []net.HardwareAddr{mac(t, "52:54:00:00:00:03"), mac(t, "52:54:00:00:00:01"), mac(t, "52:54:00:00:00:03")}}, "ws03 ws01"},
		{"unknown MAC", Selection{MACs: []net.HardwareAddr{mac(t, "52:54:00:00:00:09")}}, "52:54:00:00:00:09 is not in the hosts table"},
		{"nothing", Selection{}, "one of them"},
		{"two", Selection{All: true, Group: "b104"}, "one of them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := db.Select(tc.sel)
			got := names(hs)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := db.Select(Selection{Group: "x"}); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("no such group: %v, want ErrNoGroup", err)
	}

	// Marked with an image: the host's image column, empty for lab.conf's.
	if n, err := db.Mark([]net.HardwareAddr{mac(t, "52:54:00:00:00:01"), mac(t, "52:54:00:00:00:02")}, BootClone, "lab2"); n != 2 || err != nil {
		t.Fatalf("mark: %d, %v", n, err)
	}
	if n, err := db.Mark([]net.HardwareAddr{mac(t, "52:54:00:00:00:02")}, BootClone, "lab1"); n != 1 || err != nil {
		t.Fatalf("mark: %d, %v", n, err)
	}
	if _, err := db.Mark(nil, BootClone, "lab1"); err == nil {
		t.Fatal("Mark with no MAC marked something")
	}
	if id, _ := db.Lookup(mac(t, "52:54:00:00:00:01")); id.Image != "lab2" || id.NextBoot != BootClone || strings.Join(id.Groups, " ") != "row1 b104" {
		t.Fatalf("ws01 after the marks: %+v", id)
	}
	var buf bytes.Buffer
	db.Export(&buf)
	want := `mac,hostname,ip,next_boot,group,image
52:54:00:00:00:01,ws01,10.1.0.101,clone,row1 b104,lab2
52:54:00:00:00:02,ws02,10.1.0.102,clone,row2 b104,
52:54:00:00:00:03,ws03,10.1.0.103,local,,
`
	if buf.String() != want {
		t.Fatalf("export:\n%s\nwant:\n%s", buf.String(), want)
	}
	// A table without groups is written without the column.
	buf.Reset()
	WriteCSV(&buf, []Host{{MAC: mac(t, "52:54:00:00:00:01"), Hostname: "a", NextBoot: BootLocal}})
	if strings.Contains(buf.String(), "group") {
		t.Fatalf("a group column without groups:\n%s", buf.String())
	}
}

func TestParseCSVEveryBadLine(t *testing.T) {
	in := "mac,hostname,ip\n" +
		"52:54:00:00:00:01,a,10.0.0.1\n" +
		"zz,b,10.0.0.2\n" +
		"52:54:00:00:00:03,c,10.0.0\n" +
		"52:54:00:00:00:04,d,10.0.0.4\n" +
		"52:54:00:00:00:05,a,10.0.0.5\n"
	_, err := ParseCSV(strings.NewReader(in))
	if err == nil {
		t.Fatal("a table with three bad lines was taken")
	}
	for _, want := range []string{"line 3: \"zz\"", "line 4: ip", "line 6: host name a"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "line 5") {
		t.Errorf("error %q names the good line 5", err)
	}
	var many strings.Builder
	many.WriteString("mac,hostname,ip\n")
	for range 50 {
		many.WriteString("zz,a,10.0.0.1\n")
	}
	_, err = ParseCSV(strings.NewReader(many.String()))
	if err == nil || !strings.Contains(err.Error(), "stopped after 20 errors; line 22 and after not checked") || strings.Count(err.Error(), "\n") != 20 {
		t.Fatalf("50 bad lines: %v", err)
	}
	// Exactly 20 bad lines: every one named, none left unchecked.
	twenty := strings.Join(strings.SplitAfter(many.String(), "\n")[:21], "")
	_, err = ParseCSV(strings.NewReader(twenty))
	if err == nil || strings.Contains(err.Error(), "stopped") || strings.Count(err.Error(), "\n") != 19 || !strings.Contains(err.Error(), "line 21:") {
		t.Fatalf("20 bad lines: %v", err)
	}
}
