//go:build !unix

package accord

// freeDiskBytes is unknown on this platform: the free-space guard is off.
func freeDiskBytes(string) (uint64, bool) { return 0, false }

// isNoSpace is false: without the guard there is nothing to tell.
func isNoSpace(error) bool { return false }
