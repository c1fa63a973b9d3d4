//go:build !linux

package luksconv

import "os"

// startWriteBehind does nothing outside Linux: the page cache is left to the kernel.
func startWriteBehind(f *os.File) *writeBehind { return nil }
