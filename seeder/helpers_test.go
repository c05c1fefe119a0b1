package seeder

import (
	"io"
	"testing"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
)

// publishFixture publishes a generated image (fixture.GenerateImage with
// opt) into the store in dir with cfg and returns it.
func publishFixture(t *testing.T, dir string, opt fixture.ImageOptions, cfg chunker.Config) *store.Image {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fixture.GenerateImage(pw, opt)) }()
	im, err := st.Publish(t.Context(), pr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return im
}
