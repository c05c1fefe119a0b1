// Package btwire writes and reads BitTorrent peer-wire messages (BEP 3) by
// hand, for tests that play a misbehaving peer: one that floods requests
// and never reads, or claims every piece and never sends one. It does no
// more than the tests need: plaintext handshakes, no extensions.
package btwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Message IDs (BEP 3).
const (
	Choke         = 0
	Unchoke       = 1
	Interested    = 2
	NotInterested = 3
	Have          = 4
	Bitfield      = 5
	Request       = 6
	Piece         = 7
	Cancel        = 8
)

// KeepAlive is the ID ReadMessage returns for a keep-alive (a message of
// length 0, which has no ID on the wire).
const KeepAlive = -1

const protocol = "BitTorrent protocol"

// handshake returns the 68-byte handshake for infohash and peer id.
func handshake(infoHash, peerID [20]byte) []byte {
	b := make([]byte, 0, 68)
	b = append(b, byte(len(protocol)))
	b = append(b, protocol...)
	b = append(b, make([]byte, 8)...) // no extensions
	b = append(b, infoHash[:]...)
	return append(b, peerID[:]...)
}

// Handshake sends the handshake for infoHash and reads the other side's,
// which must be for the same torrent. It works on either end of a
// connection: the side that dials sends first, and the side that accepts
// only needs to have read the infohash before it answers, so both may write
// their handshake before reading the other's.
func Handshake(rw io.ReadWriter, infoHash, peerID [20]byte) error {
	if _, err := rw.Write(handshake(infoHash, peerID)); err != nil {
		return fmt.Errorf("btwire: send handshake: %w", err)
	}
	b := make([]byte, 68)
	if _, err := io.ReadFull(rw, b); err != nil {
		return fmt.Errorf("btwire: read handshake: %w", err)
	}
	if b[0] != byte(len(protocol)) || string(b[1:20]) != protocol {
		return errors.New("btwire: not a BitTorrent handshake")
	}
	if [20]byte(b[28:48]) != infoHash {
		return fmt.Errorf("btwire: handshake for torrent %x, want %x", b[28:48], infoHash)
	}
	return nil
}

// Message encodes message id with payload.
func Message(id byte, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 5+len(payload)), uint32(1+len(payload)))
	b = append(b, id)
	return append(b, payload...)
}

// RequestMessage encodes a request for length bytes at begin of piece index.
func RequestMessage(index, begin, length uint32) []byte {
	p := binary.BigEndian.AppendUint32(nil, index)
	p = binary.BigEndian.AppendUint32(p, begin)
	return Message(Request, binary.BigEndian.AppendUint32(p, length))
}

// HaveAll encodes a bitfield claiming every one of n pieces.
func HaveAll(n int) []byte {
	bf := make([]byte, (n+7)/8)
	for p := range n {
		bf[p/8] |= 0x80 >> (p % 8)
	}
	return Message(Bitfield, bf)
}

// ReadMessage reads one message and returns its ID (KeepAlive for a
// keep-alive) and payload. Messages longer than max are an error.
func ReadMessage(r io.Reader, max int) (int, []byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 {
		return KeepAlive, nil, nil
	}
	if int64(n) > int64(max) {
		return 0, nil, fmt.Errorf("btwire: message of %d bytes, more than %d", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return int(b[0]), b[1:], nil
}
