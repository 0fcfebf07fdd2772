//go:build unix

package accord

import "syscall"

// freeDiskBytes returns the bytes an unprivileged writer can still use on
// the file system holding dir.
func freeDiskBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
