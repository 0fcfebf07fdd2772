//go:build linux

package chaos

import "syscall"

// childAttr makes the kernel SIGKILL a member when the harness dies, so
// that no accordd outlives an interrupted run.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
