//go:build linux

package pxe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/netlab"
	"github.com/labseed/labseed/internal/syncbuf"
)

// The lab built by TestNetnsLab: a bridge namespace as the switch and one
// namespace per host, all on 10.78.0.0/24. Everything is removed by exact
// name. The qemu tests (qemu_linux_test.go) use the same names, one test
// at a time. The names end in this process's ID, so that two runs of the
// package at once (go test ./... next to go test ./pxe) do not tear down
// each other's labs.
var (
	labID    = strconv.Itoa(os.Getpid())
	nsSwitch = "lspxe-sw-" + labID
	nsServer = "lspxe-srv-" + labID // labseed pxe, 10.78.0.1
	nsDHCP   = "lspxe-dh-" + labID  // dnsmasq, plain DHCP, 10.78.0.2
	nsWS     = "lspxe-ws-" + labID  // TFTP clients, 10.78.0.10
	nsPC     = "lspxe-pc-" + labID  // udhcpc, no address
	nsVM     = "lspxe-vm-" + labID  // qemu: tap0 and eth0 on a bridge, no address
)

const (
	macWS = "52:54:00:78:00:10"
	macPC = "52:54:00:78:00:20"
)

var (
	hostServer = netlab.Host{NS: nsServer, Addr: "10.78.0.1/24", MAC: "52:54:00:78:00:01"}
	hostDHCP   = netlab.Host{NS: nsDHCP, Addr: "10.78.0.2/24", MAC: "52:54:00:78:00:02"}
	hostWS     = netlab.Host{NS: nsWS, Addr: "10.78.0.10/24", MAC: macWS}
	hostPC     = netlab.Host{NS: nsPC, MAC: macPC}
	hostVM     = netlab.Host{NS: nsVM, MAC: "52:54:00:78:00:03", Tap: true}
)

// helperConfig is how a test configures TestHelperServer (as JSON in
// LABSEED_PXE_HELPER).
type helperConfig struct {
	BootDir     string        `json:"boot_dir"`
	NoBind      bool          `json:"no_bind"`
	HTTP        bool          `json:"http"`  // serve HTTPHandler on 10.78.0.1:api.DefaultPort
	Clone       []string      `json:"clone"` // MACs whose next boot is the clone entry
	MenuTimeout time.Duration `json:"menu_timeout"`
	Report      []string      `json:"report"` // MACs whose events the report carries
}

// helperReport is what the server helper prints when it stops.
type helperReport struct {
	Stats  Stats              `json:"stats"`
	Events map[string][]Event `json:"events"`
}

// TestHelperServer is not a test: the netns tests run the test binary
// with this test selected inside the server namespace, where it serves
// until SIGTERM and then prints a helperReport. Its log (JSON, debug
// level, so with every boot event) goes to stdout as it happens.
func TestHelperServer(t *testing.T) {
	env := os.Getenv("LABSEED_PXE_HELPER")
	if env == "" {
		t.Skip("helper process for the netns tests")
	}
	var hc helperConfig
	if err := json.Unmarshal([]byte(env), &hc); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	cfg := DefaultConfig()
	cfg.ServerIP = net.IPv4(10, 78, 0, 1)
	cfg.Interface = "eth0"
	cfg.BootDir = hc.BootDir
	cfg.NoBind = hc.NoBind
	cfg.MenuTimeout = hc.MenuTimeout
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var hosts []Host
	for _, m := range hc.Clone {
		hw, _ := net.ParseMAC(m)
		hosts = append(hosts, Host{MAC: hw, Clone: true})
	}
	var err error
	if cfg.Hosts, err = NewHostTable(hosts...); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	s, err := New(cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if hc.HTTP {
		hs := &http.Server{Addr: net.JoinHostPort("10.78.0.1", strconv.Itoa(api.DefaultPort)), Handler: s.HTTPHandler()}
		ln, err := net.Listen("tcp4", hs.Addr)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		go hs.Serve(ln)
		defer hs.Close()
	}
	fmt.Println("READY")
	if err := s.Run(ctx); err != nil {
		fmt.Println("ERROR", err)
	}
	rep := helperReport{Stats: s.Stats(), Events: map[string][]Event{}}
	for _, m := range hc.Report {
		hw, _ := net.ParseMAC(m)
		rep.Events[m] = s.Events(hw)
	}
	b, _ := json.Marshal(rep)
	fmt.Println("REPORT " + string(b))
	os.Exit(0)
}

// helperServer is the running server helper.
type helperServer struct {
	stop func() helperReport // SIGTERM, wait, report; idempotent

	mu     sync.Mutex
	events map[string][]Event // boot events by MAC, from the helper's log
	log    []string           // the helper's output, for failure messages
}

// startServer runs the helper in the server namespace.
func startServer(t *testing.T, hc helperConfig) *helperServer {
	t.Helper()
	h, err := tryStartServer(hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.stop() })
	return h
}

// tryStartServer starts the helper and waits until it serves; the error
// carries the helper's own ERROR line.
func tryStartServer(hc helperConfig) (*helperServer, error) {
	b, _ := json.Marshal(hc)
	cmd := exec.Command("ip", "netns", "exec", nsServer, os.Args[0], "-test.run=^TestHelperServer$", "-test.v")
	cmd.Env = append(os.Environ(), "LABSEED_PXE_HELPER="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &helperServer{events: map[string][]Event{}}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			var rec struct {
				Msg    string    `json:"msg"`
				Time   time.Time `json:"time"`
				MAC    string    `json:"mac"`
				Kind   EventKind `json:"kind"`
				Detail string    `json:"detail"`
			}
			h.mu.Lock()
			h.log = append(h.log, l)
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "boot event" {
				h.events[rec.MAC] = append(h.events[rec.MAC], Event{Time: rec.Time, Kind: rec.Kind, Detail: rec.Detail})
			}
			h.mu.Unlock()
			if !strings.HasPrefix(l, "{") {
				lines <- l
			}
		}
		close(lines)
	}()
	timeout := time.After(20 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok || strings.HasPrefix(l, "ERROR") {
				cmd.Wait()
				return nil, fmt.Errorf("server helper failed: %s", l)
			}
			ready = l == "READY"
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			return nil, errors.New("server helper not ready after 20 s")
		}
	}
	var rep helperReport
	var stopped bool
	h.stop = func() helperReport {
		if stopped {
			return rep
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		for l := range lines {
			if r, ok := strings.CutPrefix(l, "REPORT "); ok {
				json.Unmarshal([]byte(r), &rep)
			}
		}
		cmd.Wait()
		return rep
	}
	return h, nil
}

// Events returns the boot events of mac seen so far in the helper's log.
func (h *helperServer) Events(mac string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events[mac]...)
}

// waitEvents waits until mac has, in this order (other events may come
// in between), an event of each kind whose detail contains the paired
// string; it returns false on timeout.
func (h *helperServer) waitEvents(mac string, d time.Duration, want ...[2]string) bool {
	deadline := time.Now().Add(d)
	for {
		i := 0
		for _, e := range h.Events(mac) {
			if i < len(want) && string(e.Kind) == want[i][0] && strings.Contains(e.Detail, want[i][1]) {
				i++
			}
		}
		if i == len(want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logEvents shows mac's events in the test log.
func (h *helperServer) logEvents(t *testing.T, mac string) {
	t.Helper()
	for _, e := range h.Events(mac) {
		t.Logf("event %s %s: %s", mac, e.Kind, e.Detail)
	}
}

// startBG starts a background command we own, stopped at cleanup.
func startBG(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// capture runs tcpdump on eth0 of ns while f runs, and returns the DHCP
// packets seen with their source IP.
func capture(t *testing.T, ns string, f func()) []capturedDHCP {
	pcap := filepath.Join(t.TempDir(), "c.pcap")
	cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-Z", "root", "-i", "eth0", "-n", "-U", "-w", pcap, "udp", "port", "68")
	var errb syncbuf.Buffer // written by exec's copier while poll reads it
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "tcpdump listening", func() bool { return strings.Contains(errb.String(), "listening on") })
	f()
	time.Sleep(300 * time.Millisecond) // let the last packets reach the file (-U flushes per packet)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	pk := parsePcap(t, b)
	if len(pk) == 0 {
		t.Logf("tcpdump: %s (pcap %d bytes)", errb.String(), len(b))
	}
	return pk
}

type capturedDHCP struct {
	src   net.IP
	sport int
	csum  bool // the UDP checksum verifies (a sender's offload can leave it partial)
	m     *dhcpv4.DHCPv4
}

// parsePcap reads a little-endian Ethernet pcap of IPv4/UDP DHCP packets.
func parsePcap(t *testing.T, b []byte) []capturedDHCP {
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("not a little-endian pcap (%d bytes)", len(b))
	}
	var out []capturedDHCP
	for p := b[24:]; len(p) >= 16; {
		n := int(binary.LittleEndian.Uint32(p[8:]))
		if len(p) < 16+n {
			break
		}
		frame := p[16 : 16+n]
		p = p[16+n:]
		if len(frame) < 14+20 || frame[12] != 0x08 || frame[13] != 0 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0xf) * 4
		if len(ip) < ihl+8 || ip[9] != 17 {
			continue
		}
		m, err := dhcpv4.FromBytes(ip[ihl+8:])
		if err != nil {
			continue
		}
		_, _, cerr := parseUDP4(ip, int(binary.BigEndian.Uint16(ip[ihl+2:])))
		out = append(out, capturedDHCP{src: net.IP(append([]byte(nil), ip[12:16]...)),
			sport: int(binary.BigEndian.Uint16(ip[ihl:])), csum: cerr == nil, m: m})
	}
	return out
}

func TestNetnsLab(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("network-namespace lab test; set LABSEED_LONG=1 (needs root, iproute2, busybox, tftp-hpa, atftp, dnsmasq, tcpdump)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "busybox", "tftp", "atftp", "dnsmasq", "tcpdump"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 busybox tftp-hpa atftp dnsmasq tcpdump)", bin)
		}
	}
	netlab.Build(t, nsSwitch, hostServer, hostDHCP, hostWS, hostPC)
	dir, data := bootDir(t, 100_000)
	stop := startServer(t, helperConfig{BootDir: dir, Report: []string{macWS, macPC}}).stop
	tmp := t.TempDir()

	t.Run("tftp-hpa", func(t *testing.T) {
		out := filepath.Join(tmp, "hpa.kpxe")
		netlab.Run(t, "ip", "netns", "exec", nsWS, "tftp", "-m", "binary", "10.78.0.1", "-c", "get", "undionly.kpxe", out)
		if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
			t.Errorf("tftp-hpa got %d bytes, want the %d of undionly.kpxe", len(got), len(data))
		}
		bad := filepath.Join(tmp, "hpa.passwd")
		o, _ := exec.Command("ip", "netns", "exec", nsWS, "tftp", "-m", "binary", "10.78.0.1", "-c", "get", "../../etc/passwd", bad).CombinedOutput()
		if got, _ := os.ReadFile(bad); bytes.Contains(got, []byte("root:")) || !strings.Contains(string(o), "Error") {
			t.Errorf("../../etc/passwd not refused: %q, file %q", o, got)
		}
	})
	t.Run("atftp blksize 1468 tsize", func(t *testing.T) {
		out := filepath.Join(tmp, "atftp.kpxe")
		netlab.Run(t, "ip", "netns", "exec", nsWS, "atftp", "--option", "blksize 1468", "--option", "tsize 0", "-g", "-r", "undionly.kpxe", "-l", out, "10.78.0.1")
		if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
			t.Errorf("atftp got %d bytes", len(got))
		}
		bad := filepath.Join(tmp, "atftp.passwd")
		if o, err := exec.Command("ip", "netns", "exec", nsWS, "atftp", "-g", "-r", "../../etc/passwd", "-l", bad, "10.78.0.1").CombinedOutput(); err == nil {
			t.Errorf("atftp fetched ../../etc/passwd: %s", o)
		}
	})
	t.Run("busybox tftp blksize 1468", func(t *testing.T) {
		out := filepath.Join(tmp, "bb.kpxe")
		netlab.Run(t, "ip", "netns", "exec", nsWS, "busybox", "tftp", "-g", "-b", "1468", "-r", "undionly.kpxe", "-l", out, "10.78.0.1")
		if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
			t.Errorf("busybox tftp got %d bytes", len(got))
		}
	})

	// A plain DHCP server (no PXE options) on the same bridge.
	startBG(t, "ip", "netns", "exec", nsDHCP, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
		"--interface=eth0", "--bind-interfaces", "--user=root", "--dhcp-range=10.78.0.100,10.78.0.150,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(tmp, "dnsmasq.leases"), "--pid-file="+filepath.Join(tmp, "dnsmasq.pid"))

	udhcpc := func(args ...string) func() {
		return func() {
			a := append([]string{"netns", "exec", nsPC, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", "/bin/true"}, args...)
			o, err := exec.Command("ip", a...).CombinedOutput()
			t.Logf("udhcpc %v: err %v\n%s", args, err, o)
		}
	}
	for _, tc := range []struct {
		name, arch, file string
	}{
		{"arch 0 BIOS", "0000", "undionly.kpxe"},
		{"arch 7 UEFI", "0007", "ipxe.efi"},
	} {
		t.Run("udhcpc proxy "+tc.name, func(t *testing.T) {
			// dnsmasq's offer can come after udhcpc has settled on the
			// proxy's or after the capture ended: try a few times before
			// saying the two DHCP servers do not coexist.
			var proxy, plain int
			var pkts []capturedDHCP
			for attempt := 0; attempt < 3 && plain == 0; attempt++ {
				pkts = capture(t, nsPC, udhcpc("-V", "PXEClient", "-x", "0x5d:"+tc.arch))
				for _, p := range pkts {
					if p.m.OpCode != dhcpv4.OpcodeBootReply {
						continue
					}
					switch {
					case p.src.Equal(net.IPv4(10, 78, 0, 1)):
						proxy++
						if p.m.BootFileName != tc.file || !p.m.ServerIPAddr.Equal(net.IPv4(10, 78, 0, 1)) ||
							string(p.m.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" || !p.m.YourIPAddr.IsUnspecified() {
							t.Errorf("proxy reply: %s", p.m.Summary())
						}
						if p.m.ClientHWAddr.String() != macPC {
							t.Errorf("proxy reply for %s", p.m.ClientHWAddr)
						}
					case p.src.Equal(net.IPv4(10, 78, 0, 2)):
						plain++
					}
				}
			}
			if proxy == 0 {
				t.Errorf("no proxyDHCP offer reached the workstation (%d DHCP packets seen)", len(pkts))
			}
			if plain == 0 {
				t.Errorf("dnsmasq did not answer: the lab DHCP server should coexist")
			}
		})
	}
	t.Run("udhcpc non-PXE ignored", func(t *testing.T) {
		pkts := capture(t, nsPC, udhcpc())
		var plain int
		for _, p := range pkts {
			if p.src.Equal(net.IPv4(10, 78, 0, 1)) {
				t.Errorf("proxy answered a non-PXE client: %s", p.m.Summary())
			}
			if p.src.Equal(net.IPv4(10, 78, 0, 2)) {
				plain++
			}
		}
		if plain == 0 {
			t.Error("dnsmasq did not answer the non-PXE client")
		}
	})

	rep := stop()
	t.Logf("server stats %+v", rep.Stats)
	if rep.Stats.DHCPIgnored == 0 || rep.Stats.DHCPReplied == 0 || rep.Stats.TFTPRefused < 2 || rep.Stats.TFTPSent < 3 {
		t.Errorf("server stats %+v", rep.Stats)
	}
	var blk1468, offer bool
	for _, e := range rep.Events[macWS] {
		t.Logf("event %s: %s %s", macWS, e.Kind, e.Detail)
		blk1468 = blk1468 || (e.Kind == EventTFTPSent && strings.Contains(e.Detail, "blksize=1468") && strings.Contains(e.Detail, "tsize=100000"))
	}
	for _, e := range rep.Events[macPC] {
		t.Logf("event %s: %s %s", macPC, e.Kind, e.Detail)
		offer = offer || e.Kind == EventProxyOffer
	}
	if !blk1468 {
		t.Error("no TFTP transfer with blksize=1468 tsize=100000 recorded for the workstation")
	}
	if !offer {
		t.Error("no proxy offer recorded for the PXE client")
	}
}
