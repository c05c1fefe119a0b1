//go:build !linux

package main

// mountTmpfs does nothing off Linux: the demo's lab lives in a plain
// directory.
func mountTmpfs(string) (unmount func()) { return nil }
