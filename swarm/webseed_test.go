package swarm

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWebSeedOnly downloads a payload from nothing but an HTTP web seed
// laid out as WebSeedURL documents.
func TestWebSeedOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// A name that needs escaping, and a length that leaves a short last
	// piece.
	name := "lab image+v1.payload"
	src := writePayload(t, t.TempDir(), name, 12<<20+12345, 2)
	mi := makeTorrent(t, src)
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	paths := map[string]int{}
	ranged := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+WebSeedPrefix+"{name}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.EscapedPath()]++
		if r.Header.Get("Range") != "" {
			ranged++
		}
		mu.Unlock()
		if r.PathValue("name") != info.Name {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(src)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, r, info.Name, fi.ModTime(), f)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	leecher := newTestClient(t, Config{}, nil)
	dst := filepath.Join(t.TempDir(), name)
	tor := leecher.add(t, mi, Files{Path: dst})
	tor.AddWebSeeds([]string{WebSeedURL(srv.URL)})
	tor.DownloadAll()
	waitComplete(ctx, t, tor, leecher)
	sameFile(t, src, dst)

	tr := NewMeter().Update(tor)
	if tr.FromWebSeeds != info.Length || tr.FromPeers != 0 || tr.Peers != 0 {
		t.Errorf("traffic %+v: want all %d bytes from the web seed", tr, info.Length)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("requests by path: %v, %d with Range", paths, ranged)
	if len(paths) != 1 || paths[WebSeedPath(info.Name)] == 0 {
		t.Errorf("requests went to %v, want only %s", paths, WebSeedPath(info.Name))
	}
}

func TestWebSeedURL(t *testing.T) {
	for _, tc := range []struct {
		base, want string
	}{
		{"http://10.77.0.1:8080", "http://10.77.0.1:8080/seed/"},
		{"http://10.77.0.1:8080/", "http://10.77.0.1:8080/seed/"},
		{"http://printserver/labseed", "http://printserver/labseed/seed/"},
	} {
		if got := WebSeedURL(tc.base); got != tc.want {
			t.Errorf("WebSeedURL(%q) = %q, want %q", tc.base, got, tc.want)
		}
	}
}

func TestWebSeedPath(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"lab1-v3.payload", "/seed/lab1-v3.payload"},
		{"lab image+v1.payload", "/seed/lab%20image%2Bv1.payload"},
		{"a#b?c", "/seed/a%23b%3Fc"},
	} {
		if got := WebSeedPath(tc.name); got != tc.want {
			t.Errorf("WebSeedPath(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
