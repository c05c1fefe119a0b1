package chunker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labseed/labseed/chunker"
)

// Publish a tarball, then apply its chunks, last one first, into an empty
// directory, as a workstation does with chunks from the swarm.
func Example() {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Mode: 0o644, Size: 5})
	tw.Write([]byte("ws01\n"))
	tw.Close()

	ctx := context.Background()
	var payload bytes.Buffer
	m, _, err := chunker.Publish(ctx, &tarball, &payload, chunker.Config{Name: "lab1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	target, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(target)
	a, err := chunker.NewApplier(m, chunker.ApplyConfig{Target: target})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	for i := len(m.Chunks) - 1; i >= 0; i-- {
		c := m.Chunks[i]
		if err := a.Apply(ctx, i, payload.Bytes()[c.Offset:c.Offset+c.Size]); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := a.Finish(ctx); err != nil {
		fmt.Println(err)
		return
	}
	a.Cleanup()
	b, _ := os.ReadFile(filepath.Join(target, "etc", "hostname"))
	fmt.Printf("%d entries in %d chunk(s); etc/hostname: %s", m.Entries, len(m.Chunks), b)
	// Output: 2 entries in 1 chunk(s); etc/hostname: ws01
}
