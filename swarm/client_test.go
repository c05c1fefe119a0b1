package swarm

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// TestSeederServesWholePayload is the regression test for the anacrolix
// v1.59.1 pitfall (see MaxAllocPeerRequestData): one seeder, one leecher,
// 50 MiB of random data, once with a labseed leecher (at most MaxRequests
// blocks requested), once with one in a crowded lab (CrowdMaxRequests
// blocks of CrowdBlockSize) and once with a leecher that keeps as much
// requested as the allowance holds (16 blocks of 256 KiB).
//
// With MaxAllocPeerRequestDataPerConn left at anacrolix's 1 MiB the second
// stalled for good after 1835008 bytes here (and with 2 MiB after 4456448
// bytes); with 4 MiB both complete in about 0.2 s. A leecher asking for
// 16 KiB blocks with anacrolix's full pipeline (1024) stalls with 4 MiB
// after 8470528 bytes: such a leecher is not a labseed peer.
func TestSeederServesWholePayload(t *testing.T) {
	src := writePayload(t, t.TempDir(), "image.payload", 50<<20, 1)
	mi := makeTorrent(t, src)
	for _, tc := range []struct {
		name  string
		reqq  int // blocks the leecher keeps requested; 0: labseed's (Files.MaxRequests)
		files Files
	}{
		{"labseed leecher", 0, Files{}},
		{"labseed leecher in a crowded lab", 0, Files{BlockSize: CrowdBlockSize, MaxRequests: CrowdMaxRequests}},
		{"leecher filling the allowance", MaxAllocPeerRequestData / BlockSize, Files{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			seeder := newTestClient(t, Config{}, nil)
			seeder.add(t, mi, Files{Path: src, ReadOnly: true, Completion: AllComplete()})

			leecher := newTestClient(t, Config{}, func(c *torrent.ClientConfig) {
				if tc.reqq > 0 {
					c.Callbacks.ReadExtendedHandshake = func(_ *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) { d.Reqq = tc.reqq }
				}
			})
			dst := filepath.Join(t.TempDir(), "image.payload")
			f := tc.files
			f.Path = dst
			tor := leecher.add(t, mi, f)
			tor.AddPeers([]torrent.PeerInfo{seeder.peerInfo()})
			tor.DownloadAll()
			start := time.Now()
			waitComplete(ctx, t, tor, leecher, seeder)
			tr := NewMeter(seeder.addr().String()).Update(tor)
			t.Logf("50 MiB in %v: %+v", time.Since(start), tr)
			sameFile(t, src, dst)
			if tr.FromServer != 50<<20 || tr.FromPeers != 0 {
				t.Errorf("traffic %+v: want all 50 MiB from the server", tr)
			}
			if tc.reqq == 0 {
				// The leecher asked for at most its torrent's MaxRequests
				// blocks at once, whatever the seeder advertised.
				want := cmp.Or(f.MaxRequests, MaxRequests)
				for _, pc := range tor.PeerConns() {
					if got := int(pc.PeerMaxRequests); got != want {
						t.Errorf("the leecher keeps up to %d blocks requested from the seeder, want %d", got, want)
					}
				}
			}
		})
	}
}

func TestNewClientValidates(t *testing.T) {
	st := NewStorage()
	defer st.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no storage", Config{}, "Storage is required"},
		{"negative port", Config{Storage: st, Port: -2}, "out of range"},
		{"port too large", Config{Storage: st, Port: 70000}, "out of range"},
		{"negative upload", Config{Storage: st, UploadRate: -1}, "negative rate"},
		{"negative download", Config{Storage: st, DownloadRate: -5}, "negative rate"},
		{"bad listen IP", Config{Storage: st, ListenIP: "lab-server"}, "listen address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := NewClient(tc.cfg)
			if err == nil {
				cl.Close()
				t.Fatal("NewClient succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestNewClientListens(t *testing.T) {
	st := NewStorage()
	defer st.Close()
	cl, err := NewClient(Config{ListenIP: "127.0.0.1", Port: -1, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.LocalPort() == 0 {
		t.Error("no port picked")
	}
	for _, a := range cl.ListenAddrs() {
		if a.Network() != "tcp" || !strings.HasPrefix(a.String(), "127.0.0.1:") {
			t.Errorf("listening on %s %s, want TCP on 127.0.0.1 only", a.Network(), a)
		}
	}
}

func TestDebugHandler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level // of the underlying handler
		want  string
	}{
		{"debug handler sees everything at debug", slog.LevelDebug, "level=DEBUG msg=\"piece failed hash\""},
		{"info handler sees nothing", slog.LevelInfo, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level:       tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
			})
			slog.New(debugHandler{h}).With("component", "anacrolix").Warn("piece failed hash")
			if got := strings.TrimSpace(buf.String()); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
				t.Errorf("logged %q, want prefix %q", got, tc.want)
			}
		})
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
