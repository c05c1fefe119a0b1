package seeder

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
)

// TestImageAnswerGzipped has a real print server answer a workstation's
// request for an image (its manifest and torrent, in base64 inside JSON)
// gzipped when the request accepts it, as Go's HTTP client does by
// itself: fewer bytes on the print server's port for every workstation of
// every run, and the same image once decoded. A client that does not ask
// gets it plain, and so does a short answer.
func TestImageAnswerGzipped(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 4 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 16 << 10,
		ChunkMin: 16 << 10, ChunkAvg: 32 << 10, ChunkMax: 128 << 10})
	srv, _ := startServer(t, dir, nil)
	url := "http://" + srv.Lab().HTTPAddr + api.PathImages + "/lab1"

	get := func(accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		// A transport that leaves the encoding as it came.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
		return resp, b
	}
	_, plain := get("")
	for _, accept := range []string{"gzip", "br;q=1.0, gzip;q=0.8"} {
		resp, zipped := get(accept)
		if enc := resp.Header.Get("Content-Encoding"); enc != "gzip" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want gzip", accept, enc)
		}
		zr, err := gzip.NewReader(bytes.NewReader(zipped))
		if err != nil {
			t.Fatal(err)
		}
		unzipped, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(unzipped, plain) {
			t.Fatalf("gzipped answer decodes to %d bytes (%v), want the plain %d", len(unzipped), err, len(plain))
		}
		t.Logf("image answer: %d bytes plain, %d gzipped (%.2f)", len(plain), len(zipped), float64(len(zipped))/float64(len(plain)))
		if len(zipped) > len(plain)*4/5 {
			t.Errorf("gzipped %d bytes of %d: want at most 0.8", len(zipped), len(plain))
		}
	}
	for _, refuse := range []string{"gzip;q=0", "br, gzip; q=0.0"} {
		if resp, _ := get(refuse); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: Content-Encoding %q, want none", refuse, resp.Header.Get("Content-Encoding"))
		}
	}
	// The workstation's client: the same image, whatever came on the wire.
	im, err := api.NewClient(srv.Lab().HTTPAddr).Image(t.Context(), "lab1")
	if err != nil || len(im.Manifest) == 0 || len(im.Torrent) == 0 {
		t.Fatalf("api client: %v", err)
	}
	// A short answer (the list of one image) stays plain.
	url = "http://" + srv.Lab().HTTPAddr + api.PathImages
	if resp, _ := get("gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("the short image list came %q", resp.Header.Get("Content-Encoding"))
	}
}
