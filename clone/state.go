package clone

import (
	"log/slog"
	"os"
)

// system is the new system, mounted.
type system struct {
	dir  string   // its root: the mount point
	root *os.Root // lookups that stay inside it
	data *TemplateData
}

// mounts is the stack of what the clone mounted, unmounted in reverse.
type mounts struct {
	log   *slog.Logger
	stack []string
	// made are directories created on the cloning system itself to mount
	// on (in its /dev), removed after the unmount.
	made []string
}
