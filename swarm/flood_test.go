package swarm

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/internal/btwire"
)

// floodEnv names the torrent file the seeder process of TestRequestFlood
// seeds (TestFloodSeederProcess).
const floodEnv = "LABSEED_FLOOD_SEEDER"

// TestFloodSeederProcess is the print server of TestRequestFlood, run by it
// in a process of its own so that its memory can be measured: a client
// made by NewClient with the defaults, seeding one payload on 127.0.0.1
// until its standard input closes.
func TestFloodSeederProcess(t *testing.T) {
	tpath := os.Getenv(floodEnv)
	if tpath == "" {
		t.Skip("the seeder process of TestRequestFlood")
	}
	mi, err := metainfo.LoadFromFile(tpath)
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	st := NewStorage()
	defer st.Close()
	cl, err := NewClient(Config{ListenIP: "127.0.0.1", Port: -1, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st.Register(mi.HashInfoBytes(), Files{Path: filepath.Join(filepath.Dir(tpath), info.Name), ReadOnly: true, Completion: AllComplete()})
	if _, err := AddTorrent(cl, mi, 0); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("port %d\n", cl.LocalPort())
	bufio.NewReader(os.Stdin).ReadString('\n') // until the test closes it
}

// rss returns the resident set size of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// floodConn is one attacking connection from ip: it completes the
// handshake, says it is interested, waits to be unchoked, asks for 1024
// blocks of nearly a piece each (distinct offsets of one piece) and never
// reads again. It returns the connection, or nil if the seeder refused it.
func floodConn(t *testing.T, ip string, seeder string, ih [20]byte, piece uint32, pieceLen int) net.Conn {
	t.Helper()
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)},
		// A small receive buffer: what the kernel would buffer for us is
		// not the seeder's memory, and the seeder should see a peer that
		// does not read.
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		},
	}
	c, err := d.Dial("tcp", seeder)
	if err != nil {
		return nil // refused at once (reset)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var id [20]byte
	copy(id[:], fmt.Sprintf("-FLOOD-%s-%d", ip, piece))
	if err := btwire.Handshake(c, ih, id); err != nil {
		c.Close()
		return nil // refused
	}
	if _, err := c.Write(btwire.Message(btwire.Interested, nil)); err != nil {
		c.Close()
		return nil
	}
	for {
		id, _, err := btwire.ReadMessage(c, 1<<20)
		if err != nil {
			t.Fatalf("flood connection from %s: waiting to be unchoked: %v", ip, err)
		}
		if id == btwire.Unchoke {
			break
		}
	}
	length := pieceLen - 1024
	var reqs bytes.Buffer
	for begin := range 1024 {
		reqs.Write(btwire.RequestMessage(piece, uint32(begin), uint32(length)))
	}
	if _, err := c.Write(reqs.Bytes()); err != nil {
		t.Fatalf("flood connection from %s: %v", ip, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// TestRequestFlood is an anonymous peer's attack on the print server's
// memory: several connections from each of a few addresses ask for 1024
// blocks of nearly 256 KiB (a piece) each and never read. Before, the
// client read up to 1 GiB of piece data ahead per connection (the
// allowance) with no cap on request lengths and no limit per address: the
// seeder process grew by about 250 MiB per connection. Now at most
// DefaultMaxConnsPerIP connections per address are accepted and each holds
// at most MaxAllocPeerRequestData; an honest leecher is still served.
func TestRequestFlood(t *testing.T) {
	dir := t.TempDir()
	src := writePayload(t, dir, "image.payload", 16<<20, 7)
	mi := makeTorrent(t, src)
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	tpath := filepath.Join(dir, "image.torrent")
	b, err := bencode.Marshal(mi)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tpath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestFloodSeederProcess$")
	cmd.Env = append(os.Environ(), floodEnv+"="+tpath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("seeder process: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "port ")))
	if err != nil {
		t.Fatalf("seeder process said %q", line)
	}
	seeder := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pid := cmd.Process.Pid

	// leech starts an honest leecher of the payload from the seeder
	// process; wait waits for it to finish.
	leech := func() (wait func() error) {
		leecher := newTestClient(t, Config{}, nil)
		tor := leecher.add(t, mi, Files{Path: filepath.Join(t.TempDir(), info.Name)})
		tor.AddPeers([]torrent.PeerInfo{{Addr: tcpAddr(t, seeder), Source: torrent.PeerSourceDirect}})
		tor.DownloadAll()
		return func() error {
			defer leecher.cl.Close()
			select {
			case <-tor.Complete().On():
				return nil
			case <-time.After(30 * time.Second):
				return fmt.Errorf("the honest leecher got %d of %d bytes in 30 s", tor.BytesCompleted(), tor.Length())
			}
		}
	}

	// Baseline: the seeder after serving the whole payload once.
	if err := leech()(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	base := rss(t, pid)

	const ips, perIP = 3, 8
	// Stop as soon as the seeder is past this: the old code took
	// gigabytes.
	const giveUp = 1 << 30
	var peak int64
	watch := func() bool {
		peak = max(peak, rss(t, pid))
		if peak > giveUp {
			cmd.Process.Kill()
			return false
		}
		return true
	}
	accepted := 0
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
flood:
	for i := range ips {
		for j := range perIP {
			if c := floodConn(t, fmt.Sprintf("127.0.0.%d", 100+i), seeder, mi.HashInfoBytes(), uint32(i*perIP+j)%uint32(info.NumPieces()), int(info.PieceLength)); c != nil {
				conns = append(conns, c)
				accepted++
			}
			if !watch() {
				break flood
			}
		}
	}
	// Watch the seeder for 5 s while an honest leecher downloads.
	var leechErr error
	if peak <= giveUp {
		wait := leech()
		leeched := make(chan error, 1)
		go func() { leeched <- wait() }()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && watch(); {
			time.Sleep(50 * time.Millisecond)
		}
		if peak <= giveUp {
			leechErr = <-leeched
		}
	}
	// What the connections that may be accepted may hold by design (4 MiB,
	// MaxAllocPeerRequestData, each) twice over (the garbage collector
	// lets the heap grow to twice what is live), and 32 MiB for the rest.
	// The constants are written out: the test is the attack, whatever
	// the code under test sets.
	bound := base + 2*ips*4*(4<<20) + 32<<20
	t.Logf("seeder RSS: %.0f MiB before, peak %.0f MiB with %d of %d flood connections accepted (%.2f × before; bound %.0f MiB)",
		float64(base)/(1<<20), float64(peak)/(1<<20), accepted, ips*perIP, float64(peak)/float64(base), float64(bound)/(1<<20))
	if accepted > ips*4 {
		t.Errorf("%d connections accepted from %d addresses, want at most 4 per address", accepted, ips)
	}
	if accepted == 0 {
		t.Error("no flood connection accepted: the test proved nothing")
	}
	if leechErr != nil {
		t.Errorf("during the flood: %v", leechErr)
	}
	if peak > bound {
		t.Errorf("the seeder grew from %.0f to %.0f MiB under the flood, want at most %.0f MiB", float64(base)/(1<<20), float64(peak)/(1<<20), float64(bound)/(1<<20))
	}
}

// tcpAddr resolves host:port.
func tcpAddr(t *testing.T, hostport string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
