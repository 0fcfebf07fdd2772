//go:build unix

package fuzzsmoke

import (
	"os/exec"
	"syscall"
)

// killTree starts cmd in a process group of its own and makes its cancel
// kill the whole group: the go command, the test binary it runs, and the
// fuzz workers, which killing the go command alone would leave running.
func killTree(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
