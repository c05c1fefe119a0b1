package netinit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/clone"
	"github.com/labseed/labseed/internal/syncbuf"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmdline string
		want    Options
		errs    []string
	}{
		{"menu defaults", "initrd=initrd.img labseed.server=10.1.0.1:7480 BOOTIF=01-52-54-00-AB-CD-EF console=ttyS0",
			Options{Server: "10.1.0.1:7480", Disk: clone.DiskAuto, Retry: DefaultRetry, BootMAC: "52:54:00:ab:cd:ef"}, nil},
		{"everything", "labseed.server=ps labseed.image=exam labseed.disk=/dev/nvme0n1 labseed.on_failure=shell labseed.retry=5 labseed.linger=30s labseed.verbose",
			Options{Server: "ps", Image: "exam", Disk: "/dev/nvme0n1", Shell: true, Retry: 5 * time.Second, Linger: 30 * time.Second, Verbose: true}, nil},
		{"bad values", "labseed.on_failure=reboot labseed.retry=soon labseed.linger=long",
			Options{Disk: clone.DiskAuto, Retry: DefaultRetry}, []string{"retry or shell", "labseed.retry=\"soon\"", "labseed.linger", "no labseed.server="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOptions(clone.ParseCmdline(tc.cmdline))
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if (err != nil) != (tc.errs != nil) {
				t.Fatalf("err = %v", err)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// testKeys writes image.pub and lab.key as "labseed keys export" does.
func testKeys(t *testing.T) string {
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	os.WriteFile(filepath.Join(dir, "image.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "lab.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	return dir
}

// TestRunRetries: a clone that fails is said on the console with what to
// do, then tried again after the pause; the shell is opened when the lab
// asks for it.
func TestRunRetries(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		shells, waits int
	}{
		{"retry", "labseed.server=10.1.0.1 labseed.retry=7", 0, 2},
		{"shell", "labseed.server=10.1.0.1 labseed.on_failure=shell", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmdline := filepath.Join(t.TempDir(), "cmdline")
			os.WriteFile(cmdline, []byte(tc.cmdline+"\n"), 0o644)
			var console syncbuf.Buffer
			var runs, shells, waits int
			var got clone.Config
			err := Run(t.Context(), Config{
				Console: &console, KeysDir: testKeys(t), CmdlinePath: cmdline, LogFile: filepath.Join(t.TempDir(), "log"),
				Setup: func(context.Context, Options, func(string, ...any)) error { return nil },
				Clone: func(_ context.Context, c clone.Config) error {
					runs++
					got = c
					if runs < 3 {
						return &clone.StepError{Step: clone.StepDisk, Err: errors.New("2 disks: /dev/sda, /dev/sdb")}
					}
					return nil
				},
				Shell: func(context.Context) error { shells++; return nil },
				Wait: func(_ context.Context, d time.Duration) bool {
					waits++
					if d != 7*time.Second {
						t.Errorf("waited %v", d)
					}
					return false
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if runs != 3 || shells != tc.shells || waits != tc.waits {
				t.Errorf("%d runs, %d shells, %d waits", runs, shells, waits)
			}
			if got.Disk != clone.DiskAuto || got.Server != "10.1.0.1" || len(got.LabKey) != 32 || len(got.PublicKey) != ed25519.PublicKeySize {
				t.Errorf("clone config %+v", got)
			}
			out := console.String()
			for _, s := range []string{"FAILED: clone: disk: 2 disks", "what to do:"} {
				if !strings.Contains(out, s) {
					t.Errorf("console lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

// TestRunNoServer: a command line without the print server is said, and
// a panic in the attempt is one more failure, not the end of PID 1.
func TestRunNoServer(t *testing.T) {
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte("quiet\n"), 0o644)
	var console syncbuf.Buffer
	err := Run(t.Context(), Config{
		Console: &console, KeysDir: testKeys(t), CmdlinePath: cmdline, Attempts: 2,
		Setup: func(context.Context, Options, func(string, ...any)) error { panic("boom") },
		Wait:  func(context.Context, time.Duration) bool { return false },
	})
	if err == nil || !strings.Contains(console.String(), "no labseed.server=") {
		t.Errorf("err %v, console:\n%s", err, console.String())
	}
	os.WriteFile(cmdline, []byte("labseed.server=x\n"), 0o644)
	console = syncbuf.Buffer{}
	err = Run(t.Context(), Config{
		Console: &console, KeysDir: testKeys(t), CmdlinePath: cmdline, Attempts: 2,
		Setup: func(context.Context, Options, func(string, ...any)) error { panic("boom") },
		Wait:  func(context.Context, time.Duration) bool { return false },
	})
	if err == nil || strings.Count(console.String(), "internal error: boom") != 2 {
		t.Errorf("err %v, console:\n%s", err, console.String())
	}
}
