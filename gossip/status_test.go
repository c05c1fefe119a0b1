package gossip

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// maxStatus returns a status with every field at its largest and every string
// far too long, with multi-byte runes where strings get cut.
func maxStatus() Status {
	return Status{
		Role:         255,
		Phase:        255,
		Image:        strings.Repeat("é", 100),
		TorrentAddr:  "[fe80::aaaa:bbbb:cccc:dddd%enp0s31f6]:65535",
		HTTPAddr:     strings.Repeat("h", maxAddrLen-6) + ":65535",
		Percent:      100,
		Chunks:       math.MaxUint32,
		ChunksTotal:  math.MaxUint32,
		DownRate:     math.MaxUint64,
		UpRate:       math.MaxUint64,
		FromServer:   math.MaxUint64,
		FromPeers:    math.MaxUint64,
		Uploaded:     math.MaxUint64,
		Peers:        math.MaxUint16,
		ETA:          math.MaxUint32,
		HashFailures: math.MaxUint32,
		StartedUnix:  math.MinInt64,
		UpdatedUnix:  math.MaxInt64,
		Err:          strings.Repeat("write /mnt/target/usr/lib: no space left on device — ", 40),
	}
}

func TestStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Status
		want *Status // nil: same as in
	}{
		{name: "zero", in: Status{}},
		{name: "server", in: Status{
			Role: RoleServer, Phase: PhaseSeeding, Image: "lab1-v3",
			TorrentAddr: "10.77.0.1:42069", HTTPAddr: "10.77.0.1:8080", Percent: 100,
			Chunks: 812, ChunksTotal: 812, UpRate: 11_800_000, Uploaded: 98_000_000_000,
			Peers: 89, StartedUnix: 1_790_000_000, UpdatedUnix: 1_790_000_600,
		}},
		{name: "peer downloading", in: Status{
			Role: RolePeer, Phase: PhaseDownloading, Image: "lab1-v3", TorrentAddr: "10.77.0.23:42069",
			Percent: 42.37, Chunks: 344, ChunksTotal: 812, DownRate: 11_500_000, UpRate: 9_900_000,
			FromServer: 1 << 30, FromPeers: 3 << 30, Uploaded: 2 << 30, Peers: 12, ETA: 95,
			HashFailures: 1, StartedUnix: 1_790_000_000, UpdatedUnix: 1_790_000_300,
		}},
		{name: "failed", in: Status{Phase: PhaseFailed, Err: "apply chunk 17: no space left on device"}},
		{name: "negative times", in: Status{StartedUnix: -1, UpdatedUnix: -62135596800}},
		{name: "percent rounded", in: Status{Percent: 33.333333}, want: &Status{Percent: 33.33}},
		{name: "percent clamped high", in: Status{Percent: 250}, want: &Status{Percent: 100}},
		{name: "percent clamped low", in: Status{Percent: -3}, want: &Status{}},
		{name: "percent NaN", in: Status{Percent: math.NaN()}, want: &Status{}},
		{name: "image truncated at rune", in: Status{Image: strings.Repeat("a", 63) + "é"}, want: &Status{Image: strings.Repeat("a", 63)}},
		{name: "invalid UTF-8 replaced", in: Status{Image: "lab\xff1"}, want: &Status{Image: "lab?1"}},
		{name: "clone's agent", in: Status{Phase: PhaseDownloading, Percent: 12.5, MAC: "52:54:00:12:34:56"}},
		{name: "MAC in capitals", in: Status{MAC: "52:54:00:AB:CD:EF"}, want: &Status{MAC: "52:54:00:ab:cd:ef"}},
		{name: "bad MAC dropped", in: Status{MAC: "52:54:00:12:34"}, want: &Status{}},
		{name: "overlong address dropped", in: Status{TorrentAddr: strings.Repeat("x", 200) + ":1", HTTPAddr: "10.0.0.1:80"}, want: &Status{HTTPAddr: "10.0.0.1:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.in
			if tt.want != nil {
				want = *tt.want
			}
			b := tt.in.Encode()
			if len(b) > MaxStatusSize {
				t.Fatalf("Encode: %d bytes, over %d", len(b), MaxStatusSize)
			}
			got, err := DecodeStatus(b)
			if err != nil {
				t.Fatalf("DecodeStatus: %v", err)
			}
			if got != want {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestStatusEncodeLargest(t *testing.T) {
	s := maxStatus()
	b := s.Encode()
	t.Logf("largest status: %d bytes", len(b))
	if len(b) > MaxStatusSize {
		t.Fatalf("Encode of the largest status: %d bytes, over memberlist's %d", len(b), MaxStatusSize)
	}
	got, err := DecodeStatus(b)
	if err != nil {
		t.Fatalf("DecodeStatus: %v", err)
	}
	if len(got.Err) < 150 || !strings.HasPrefix(s.Err, got.Err) || !utf8.ValidString(got.Err) {
		t.Errorf("Err = %q (%d bytes): want a valid UTF-8 prefix of at least 150 bytes", got.Err, len(got.Err))
	}
	if len(got.Image) > maxImageLen || !strings.HasPrefix(s.Image, got.Image) || !utf8.ValidString(got.Image) {
		t.Errorf("Image = %q: want a valid UTF-8 prefix of at most %d bytes", got.Image, maxImageLen)
	}
	if got.TorrentAddr != s.TorrentAddr || got.HTTPAddr != s.HTTPAddr {
		t.Errorf("addresses = %q, %q: want them unchanged", got.TorrentAddr, got.HTTPAddr)
	}
	// Err fills the encoding exactly up to the limit, whatever the size of
	// its length prefix, and leaves a MAC its room.
	for _, mac := range []string{"", "52:54:00:12:34:56"} {
		s.MAC = mac
		for _, n := range []int{100, 126, 127, 128, 129, 200, 300, 1000} {
			s.Err = strings.Repeat("x", n)
			b := s.Encode()
			got, err := DecodeStatus(b)
			if len(b) > MaxStatusSize || err != nil || got.MAC != mac || len(got.Err) < 150 && len(got.Err) < n {
				t.Errorf("Err of %d bytes, MAC %q: encoding %d bytes, decoded MAC %q, Err of %d bytes, %v", n, mac, len(b), got.MAC, len(got.Err), err)
			}
		}
	}
}

func TestDecodeStatusRejects(t *testing.T) {
	valid := Status{Phase: PhaseDownloading, Image: "lab1-v3", TorrentAddr: "10.0.0.2:6881", Err: "x"}.Encode()
	withString := func(field int, s string) []byte {
		// header, 13 numbers (percent to updated) at 0, then the strings
		b := append([]byte{statusVersion, 0, 0}, make([]byte, 13)...)
		for i := range 4 {
			v := ""
			if i == field {
				v = s
			}
			b = appendString(b, v)
		}
		return b
	}
	if _, err := DecodeStatus(withString(-1, "")); err != nil {
		t.Fatalf("withString helper builds an invalid encoding: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version 0", append([]byte{0}, valid[1:]...)},
		{"version 2", append([]byte{2}, valid[1:]...)},
		{"header only", valid[:3]},
		{"cut in the middle", valid[:len(valid)/2]},
		{"cut before the last byte", valid[:len(valid)-1]},
		{"too long", append(bytes.Clone(valid), make([]byte, MaxStatusSize)...)},
		{"percent over 100", append([]byte{statusVersion, 0, 0}, 0x91, 0x4e)}, // 10001
		{"varint overflow", append([]byte{statusVersion, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"chunks over uint32", append([]byte{statusVersion, 0, 0, 0}, 0x80, 0x80, 0x80, 0x80, 0x10)},
		{"image too long", withString(0, strings.Repeat("i", maxImageLen+1))},
		{"address too long", withString(1, strings.Repeat("a", maxAddrLen+1))},
		{"image not UTF-8", withString(0, "lab\xff")},
		{"err not UTF-8", withString(3, "\xc3")},
		{"string longer than input", append(withString(-1, "")[:len(withString(-1, ""))-1], 5, 'a')},
		{"text", []byte("hello, I am not a status")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DecodeStatus(tt.in)
			if err == nil {
				t.Fatalf("DecodeStatus(%x) = %+v, want an error", tt.in, s)
			}
			if !errors.Is(err, ErrBadStatus) {
				t.Errorf("error %v does not wrap ErrBadStatus", err)
			}
			if s != (Status{}) {
				t.Errorf("DecodeStatus returned %+v with its error, want the zero Status", s)
			}
		})
	}
	// Every strict prefix of an encoding is rejected: all fields are required.
	for i := range valid {
		if _, err := DecodeStatus(valid[:i]); err == nil {
			t.Errorf("prefix of %d bytes accepted", i)
		}
	}
}

func TestDecodeStatusIgnoresTrailingBytes(t *testing.T) {
	in := Status{Phase: PhaseSeeding, Image: "lab1-v3", Sync: true, ChunksLocal: 200, ChunksFetched: 9, FilesRemoved: 1234}
	b := append(in.Encode(), 1, 2, 3) // a later version's extra fields
	got, err := DecodeStatus(b)
	if err != nil || got != in {
		t.Fatalf("DecodeStatus = %+v, %v; want %+v", got, err, in)
	}
}

// TestStatusSyncFields: the fields of a sync come after Err, so that
// labseed before them reads the rest; Err makes room for them.
func TestStatusSyncFields(t *testing.T) {
	in := maxStatus()
	in.Sync, in.ChunksLocal, in.ChunksFetched, in.FilesRemoved = true, 1<<32-1, 7, 1<<64-1
	b := in.Encode()
	if len(b) > MaxStatusSize {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := DecodeStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Err) < 150 || !strings.HasPrefix(in.Err, got.Err) {
		t.Errorf("Err kept %d bytes", len(got.Err))
	}
	if !got.Sync || got.ChunksLocal != in.ChunksLocal || got.ChunksFetched != in.ChunksFetched || got.FilesRemoved != in.FilesRemoved {
		t.Errorf("DecodeStatus = %+v", got)
	}
	old := in
	old.Sync, old.ChunksLocal, old.ChunksFetched, old.FilesRemoved = false, 0, 0, 0
	if enc := old.Encode(); bytes.Equal(enc, b[:len(enc)]) && len(enc) == len(b) {
		t.Error("the sync fields changed nothing")
	}
}

// TestStatusGolden pins the version-1 wire format: members of one lab may run
// different labseed builds. Run with -update after a deliberate format change
// (and bump statusVersion).
func TestStatusGolden(t *testing.T) {
	s := Status{
		Role: RolePeer, Phase: PhaseDownloading, Image: "lab1-v3", TorrentAddr: "10.77.0.23:42069",
		Percent: 42.37, Chunks: 344, ChunksTotal: 812, DownRate: 11_500_000, UpRate: 9_900_000,
		FromServer: 1 << 30, FromPeers: 3 << 30, Uploaded: 2 << 30, Peers: 12, ETA: 95,
		HashFailures: 1, StartedUnix: 1_790_000_000, UpdatedUnix: 1_790_000_300,
	}
	path := filepath.Join("testdata", "status-v1.golden")
	got := s.Encode()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Encode changed the wire format:\n got %x\nwant %x", got, want)
	}
	if dec, err := DecodeStatus(want); err != nil || dec != s {
		t.Errorf("DecodeStatus(golden) = %+v, %v; want %+v", dec, err, s)
	}
}

func TestPhaseAndRoleStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{PhaseJoining.String(), "joining"},
		{PhaseDownloading.String(), "downloading"},
		{PhaseFinishing.String(), "finishing"},
		{PhaseSeeding.String(), "seeding"},
		{PhaseDone.String(), "done"},
		{PhaseFailed.String(), "failed"},
		{Phase(9).String(), "phase(9)"},
		{RolePeer.String(), "peer"},
		{RoleServer.String(), "server"},
		{Role(7).String(), "role(7)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

// FuzzDecodeStatus feeds DecodeStatus arbitrary bytes (a member's metadata
// comes from the network). Seeds: testdata/fuzz/FuzzDecodeStatus and the
// statuses below. Whatever decodes must encode within the limit and decode
// again to the same status.
func FuzzDecodeStatus(f *testing.F) {
	f.Add(Status{}.Encode())
	f.Add(maxStatus().Encode())
	f.Add(Status{Role: RoleServer, Phase: PhaseSeeding, Image: "lab1-v3", TorrentAddr: "10.77.0.1:42069", HTTPAddr: "10.77.0.1:8080"}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStatus(b)
		if err != nil {
			if !errors.Is(err, ErrBadStatus) {
				t.Fatalf("error %v does not wrap ErrBadStatus", err)
			}
			return
		}
		enc := s.Encode()
		if len(enc) > MaxStatusSize {
			t.Fatalf("re-encoding is %d bytes", len(enc))
		}
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
		}
		s2, err := DecodeStatus(enc)
		if err != nil {
			t.Fatalf("re-encoding of %+v does not decode: %v", s, err)
		}
		if s2 != s {
			t.Fatalf("round trip changed the status:\n got %+v\nwant %+v", s2, s)
		}
	})
}
