package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// selectionFlags are the flags with which a command names machines:
// --all, --group G, --file F (MACs, one a line), and MACs as operands.
type selectionFlags struct {
	all   *bool
	group *string
	file  *string
}

// addSelectionFlags adds --all, --group and --file to fs; what names the
// machines (e.g. "the machines to wake").
func addSelectionFlags(fs *flag.FlagSet, what string) selectionFlags {
	return selectionFlags{
		all:   fs.Bool("all", false, what+": every host of the table"),
		group: fs.String("group", "", what+": the hosts of `GROUP` (the group column of hosts.csv)"),
		file:  fs.String("file", "", what+": the MACs in `FILE` (one per line, # comments)"),
	}
}

// selection is what the flags and the operands (MACs) name.
type selection struct {
	all   bool
	group string
	macs  []string
}

// parse reads --file and checks that exactly one of --all, --group and
// MACs (operands or --file) is given.
func (f selectionFlags) parse(operands []string) (selection, error) {
	sel := selection{all: *f.all, group: *f.group, macs: operands}
	if *f.file != "" {
		b, err := os.ReadFile(*f.file)
		if err != nil {
			return sel, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line, _, _ = strings.Cut(line, "#"); strings.TrimSpace(line) != "" {
				sel.macs = append(sel.macs, strings.TrimSpace(line))
			}
		}
		if len(sel.macs) == len(operands) {
			return sel, fmt.Errorf("%s holds no MAC", *f.file)
		}
	}
	n := 0
	for _, b := range []bool{sel.all, sel.group != "", len(sel.macs) > 0} {
		if b {
			n++
		}
	}
	if n != 1 {
		return sel, fmt.Errorf("give MACs, --file, --group or --all (one of them): %w", errUsage)
	}
	return sel, nil
}

// parseInterleaved parses fs's flags, which may come before, between or
// after the operands, and returns the operands.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
