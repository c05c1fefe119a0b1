package clone_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/labseed/labseed/clone"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
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
		Config: peer.Config{Server: "10.1.0.1", PublicKey: w.PublicKey, LabKey: w.LabKey,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))},
		Disk: "/dev/sda", Console: os.Stdout,
	})
	var se *clone.StepError
	if errors.As(err, &se) {
		fmt.Println("failed at", se.Step, "- nothing is left mounted, run it again:", se.Err)
	}
}
