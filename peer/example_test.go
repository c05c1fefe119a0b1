package peer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
)

// Fetch the image lab1 from the print server 10.1.0.1 into /mnt/target,
// refusing a version older than 3 before anything is written, then seed it
// to the rest of the lab until the lab is done. (Not run: it needs a print
// server.)
func Example() {
	w, err := keys.ReadWorkstation(keys.DefaultDir)
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := peer.New(peer.Config{Server: "10.1.0.1", Target: "/mnt/target", Image: "lab1",
		PublicKey: w.PublicKey, LabKey: w.LabKey, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	im, err := a.Resolve(ctx) // the signed manifest, verified
	if err != nil {
		fmt.Println(err)
		return
	}
	if im.Manifest.Version < 3 {
		fmt.Printf("the print server serves %s, older than v3\n", im)
		return
	}
	s, err := a.Fetch(ctx, im)
	if err != nil {
		fmt.Println(err) // run it again: it resumes
		return
	}
	fmt.Printf("/mnt/target holds %s; seeding\n", im)
	if err := s.Seed(ctx); err != nil {
		fmt.Println(err)
	}
}
