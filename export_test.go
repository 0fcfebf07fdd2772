package accord

import "testing"

// OpenTestStore gives the accord_test package the shared test helper.
func OpenTestStore(t testing.TB) *Store { return openTestStore(t, "", nil) }
