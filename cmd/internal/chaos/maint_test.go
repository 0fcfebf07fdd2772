package chaos

import (
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/internal/schema"
)

// writeKVDB makes a kv.db in dir whose meta bucket records the given
// scheduled and finished compaction revisions (0: absent).
func writeKVDB(t *testing.T, dir string, scheduled, finished int64) string {
	t.Helper()
	path := filepath.Join(dir, kvDBFile)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte(schema.BucketMeta))
		if err != nil {
			return err
		}
		for key, rev := range map[string]int64{schema.MetaScheduledCompactKey: scheduled, schema.MetaFinishedCompactKey: finished} {
			if rev == 0 {
				if err := meta.Delete([]byte(key)); err != nil {
					return err
				}
				continue
			}
			if err := meta.Put([]byte(key), schema.AppendRevisionKey(nil, schema.Revision{Main: rev})); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspectKilledCompaction(t *testing.T) {
	for _, tc := range []struct {
		scheduled, finished int64
		want                bool
	}{
		{0, 0, false},
		{10, 0, true},
		{10, 5, true},
		{10, 10, false},
	} {
		dir := t.TempDir()
		writeKVDB(t, dir, tc.scheduled, tc.finished)
		ks := inspectKilled(dir)
		if ks.err != nil {
			t.Fatal(ks.err)
		}
		if ks.compacting != tc.want || ks.defragFile || ks.installing {
			t.Errorf("scheduled %d finished %d: got %+v, want compacting %v only", tc.scheduled, tc.finished, ks, tc.want)
		}
	}
}

func TestInspectKilledDefragAndInstall(t *testing.T) {
	dir := t.TempDir()
	kv := writeKVDB(t, dir, 0, 0)
	boltBytes, err := os.ReadFile(kv)
	if err != nil {
		t.Fatal(err)
	}
	if !isBolt(boltBytes) {
		t.Fatal("isBolt does not recognise a bbolt file")
	}

	// A snapshot the member took itself: a marker, not an install.
	own := filepath.Join(dir, snapshotsDir, "2-80-1.tmp")
	if err := os.MkdirAll(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(own, "state.bin"), []byte("ACCORD-KVDB\x01\x00\x00\x00\x00\x00\x00\x00\x50"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ks := inspectKilled(dir); ks.installing || ks.defragFile || ks.compacting || ks.err != nil {
		t.Fatalf("own snapshot: %+v", ks)
	}

	// A leader's snapshot being received: its kv.db.
	recv := filepath.Join(dir, snapshotsDir, "3-900-2.tmp")
	if err := os.MkdirAll(recv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recv, "state.bin"), boltBytes[:4096], 0o600); err != nil {
		t.Fatal(err)
	}
	if ks := inspectKilled(dir); !ks.installing {
		t.Fatalf("received snapshot not seen: %+v", ks)
	}
	if err := os.RemoveAll(recv); err != nil {
		t.Fatal(err)
	}

	// Being swapped in.
	if err := os.WriteFile(filepath.Join(dir, kvDBInstall), boltBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if ks := inspectKilled(dir); !ks.installing {
		t.Fatalf("kv.db.install not seen: %+v", ks)
	}
	if err := os.Remove(filepath.Join(dir, kvDBInstall)); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(dir, kvDBDefragFile), boltBytes[:4096], 0o600); err != nil {
		t.Fatal(err)
	}
	if ks := inspectKilled(dir); !ks.defragFile || ks.installing {
		t.Fatalf("kv.db.defrag: %+v", ks)
	}
}

func TestInspectKilledNoKVDB(t *testing.T) {
	if ks := inspectKilled(t.TempDir()); ks != (killState{}) {
		t.Fatalf("empty directory: %+v", ks)
	}
}

func TestCheckKVFile(t *testing.T) {
	dir := t.TempDir()
	path := writeKVDB(t, dir, 3, 3)
	if err := checkKVFile(path); err != nil {
		t.Fatalf("a sound kv.db: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Zero both meta pages: the file no longer opens.
	clear(b[:2*4096])
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkKVFile(bad); err == nil {
		t.Fatal("a kv.db with zeroed meta pages passed the check")
	}
	// inspectKilled reports an unreadable kv.db instead of guessing.
	if err := os.Rename(bad, path); err != nil {
		t.Fatal(err)
	}
	if ks := inspectKilled(dir); ks.err == nil {
		t.Fatalf("unreadable kv.db: %+v", ks)
	}
}
