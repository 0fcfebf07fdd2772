//go:build !unix

package accord

// freeDiskBytes is unknown on this platform: the free-space guard is off.
func freeDiskBytes(string) (uint64, bool) { return 0, false }
