package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// selfUsage describes the CPU time and peak memory this process used so
// far, for the last line of a command: "CPU 12.3 s, peak RSS 150 MiB".
// labseed demo and the lab bench read it from labseed peer's output.
func selfUsage() string {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return "CPU and RSS unknown"
	}
	cpu := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	return fmt.Sprintf("CPU %.1f s, peak RSS %.0f MiB", cpu, peakRSS(&ru)/(1<<20))
}

// peakRSS returns the most memory this process has held, in bytes. On
// Linux it is VmHWM: getrusage's ru_maxrss also counts the memory of the
// process that started this one (at exec the kernel keeps the larger of
// the old and new peaks, and a Go parent forks with CLONE_VM), so a
// workstation started by labseed demo reported the demo's 250 MiB as
// its own.
func peakRSS(ru *syscall.Rusage) float64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				if kib, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64); err == nil {
					return kib * 1024
				}
			}
		}
	}
	if runtime.GOOS == "darwin" {
		return float64(ru.Maxrss) // bytes
	}
	return float64(ru.Maxrss) * 1024 // KiB
}
