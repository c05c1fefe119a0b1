package pxe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"

	"github.com/pin/tftp/v3"
)

// ErrBadPath is returned (wrapped) for a requested file name that is not a
// plain relative path inside the boot directory.
var ErrBadPath = errors.New("pxe: file name escapes the boot directory")

// CleanBootPath turns a file name from a TFTP or HTTP request into a path
// relative to the boot directory. Leading slashes are dropped and
// backslashes (Windows clients) read as slashes; empty names, NUL bytes
// and any ".." element are refused with ErrBadPath.
func CleanBootPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains NUL", ErrBadPath, name)
	}
	n := strings.ReplaceAll(name, "\\", "/")
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q", ErrBadPath, name)
		}
	}
	n = strings.TrimLeft(path.Clean("/"+n), "/")
	if n == "" || n == "." {
		return "", fmt.Errorf("%w: %q names no file", ErrBadPath, name)
	}
	return n, nil
}

// pxelinuxMAC parses "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff" (ARP type 1).
func pxelinuxMAC(p string) (net.HardwareAddr, bool) {
	rest, ok := strings.CutPrefix(p, "pxelinux.cfg/01-")
	if !ok || len(rest) != 17 {
		return nil, false
	}
	return parseMACParam(rest)
}

// rootDir is the boot directory opened with os.Root, so symlinks cannot
// lead out of it either.
type rootDir struct{ *os.Root }

func openRootDir(dir string) (*rootDir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("pxe: open boot directory: %w", err)
	}
	return &rootDir{r}, nil
}

// bootFile is a file to send: content from disk or generated.
type bootFile struct {
	r    io.Reader
	size int64
	mac  net.HardwareAddr // set for per-MAC files
	c    io.Closer
}

// openBoot opens name for reading: a regular file of the boot directory,
// or the generated pxelinux.cfg/01-<mac>.
func (s *Server) openBoot(name string) (*bootFile, error) {
	p, err := CleanBootPath(name)
	if err != nil {
		return nil, err
	}
	f, err := s.root.Open(p)
	if err == nil {
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("pxe: %s is not a regular file: %w", p, fs.ErrNotExist)
		}
		b := &bootFile{r: f, size: st.Size(), c: f}
		b.mac, _ = pxelinuxMAC(p)
		return b, nil
	}
	if mac, ok := pxelinuxMAC(p); ok && errors.Is(err, fs.ErrNotExist) {
		cfg := s.PXELinuxConfig(mac)
		return &bootFile{r: strings.NewReader(cfg), size: int64(len(cfg)), mac: mac}, nil
	}
	return nil, fmt.Errorf("pxe: %s: %w", p, err)
}

// tftpRead is the pin/tftp read handler.
func (s *Server) tftpRead(name string, rf io.ReaderFrom) error {
	var peer net.IP
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		a := ot.RemoteAddr()
		peer = a.IP
	}
	bf, err := s.openBoot(name)
	mac := s.macForIP(peer)
	if err != nil {
		s.stats.tftpRefused.Add(1)
		if hw, ok := pxelinuxMAC(strings.TrimLeft(name, "/")); ok && mac == nil {
			mac = hw
		}
		s.record(mac, EventTFTPFailed, fmt.Sprintf("refused %q: %v", name, err))
		s.log.Info("TFTP request refused", "file", name, "peer", peer, "mac", mac.String(), "err", err)
		return err
	}
	if bf.c != nil {
		defer bf.c.Close()
	}
	if mac == nil {
		mac = bf.mac
	}
	if bf.mac != nil {
		// pxelinux asks for its own config: remember its address, for
		// the kernel and initrd it then fetches over HTTP.
		s.learnIP(peer, bf.mac)
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(bf.size)
	}
	n, err := rf.ReadFrom(bf.r)
	if err != nil && sizeProbe(err) {
		s.log.Debug("TFTP size probe", "file", name, "peer", peer, "mac", mac.String(), "size", bf.size)
		return err
	}
	if err != nil {
		s.stats.tftpFailed.Add(1)
		s.record(mac, EventTFTPFailed, fmt.Sprintf("%s after %d bytes: %v", name, n, err))
		s.log.Info("TFTP transfer failed", "file", name, "peer", peer, "mac", mac.String(), "bytes", n, "err", err)
		return err
	}
	// Success is counted and recorded by tftpHook, which sees the
	// negotiated options; it runs inside ReadFrom.
	return nil
}

// sizeProbe reports whether a transfer ended because the client only
// wanted the size: it asks with tsize, reads it from the OACK and stops
// with error code 8 (RFC 2347), then asks again for the file. UEFI PXE
// (EDK2) does this for every boot file; it is no failure. pin/tftp puts
// the client's error code into the message only.
func sizeProbe(err error) bool {
	return strings.Contains(err.Error(), "sending block 0: code=8,")
}

// tftpHook records completed transfers with their negotiated options.
type tftpHook struct{ s *Server }

// OnSuccess is called by pin/tftp when the last block is acknowledged.
func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	s := h.s
	mac := s.macForIP(st.RemoteAddr)
	if mac == nil {
		mac, _ = pxelinuxMAC(strings.TrimLeft(st.Filename, "/"))
	}
	opts := make([]string, 0, len(st.Opts))
	for _, k := range []string{"blksize", "tsize"} {
		if v, ok := st.Opts[k]; ok {
			opts = append(opts, k+"="+v)
		}
	}
	s.stats.tftpSent.Add(1)
	s.record(mac, EventTFTPSent, fmt.Sprintf("%s to %s, %d blocks, %s", st.Filename, st.RemoteAddr, st.DatagramsSent, strings.Join(opts, " ")))
	s.log.Debug("TFTP file sent", "file", st.Filename, "peer", st.RemoteAddr, "mac", mac.String(), "blocks", st.DatagramsSent, "opts", opts, "duration", st.Duration)
}

// OnFailure is called by pin/tftp when a transfer aborts; tftpRead has
// already counted and recorded it.
func (h tftpHook) OnFailure(tftp.TransferStats, error) {}
