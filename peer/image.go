package peer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
)

// Image is an image resolved by Agent.Resolve: its manifest, whose
// signature is verified, and its torrent, checked against the manifest.
// Nothing is written to get it; give it to Agent.Fetch.
type Image struct {
	// Manifest is the image's manifest (only decoded, not verified, with
	// Config.Insecure): its name and version, its chunks, and its ID
	// (Manifest.ID), which the staging data of an interrupted fetch of
	// this image records (chunker.StateImage).
	Manifest *chunker.Manifest
	mi       *metainfo.MetaInfo
	lab      api.Lab
}

// String returns the image's name and version as the lab status shows
// them, NAME-vVERSION.
func (im *Image) String() string {
	return fmt.Sprintf("%s-v%d", im.Manifest.Name, im.Manifest.Version)
}

// Resolve asks the print server for the image (Config.Image, or the
// server's only image), retrying while the server is not up or has no
// image yet, until ctx ends; it verifies the manifest's signature with
// Config.PublicKey and the torrent's infohash against the manifest. It
// writes nothing: the caller can check the image before anything is.
// A wrong signature, an unknown image name or a choice between several
// images fails at once.
func (a *Agent) Resolve(ctx context.Context) (*Image, error) {
	name := a.cfg.Image
	var lastErr error
	for attempt := 0; ; attempt++ {
		if name == "" {
			name, lastErr = a.onlyImage(ctx)
		}
		if name != "" {
			var im *Image
			im, lastErr = a.getImage(ctx, name)
			if lastErr == nil {
				a.log.Info("image resolved", "image", im.String(), "id", im.Manifest.ID(), "verified", !a.cfg.Insecure)
				return im, nil
			}
			if errors.Is(lastErr, chunker.ErrBadSignature) || errors.Is(lastErr, ErrOldManifest) || errors.Is(lastErr, errPermanent) {
				return nil, lastErr
			}
		} else if errors.Is(lastErr, errPermanent) {
			return nil, lastErr
		}
		if attempt == 0 || attempt%10 == 0 {
			a.log.Warn("print server not ready, retrying", "server", a.cfg.Server, "err", lastErr)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("peer: no image from %s: %w (last error: %v)", a.cfg.Server, ctx.Err(), lastErr)
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 3*time.Second)):
		}
	}
}

var errPermanent = errors.New("peer: permanent error")

// apiErr marks the print server's "not found" answers as permanent.
func apiErr(err error) error {
	var ae *api.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	return err
}

// onlyImage returns the name of the server's image when it has exactly one.
func (a *Agent) onlyImage(ctx context.Context) (string, error) {
	imgs, err := a.api.Images(ctx)
	if err != nil {
		return "", apiErr(err)
	}
	switch len(imgs) {
	case 1:
		return imgs[0].Name, nil
	case 0:
		return "", errors.New("the print server has no image yet")
	}
	var names []string
	for _, im := range imgs {
		names = append(names, im.Name)
	}
	return "", fmt.Errorf("%w: the print server has %d images %v: choose one with --image", errPermanent, len(imgs), names)
}

func (a *Agent) getImage(ctx context.Context, name string) (*Image, error) {
	im, err := a.api.Image(ctx, name)
	if err != nil {
		return nil, apiErr(err)
	}
	var m *chunker.Manifest
	if a.cfg.Insecure {
		m, err = chunker.DecodeManifest(im.Manifest)
	} else {
		m, err = chunker.VerifyManifest(ed25519.PublicKey(a.cfg.PublicKey), im.Manifest, im.Signature)
		if errors.Is(err, chunker.ErrBadSignature) {
			err = fmt.Errorf("peer: image %q from %s: %w (is --keys from this print server's 'labseed keys export'?)", name, a.cfg.Server, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := CheckManifest(m, name, a.cfg.MinVersion); err != nil {
		return nil, err
	}
	mi, err := metainfo.Load(bytes.NewReader(im.Torrent))
	if err != nil {
		return nil, fmt.Errorf("%w: torrent of %q: %v", errPermanent, name, err)
	}
	if got := mi.HashInfoBytes().HexString(); got != m.InfoHash {
		return nil, fmt.Errorf("%w: torrent of %q has infohash %s, the signed manifest says %s", errPermanent, name, got, m.InfoHash)
	}
	return &Image{Manifest: m, mi: mi, lab: im.Lab}, nil
}

// ErrOldManifest is returned (wrapped) for a manifest that is not the one
// asked for: another image's, or a version older than the print server
// said it serves (an old signed manifest replayed).
var ErrOldManifest = errors.New("peer: not the manifest asked for")

// CheckManifest checks that a manifest whose signature checked out is of
// image name and of version minVersion or later.
func CheckManifest(m *chunker.Manifest, name string, minVersion int) error {
	if m.Name != name {
		return fmt.Errorf("%w: image %q was asked for, the print server sent a signed manifest of %q", ErrOldManifest, name, m.Name)
	}
	if m.Version < minVersion {
		return fmt.Errorf("%w: image %s v%d is served, the manifest sent is of v%d (replayed)", ErrOldManifest, name, minVersion, m.Version)
	}
	return nil
}
