package api

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
)

// SignedIdentity is the print server's answer to "who am I" (PathWhoAmI):
// the JSON of an Identity, exactly as signed, and its ed25519 signature
// made with the store's signing key (image.key), over IdentityContext
// followed by the Identity bytes. A workstation checks it with image.pub
// (VerifyIdentity) before it uses anything of it: the hooks, templates
// and bootloader command it carries run as root in the new system.
type SignedIdentity struct {
	Identity  []byte `json:"identity"`
	Signature []byte `json:"signature"`
}

// IdentityContext starts what an identity's signature covers, so that no
// signature made with the same key for something else (a manifest) is
// ever taken for one.
const IdentityContext = "labseed-identity-v1\n"

// ErrBadIdentity is returned (wrapped) by VerifyIdentity for an answer
// whose signature does not check out.
var ErrBadIdentity = errors.New("api: the who-am-I answer is not signed by this lab's print server")

// SignIdentity signs id with key: what the print server answers.
func SignIdentity(key ed25519.PrivateKey, id Identity) (SignedIdentity, error) {
	b, err := json.Marshal(id)
	if err != nil {
		return SignedIdentity{}, err
	}
	return SignedIdentity{Identity: b, Signature: ed25519.Sign(key, append([]byte(IdentityContext), b...))}, nil
}

// VerifyIdentity checks s's signature with pub (image.pub) and returns
// the identity it signs.
func VerifyIdentity(pub ed25519.PublicKey, s SignedIdentity) (Identity, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Identity{}, fmt.Errorf("%w: no public key to check it with", ErrBadIdentity)
	}
	if !ed25519.Verify(pub, append([]byte(IdentityContext), s.Identity...), s.Signature) {
		return Identity{}, fmt.Errorf("%w (is image.pub from this print server's 'labseed keys export'?)", ErrBadIdentity)
	}
	return DecodeIdentity(s)
}

// DecodeIdentity returns the identity s carries without checking its
// signature: for a workstation running without keys (--insecure) and for
// tests.
func DecodeIdentity(s SignedIdentity) (Identity, error) {
	var id Identity
	if err := json.Unmarshal(s.Identity, &id); err != nil {
		return Identity{}, fmt.Errorf("api: the who-am-I answer: %w", err)
	}
	return id, nil
}
