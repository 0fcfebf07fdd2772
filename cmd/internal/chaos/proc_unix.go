//go:build unix

package chaos

import (
	"os"
	"syscall"
)

// pauseProcess and resumeProcess send SIGSTOP and SIGCONT.
func pauseProcess(p *os.Process) error  { return p.Signal(syscall.SIGSTOP) }
func resumeProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }

// dumpProcess sends SIGQUIT: a Go program prints every goroutine's stack
// to stderr (the member's log) and exits.
func dumpProcess(p *os.Process) error { return p.Signal(syscall.SIGQUIT) }
