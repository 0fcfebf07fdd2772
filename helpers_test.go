package accord

import (
	"context"
	"testing"
	"time"
)

// Test helpers shared by every test file of the package (and, through
// export_test.go, by the accord_test package).

// testOptions makes elections fast and skips fsync; tests about durability
// turn fsync back on.
func testOptions() *Options {
	return &Options{ElectionTimeout: 50 * time.Millisecond, UnsafeNoFsync: true}
}

// openTestStore opens dir (a fresh temporary directory if empty) with o
// (testOptions if nil) and closes the store when the test ends, failing the
// test if Close fails.
func openTestStore(t testing.TB, dir string, o *Options) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if o == nil {
		o = testOptions()
	}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// pace waits d, or less if ctx ends first; it reports whether ctx is still
// live. For the schedules of load and fault loops (how long a partition
// lasts, a client's backoff), which are about time, not a condition.
func pace(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
