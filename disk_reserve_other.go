//go:build !linux

package accord

import (
	"errors"
	"os"
)

// allocate is not available here: no reserve is kept, and a disk that
// fills between two free-space checks costs the leader an election per
// failed append until the guard notices.
func allocate(*os.File, int64) error { return errors.ErrUnsupported }
