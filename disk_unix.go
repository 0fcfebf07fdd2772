//go:build unix

package accord

import (
	"errors"
	"syscall"
)

// freeDiskBytes returns the bytes an unprivileged writer can still use on
// the file system holding dir.
func freeDiskBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}

// isNoSpace reports whether err says the file system (or the quota, or
// a file-size limit) has no room for the write.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}
