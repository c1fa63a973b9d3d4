//go:build !linux

package luksconv

import "os"

// identity is one piece of storage a file or device is made of. Outside Linux only os.SameFile
// compares outputs with inputs.
type identity struct{ why string }

func (a identity) same(b identity) bool { return false }

func identities(fi os.FileInfo) []identity { return nil }
