package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// APIToken is the bearer token of the hosts API: an HMAC of the lab key, so
// that whoever holds lab.key (the print server, "labseed clone --keys")
// may use it.
func APIToken(labKey []byte) string {
	m := hmac.New(sha256.New, labKey)
	m.Write([]byte("labseed hosts API v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// TokenAuth returns a Client.Auth that sends the lab key's APIToken as
// "Authorization: Bearer TOKEN" with every request.
func TokenAuth(labKey []byte) func(*http.Request, []byte) error {
	h := "Bearer " + APIToken(labKey)
	return func(req *http.Request, _ []byte) error {
		req.Header.Set("Authorization", h)
		return nil
	}
}
