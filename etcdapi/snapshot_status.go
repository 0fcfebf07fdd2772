package etcdapi

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/internal/boltcheck"
	"github.com/accordkv/accord/internal/schema"
)

// SnapshotStatus is what `etcdutl snapshot status` reports of a snapshot
// file, with etcdutl's JSON names.
type SnapshotStatus struct {
	// Hash is a CRC-32 (Castagnoli) of every top-level bucket's name and
	// every key and value in it, in bbolt's order: etcdutl's hash, equal
	// for equal files whatever wrote them.
	Hash uint32 `json:"hash"`
	// Revision is the main revision of the last record of the key bucket.
	Revision int64 `json:"revision"`
	// TotalKey is the number of keys whose last record is not a deletion.
	TotalKey int `json:"totalKey"`
	// TotalSize is the size of the bbolt database (without the trailer).
	TotalSize int64 `json:"totalSize"`
	// Version is meta storageVersion ("3.6.0" in accord's files), empty
	// when absent or not a version.
	Version string `json:"version"`
}

// ReadSnapshotStatus reads the status of a snapshot file (a kv.db or an
// etcd db, with or without the sha256 trailer) the way etcdutl 3.7's
// snapshot status does (v3Manager.Status): it opens the bbolt file
// read-only, runs bbolt's consistency check, reads the storage version and
// walks every bucket. It does not check the trailer. Where etcdutl
// panics (a file with no meta bucket) it returns an error; errors for a
// damaged file match accord.ErrCorrupt.
func ReadSnapshotStatus(path string) (st SnapshotStatus, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return st, err
	}
	if fi.IsDir() {
		return st, fmt.Errorf("etcdapi: snapshot status: %s is a directory", path)
	}
	if fi.Size() == 0 {
		return st, snapshotCorrupt("%s is empty", path)
	}
	defer func() {
		if p := recover(); p != nil {
			st, err = SnapshotStatus{}, snapshotCorrupt("%s: bolt database damaged: %v", path, p)
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return st, snapshotCorrupt("%s: cannot open bolt database: %v", path, err)
	}
	defer db.Close()
	// bbolt trusts the file's length: a file cut short would fault on the
	// first read of a missing page.
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Size() > fi.Size() {
			return snapshotCorrupt("%s: %d bytes, shorter than the %d its bolt header says", path, fi.Size(), tx.Size())
		}
		if err := boltcheck.Check(tx); err != nil {
			return snapshotCorrupt("%s: snapshot file integrity check failed: %v", path, err)
		}
		st.TotalSize = tx.Size()
		meta := tx.Bucket([]byte(schema.BucketMeta))
		if meta == nil {
			return snapshotCorrupt("%s: no %q bucket: not an etcd or accord snapshot", path, schema.BucketMeta)
		}
		if v, err := schema.ParseVersion(meta.Get([]byte(schema.MetaStorageVersionKey))); err == nil {
			st.Version = v.String()
		}
		h := crc32.New(castagnoli)
		live := make(map[string]bool)
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			b := tx.Bucket(name)
			if b == nil {
				return snapshotCorrupt("nil bucket: %q", name)
			}
			h.Write(name)
			isKey := bytes.Equal(name, []byte(schema.BucketKey))
			if err := b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if !isKey {
					return nil
				}
				r, tomb, err := schema.ParseRevisionKey(k)
				if err != nil {
					return fmt.Errorf("cannot parse revision key: %q err: %w", k, err)
				}
				st.Revision = r.Main
				var kv schema.KeyValue
				if err := schema.DecodeKeyValueNoCopy(v, &kv); err != nil {
					return fmt.Errorf("cannot unmarshal value, key: %q err: %w", k, err)
				}
				if tomb {
					delete(live, string(kv.Key))
				} else {
					live[string(kv.Key)] = true
				}
				return nil
			}); err != nil {
				return snapshotCorrupt("error during bucket key iteration, name: %q err: %v", name, err)
			}
		}
		st.TotalKey = len(live)
		st.Hash = h.Sum32()
		return nil
	})
	if err != nil {
		return SnapshotStatus{}, err
	}
	return st, nil
}
