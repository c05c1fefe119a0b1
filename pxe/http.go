package pxe

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"

	"github.com/labseed/labseed/hosts"
)

// HTTPHandler serves, for mounting on labseed's HTTP server at /pxe/:
//
//	GET /pxe/ipxe/bios/<mac>, /pxe/ipxe/uefi/<mac>   the host's iPXE script
//	GET /pxe/boot/<file>[?mac=<mac>]                files of Config.BootDir
//
// <mac> is written with dashes or colons. BootDir is served read-only
// through os.Root: nothing outside it can be reached. Every script and
// boot file served is recorded as an event of the host: boot files under
// the MAC of their "mac" parameter (the iPXE script puts it on the kernel
// and initrd URLs), else under the MAC last seen at the client's address
// (script fetch, DHCP, TFTP, ARP table).
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pxe/ipxe/{fw}/{mac}", func(w http.ResponseWriter, r *http.Request) {
		fw := r.PathValue("fw")
		mac, ok := parseMACParam(r.PathValue("mac"))
		if !ok || (fw != "bios" && fw != "uefi") {
			http.Error(w, "want /pxe/ipxe/{bios|uefi}/<mac>", http.StatusNotFound)
			return
		}
		s.learnIP(remoteIP(r), mac)
		s.record(mac, EventScript, "iPXE script ("+fw+") to "+r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(s.IPXEScript(mac, fw == "uefi")))
	})
	if s.root != nil {
		files := http.StripPrefix("/pxe/boot/", http.FileServerFS(s.root.FS()))
		mux.HandleFunc("GET /pxe/boot/", func(w http.ResponseWriter, r *http.Request) {
			cw := &countingWriter{ResponseWriter: w}
			files.ServeHTTP(cw, r)
			if r.Method == http.MethodGet { // the pattern also matches HEAD
				s.recordHTTP(r, cw)
			}
		})
	}
	return mux
}

// recordHTTP records a boot file response as an event of its host.
func (s *Server) recordHTTP(r *http.Request, cw *countingWriter) {
	mac, ok := parseMACParam(r.URL.Query().Get("mac"))
	if !ok {
		mac = s.macForIP(remoteIP(r))
	}
	name := path.Base(r.URL.Path)
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	want, _ := strconv.ParseInt(cw.Header().Get("Content-Length"), 10, 64)
	switch {
	case status >= 400:
		s.record(mac, EventHTTPFailed, fmt.Sprintf("%s to %s: HTTP %d", name, r.RemoteAddr, status))
	case status/100 == 2 && want > 0 && cw.n != want:
		s.record(mac, EventHTTPFailed, fmt.Sprintf("%s to %s broke off after %d of %d bytes", name, r.RemoteAddr, cw.n, want))
	case status/100 == 2:
		s.record(mac, EventHTTPFile, fmt.Sprintf("%s to %s, %d bytes", name, r.RemoteAddr, cw.n))
	}
	if mac == nil {
		s.log.Debug("HTTP boot file for an unknown host", "file", name, "peer", r.RemoteAddr, "status", status, "bytes", cw.n)
	}
}

// parseMACParam parses a 6-byte MAC written with dashes or colons.
func parseMACParam(v string) (net.HardwareAddr, bool) {
	mac, err := hosts.ParseMAC(v)
	return mac, err == nil
}

// remoteIP is the client address of r, nil if unparsable.
func remoteIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

// countingWriter counts the status and body bytes of a response. It keeps
// the underlying writer's ReadFrom, so files still go out with sendfile.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

// WriteHeader records the status.
func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts the body bytes.
func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom counts the body bytes copied from r.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
