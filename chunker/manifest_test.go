package chunker

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestManifestSignature(t *testing.T) {
	m, _ := publish(t, genImage(t, 7, 512<<10), smallChunks)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	key := testKey()
	sig := Sign(key, b)
	pub := key.Public().(ed25519.PublicKey)
	got, err := VerifyManifest(pub, b, sig)
	if err != nil {
		t.Fatalf("VerifyManifest: %v", err)
	}
	if got.ID() != m.ID() {
		t.Fatal("decoded manifest differs")
	}
	tampered := []byte(strings.Replace(string(b), `"version": 1`, `"version": 2`, 1))
	if _, err := VerifyManifest(pub, tampered, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered manifest: %v, want ErrBadSignature", err)
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	m, _ := publish(t, genImage(t, 8, 512<<10), smallChunks)
	good, _ := m.Encode()
	tests := []struct{ name, from, to string }{
		{"unknown field", `"format": 3,`, `"format": 3, "evil": true,`},
		{"bad name", `"name": "test"`, `"name": "../x"`},
		{"huge chunk", `"raw_size": `, `"raw_size": 99999999999`},
		{"bad hash", `"sha256": "`, `"sha256": "zz`},
		{"bad raw hash", `"raw_blake3": "`, `"raw_blake3": "zz`},
		{"raw hashes in format 2", `"format": 3,`, `"format": 2,`},
		{"payload mismatch", `"payload_bytes": `, `"payload_bytes": 1`},
		{"trailing", "}\n", "}{}"},
		{"format 0", `"format": 3,`, `"format": 0,`},
		{"format from the future", `"format": 3,`, `"format": 4,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := strings.Replace(string(good), tt.from, tt.to, 1)
			if b == string(good) {
				t.Fatalf("%q not in manifest", tt.from)
			}
			if _, err := DecodeManifest([]byte(b)); err == nil {
				t.Fatal("DecodeManifest accepted it")
			}
		})
	}
}

// TestManifestRawHashes checks the rule of format 3: a raw hash for every
// chunk, and none in the formats before, which stay readable.
func TestManifestRawHashes(t *testing.T) {
	m, _ := publish(t, genImage(t, 8, 512<<10), smallChunks)
	if m.Format != FormatVersion {
		t.Fatalf("published format %d, want %d", m.Format, FormatVersion)
	}
	one := *m
	one.Chunks = slices.Clone(m.Chunks)
	one.Chunks[len(one.Chunks)-1].RawBLAKE3 = ""
	if err := one.Validate(); err == nil || !strings.Contains(err.Error(), "raw_blake3") {
		t.Errorf("format 3 with a chunk without its raw hash: %v", err)
	}
	for i := range one.Chunks {
		one.Chunks[i].RawBLAKE3 = ""
	}
	for _, f := range []int{MinFormatVersion, SparseFormatVersion} {
		one.Format = f
		b, _ := one.Encode()
		if strings.Contains(string(b), "raw_blake3") {
			t.Errorf("format %d encodes raw_blake3", f)
		}
		if _, err := DecodeManifest(b); err != nil {
			t.Errorf("format %d without raw hashes: %v", f, err)
		}
	}
}

func TestUncovered(t *testing.T) {
	m := &Manifest{Chunks: []Chunk{{Offset: 0, Size: 10}, {Offset: 10, Size: 10}, {Offset: 20, Size: 10}, {Offset: 30, Size: 5}}}
	have := func(cs ...int) func(int) bool {
		return func(c int) bool { return slices.Contains(cs, c) }
	}
	for _, tt := range []struct {
		have     func(int) bool
		off, end int64
		want     [][2]int64
	}{
		{have(), 0, 35, [][2]int64{{0, 35}}},
		{have(1), 5, 25, [][2]int64{{5, 10}, {20, 25}}},
		{have(0, 2), 0, 35, [][2]int64{{10, 20}, {30, 35}}},
		{have(0, 1, 2, 3), 0, 35, nil},
		{have(2), 12, 18, [][2]int64{{12, 18}}},
		{have(1), 12, 18, nil},
	} {
		if got := m.Uncovered(tt.have, tt.off, tt.end); !slices.Equal(got, tt.want) {
			t.Errorf("Uncovered(%d, %d) = %v, want %v", tt.off, tt.end, got, tt.want)
		}
	}
}
