//go:build linux

package accord

import (
	"os"
	"syscall"
)

// allocate makes f hold size bytes of allocated disk blocks, without
// writing them (fallocate).
func allocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err != syscall.EINTR {
			return err
		}
	}
}
