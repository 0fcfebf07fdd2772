//go:build !unix

package chaos

import (
	"errors"
	"os"
)

var errNoStop = errors.New("chaos: pausing a process needs SIGSTOP (unix only)")

func pauseProcess(*os.Process) error  { return errNoStop }
func resumeProcess(*os.Process) error { return errNoStop }

func dumpProcess(p *os.Process) error { return p.Kill() }
