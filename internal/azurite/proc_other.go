//go:build !unix

package azurite

import "os/exec"

func newProcessGroup(*exec.Cmd) {}

func terminate(cmd *exec.Cmd, _ bool) { cmd.Process.Kill() }
