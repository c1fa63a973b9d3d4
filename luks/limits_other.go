//go:build !linux

package luks

// availableMemory is not known on this system: the 4 GiB maximum applies.
func availableMemory() (int64, bool) { return 0, false }

// addressSpaceRoom is not known on this system.
func addressSpaceRoom() (int64, bool) { return 0, false }
