package clone_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/labseed/labseed/clone"
	"github.com/labseed/labseed/keys"
)

// Re-image /dev/sda as this machine from the print server 10.1.0.1, with
// the keys "labseed keys export" wrote. (Not run: it needs root and a disk
// to erase.)
func ExampleRun() {
	w, err := keys.ReadWorkstation(keys.DefaultDir)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = clone.Run(context.Background(), clone.Config{
		Server: "10.1.0.1", Disk: "/dev/sda", PublicKey: w.PublicKey, LabKey: w.LabKey,
		Console: os.Stdout, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	var se *clone.StepError
	if errors.As(err, &se) {
		fmt.Println("failed at", se.Step, "- nothing is left mounted, run it again:", se.Err)
	}
}
