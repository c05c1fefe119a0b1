package pxe

import (
	"net"
	"net/http"
	"strings"
)

// HTTPHandler serves, for mounting on labseed's HTTP server at /pxe/:
//
//	GET /pxe/ipxe/bios/<mac>, /pxe/ipxe/uefi/<mac>   the host's iPXE script
//	GET /pxe/boot/<file>                            files of Config.BootDir
//
// <mac> is written with dashes or colons. BootDir is served read-only
// through os.Root: nothing outside it can be reached.
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pxe/ipxe/{fw}/{mac}", func(w http.ResponseWriter, r *http.Request) {
		fw := r.PathValue("fw")
		mac, err := net.ParseMAC(strings.ReplaceAll(r.PathValue("mac"), "-", ":"))
		if err != nil || len(mac) != 6 || (fw != "bios" && fw != "uefi") {
			http.Error(w, "want /pxe/ipxe/{bios|uefi}/<mac>", http.StatusNotFound)
			return
		}
		s.record(mac, EventScript, "iPXE script ("+fw+") to "+r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(s.IPXEScript(mac, fw == "uefi")))
	})
	if s.root != nil {
		mux.Handle("GET /pxe/boot/", http.StripPrefix("/pxe/boot/", http.FileServerFS(s.root.FS())))
	}
	return mux
}
