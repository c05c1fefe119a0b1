package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/labseed/labseed/internal/atomicfile"
)

// File is the task's file in the print server's store: the current
// deploy, or the last one.
const File = "deploy.json"

// Save writes t to dir/File atomically (a power cut leaves the previous
// version or this one).
func Save(dir string, t *Task) error {
	b, err := json.MarshalIndent(t, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, File), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("deploy: save the task: %w", err)
	}
	return nil
}

// Load reads dir/File, as of now: a task that runs goes on from where it
// was. It returns nil, nil when there is none.
func Load(dir string, now time.Time) (*Task, error) {
	name := filepath.Join(dir, File)
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	var t Task
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("deploy: %s: %w (move it away to start afresh)", name, err)
	}
	if len(t.Machines) == 0 || t.Wave <= 0 || t.WakeTries <= 0 || t.WaveTimeout <= 0 || t.StallTimeout <= 0 {
		return nil, fmt.Errorf("deploy: %s: not a deploy task (move it away to start afresh)", name)
	}
	t.resumed = now
	return &t, nil
}
