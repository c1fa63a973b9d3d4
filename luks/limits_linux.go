package luks

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// availableMemory is the memory this process can still get, in bytes: the lesser of MemAvailable and
// the room left under its cgroup's memory.max.
func availableMemory() (int64, bool) {
	best, ok := int64(-1), false
	take := func(v int64) {
		if v >= 0 && (!ok || v < best) {
			best, ok = v, true
		}
	}
	if v, found := procField("/proc/meminfo", "MemAvailable:"); found {
		take(v)
	}
	if maxB, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if m, err := strconv.ParseInt(strings.TrimSpace(string(maxB)), 10, 64); err == nil {
			cur := int64(0)
			if c, err := os.ReadFile("/sys/fs/cgroup/memory.current"); err == nil {
				cur, _ = strconv.ParseInt(strings.TrimSpace(string(c)), 10, 64)
			}
			take(max(m-cur, 0))
		}
	}
	return best, ok
}

// addressSpaceRoom is what RLIMIT_AS leaves this process to map, in bytes: an allocation beyond it
// is a fatal error of the Go runtime, whatever limit the caller asked for.
func addressSpaceRoom() (int64, bool) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur >= 1<<62 {
		return 0, false
	}
	used, _ := procField("/proc/self/status", "VmSize:")
	return max(int64(rl.Cur)-used, 0), true
}

// procField reads a "Name: N kB" line of a /proc file, in bytes.
func procField(path, name string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, false
			}
			if len(f) >= 3 && strings.EqualFold(f[2], "kB") {
				v *= 1024
			}
			return v, true
		}
	}
	return 0, false
}
