package chunker

import (
	"crypto/ed25519"
	"errors"
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
		{"unknown field", `"format": 1,`, `"format": 1, "evil": true,`},
		{"bad name", `"name": "test"`, `"name": "../x"`},
		{"huge chunk", `"raw_size": `, `"raw_size": 99999999999`},
		{"bad hash", `"sha256": "`, `"sha256": "zz`},
		{"payload mismatch", `"payload_bytes": `, `"payload_bytes": 1`},
		{"trailing", "}\n", "}{}"},
		{"format 0", `"format": 1,`, `"format": 0,`},
		{"format from the future", `"format": 1,`, `"format": 3,`},
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
