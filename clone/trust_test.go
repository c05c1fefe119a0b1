package clone

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/peer"
)

// mitm is a man in the middle between a clone and its print server: an
// HTTP proxy to server whose rewrite may change each answer's body (path
// is the request's). It returns the proxy's host:port.
func mitm(t *testing.T, server string, rewrite func(path string, body []byte) []byte) string {
	t.Helper()
	u, _ := url.Parse("http://" + server)
	p := httputil.NewSingleHostReverseProxy(u)
	// The answers rewrite sees are plain: without the client's
	// Accept-Encoding, the proxy's transport asks for gzip itself and
	// decompresses (the print server gzips JSON answers over 2 KiB).
	direct := p.Director
	p.Director = func(r *http.Request) {
		direct(r)
		r.Header.Del("Accept-Encoding")
	}
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode != http.StatusOK || strings.HasPrefix(resp.Request.URL.Path, api.PathDeal) {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = rewrite(resp.Request.URL.Path, b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// usedDisk is a test disk holding a machine's existing system: a
// partition table and an ext4 file system with a file. hash returns the
// SHA-256 of every byte of the disk.
func usedDisk(t *testing.T) (*testDisk, func() [32]byte) {
	t.Helper()
	d := newTestDisk(t, 256<<20)
	if out, err := exec.Command("sh", "-c", "printf 'label: dos\\n,,L\\n' | sfdisk -q "+d.dev).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	dd, err := openDisk(d.dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dd.waitPartition(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "old-system", d.part(1)).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	root := d.mountCheckNow(t, 1)
	os.WriteFile(filepath.Join(root, "precious"), []byte("the machine's old system\n"), 0o644)
	d.unmountCheck(t, root)
	hash := func() [32]byte {
		exec.Command("blockdev", "--flushbufs", d.dev).Run()
		f, err := os.Open(d.file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	return d, hash
}

// mountCheckNow mounts partition n at a temporary directory; unmountCheck
// unmounts it.
func (d *testDisk) mountCheckNow(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", d.part(n), dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", d.part(n), err, out)
	}
	return dir
}

func (d *testDisk) unmountCheck(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", dir, err, out)
	}
}

// TestCloneRefusesTamperedIdentity is finding 2 of issue 19 as an attack:
// a man in the middle rewrites the print server's "who am I" answer (the
// bootloader command, a command run as root in the new system; a hook),
// or replays an answer it recorded earlier, or the clone has another
// lab's keys. Each clone fails in the identify step, and the machine's
// disk is byte for byte what it was: nothing was partitioned, formatted
// or written before the signature check (before, with wrong keys, the
// disk was formatted first).
func TestCloneRefusesTamperedIdentity(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Extlinux: true}), labConf)
	d, hash := usedDisk(t)
	before := hash()

	var recordedMu sync.Mutex
	var recorded []byte
	tamper := mitm(t, l.server, func(path string, b []byte) []byte {
		if path != api.PathWhoAmI {
			return b
		}
		var sid api.SignedIdentity
		if err := json.Unmarshal(b, &sid); err != nil {
			t.Errorf("the who-am-I answer: %v", err)
			return b
		}
		var id map[string]any
		json.Unmarshal(sid.Identity, &id)
		id["bootloader"] = "touch /pwned; grub-install {{.Disk}}"
		id["hooks"] = []map[string]string{{"name": "00-evil", "script": "touch /pwned-too"}}
		sid.Identity, _ = json.Marshal(id)
		out, _ := json.Marshal(sid)
		return out
	})
	replay := mitm(t, l.server, func(path string, b []byte) []byte {
		if path != api.PathWhoAmI {
			return b
		}
		recordedMu.Lock()
		defer recordedMu.Unlock()
		if recorded == nil {
			recorded = b
		}
		return recorded
	})
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)

	for _, tc := range []struct {
		name   string
		server string
		pub    ed25519.PublicKey
		want   string
	}{
		{"bootloader command rewritten", tamper, nil, "not signed by this lab's print server"},
		{"another lab's image.pub", l.server, otherPub, "not signed by this lab's print server"},
		{"an answer recorded and replayed", replay, nil, "an old answer replayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "an answer recorded and replayed" {
				// The first answer the proxy sees is recorded: a clone
				// that is refused after who am I (wrong keys) makes one.
				r := l.cloneConfig(t, d)
				r.cfg.Server, r.cfg.PublicKey = replay, otherPub
				r.run(t, t.Context(), true)
			}
			r := l.cloneConfig(t, d)
			r.cfg.Server = tc.server
			if tc.pub != nil {
				r.cfg.PublicKey = tc.pub
			}
			err := r.run(t, t.Context(), true)
			var se *StepError
			if !errors.As(err, &se) || se.Step != StepIdentify || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want the identify step to fail with %q", err, tc.want)
			}
			if hash() != before {
				t.Fatal("the disk changed")
			}
			steps := l.reportSteps(t)
			if slices.Contains(steps, StepDisk+":"+hosts.StateRunning) || !slices.Contains(steps, StepIdentify+":"+hosts.StateFailed) {
				t.Errorf("reports %v: want identify failed and no disk step", steps)
			}
		})
	}
}

// TestCloneRefusesOldManifest: the print server serves v2 of the image;
// a man in the middle answers the image request with the signed manifest
// of v1 (signed by the lab's own key, as it was). The clone refuses it in
// the identify step, the disk untouched; and an agent told the version
// refuses it too.
func TestCloneRefusesOldManifest(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Extlinux: true}), labConf)
	c := api.NewClient(l.server)
	v1, err := c.Image(t.Context(), "lab1")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(v1)
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(systemImage(t, fixture.SystemTreeOptions{Extlinux: true, SSH: true})(pw))
	}()
	im, err := l.st.Publish(t.Context(), pr, chunker.Config{Name: "lab1", Level: 1})
	if err != nil || im.Manifest.Version != 2 {
		t.Fatalf("publish v2: %v", err)
	}
	waitVersion(t, c, "lab1", 2)
	proxy := mitm(t, l.server, func(path string, b []byte) []byte {
		if path == api.PathImages+"/lab1" {
			return old
		}
		return b
	})
	d, hash := usedDisk(t)
	before := hash()
	r := l.cloneConfig(t, d)
	r.cfg.Server = proxy
	err = r.run(t, t.Context(), true)
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepIdentify || !errors.Is(err, peer.ErrOldManifest) {
		t.Fatalf("error %v: want the identify step to refuse the old manifest", err)
	}
	if hash() != before {
		t.Fatal("the disk changed")
	}

	a, err := peer.New(peer.Config{Server: proxy, Target: t.TempDir(), Image: "lab1", MinVersion: 2,
		PublicKey: l.pub, LabKey: l.labKey, Local: true, Linger: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); !errors.Is(err, peer.ErrOldManifest) {
		t.Fatalf("agent given v1 for v2: %v", err)
	}
}

// waitVersion waits until the print server seeds version v of image.
func waitVersion(t *testing.T, c *api.Client, image string, v int) {
	t.Helper()
	for i := 0; i < 100; i++ {
		ls, err := c.Status(t.Context())
		if err == nil && slices.ContainsFunc(ls.Images, func(im api.ImageInfo) bool { return im.Name == image && im.Version == v }) {
			return
		}
		sleep(t.Context(), 100e6)
	}
	t.Fatalf("the print server does not serve %s v%d", image, v)
}
