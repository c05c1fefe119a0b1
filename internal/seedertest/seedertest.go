// Package seedertest runs a print server (package seeder) for the length of
// a test: what the clone and peer tests each wrote.
package seedertest

import (
	"context"
	"testing"

	"github.com/labseed/labseed/seeder"
)

// Start creates a print server from cfg and runs it until the test ends;
// the test fails if the server cannot start or Run returns an error.
func Start(t testing.TB, cfg seeder.Config) *seeder.Server {
	t.Helper()
	srv, err := seeder.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("print server: %v", err)
		}
	})
	return srv
}
