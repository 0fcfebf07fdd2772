//go:build !linux

package accord

import "go.etcd.io/bbolt"

// dropResident is a no-op here; see backend_linux.go.
func dropResident(*bbolt.DB, int64) {}
