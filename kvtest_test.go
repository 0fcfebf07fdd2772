package accord

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

// Test helpers for code that runs over kv.db without a Store.

func testBackendOptions() *backendOptions {
	return &backendOptions{noSync: true, clusterName: defaultClusterName, quota: defaultQuotaBytes, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// newTestKeyspace returns a keyspace over a new kv.db in a temporary
// directory, its committer running; the file closes at the end of the test.
func newTestKeyspace(t testing.TB) *keyspace {
	t.Helper()
	path := filepath.Join(t.TempDir(), kvDBName)
	if err := createKVFile(path, testBackendOptions()); err != nil {
		t.Fatal(err)
	}
	ks, _ := openTestKeyspace(t, path)
	return ks
}

// openTestKeyspace opens the kv.db at path as a started keyspace.
func openTestKeyspace(t testing.TB, path string) (*keyspace, *kvState) {
	t.Helper()
	ks := newKeyspace()
	nks, st, be, err := openKeyspace(path, &ks.mu, testBackendOptions())
	if err != nil {
		t.Fatal(err)
	}
	ks.adopt(nks)
	be.start()
	t.Cleanup(func() { be.close() })
	return ks, st
}

// reopenTestKeyspace closes ks's file (committing what is pending) and
// opens it again, rebuilding the index from the file as Open does.
func reopenTestKeyspace(t testing.TB, ks *keyspace) *keyspace {
	t.Helper()
	if err := ks.be.close(); err != nil {
		t.Fatal(err)
	}
	nks, _ := openTestKeyspace(t, ks.be.path)
	return nks
}

// settleTestKeyspace commits everything pending, including the whole of
// any compaction in progress.
func settleTestKeyspace(t testing.TB, ks *keyspace) {
	t.Helper()
	be := ks.be
	err := be.do(func() error {
		for range 10000 {
			be.guard.RLock()
			idle := be.cur.empty() && be.frozen == nil
			be.guard.RUnlock()
			if idle && be.job == nil {
				return nil
			}
			be.commit(false)
			be.mu.Lock()
			err := be.err
			be.mu.Unlock()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fileRevisions lists the revisions kv.db holds (committed), in order.
func fileRevisions(t testing.TB, ks *keyspace) []revision {
	t.Helper()
	settleTestKeyspace(t, ks)
	var out []revision
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	c := ks.be.rkeys.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		r, err := parseRevKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}
