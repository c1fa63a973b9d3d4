//go:build !unix

package azurite

import "os/exec"

// lockFile does not lock: concurrent first installs may race here.
func lockFile(string) (func(), error) { return func() {}, nil }

func newProcessGroup(*exec.Cmd) {}

func terminate(cmd *exec.Cmd, _ bool) { cmd.Process.Kill() }
