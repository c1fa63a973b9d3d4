//go:build !unix

package qemuboot

// Without flock, parallel test binaries may build the set twice; the script's build-then-rename keeps
// the result consistent.
func lockFile(path string, waiting func()) (unlock func(), err error) { return func() {}, nil }

func tryLockFile(path string) (unlock func(), ok bool) { return func() {}, true }
