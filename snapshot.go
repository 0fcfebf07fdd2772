package accord

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/internal/boltcheck"
	"github.com/accordkv/accord/internal/raftlog"
	"github.com/accordkv/accord/internal/schema"
)

// Snapshots. The state is kv.db, so a raft snapshot taken for log
// compaction holds no data: Persist waits until kv.db holds the snapshot's
// index, then writes a small marker (liveMarker) as the snapshot's
// state.bin. When raft sends the snapshot to a follower, the store streams
// the live kv.db instead (snapStore.Open): one bbolt read transaction,
// followed by its SHA-256, which is also the layout of an etcd snapshot
// file (etcdctl snapshot save, Backup). That stream may hold entries past
// the snapshot's index; the follower skips them when raft replays them
// (fsm.ApplyBatch), so it ends in the same state.
//
// A follower receiving a snapshot gets the stream as its own snapshot's
// state.bin. Restore verifies it, moves it aside as kv.db.install, swaps it
// in as kv.db and writes the marker in its place. Open finishes a swap a
// crash interrupted (datadir.go).

const (
	liveMagic       = "ACCORD-KVDB"
	liveVersion     = 1
	kvDBInstallName = kvDBName + ".install" // a verified snapshot being swapped in
)

// liveMarker is the state.bin of a snapshot whose data is kv.db itself.
func liveMarker(index uint64) []byte {
	b := append([]byte(liveMagic), liveVersion)
	return binary.BigEndian.AppendUint64(b, index)
}

// parseLiveMarker reports whether b is a marker, and its index.
func parseLiveMarker(b []byte) (uint64, bool) {
	if len(b) != len(liveMagic)+9 || string(b[:len(liveMagic)]) != liveMagic || b[len(liveMagic)] != liveVersion {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[len(liveMagic)+1:]), true
}

// snapshot state kinds, by their first bytes.
const (
	stateMarker = iota + 1
	stateBolt   // a kv.db followed by its SHA-256 (this version's stream, or etcd's snapshot file)
	stateLegacy // ACCORDSNAP
)

func stateKind(head []byte) int {
	switch {
	case bytes.HasPrefix(head, []byte(liveMagic)):
		return stateMarker
	case bytes.HasPrefix(head, []byte(snapMagic)):
		return stateLegacy
	case isBoltHeader(head):
		return stateBolt
	}
	return 0
}

// isBoltHeader reports whether b starts like a bbolt file: page 0 is a
// meta page whose magic (at offset 16+0) is bbolt's.
func isBoltHeader(b []byte) bool {
	const pageHeader, boltMagic = 16, 0xED0CDAED
	return len(b) >= pageHeader+4 && binary.LittleEndian.Uint32(b[pageHeader:]) == boltMagic
}

// snapStore is raft's file snapshot store with three changes: raft sees
// only the newest snapshot (never silently an older one: checkSnapshots
// has refused a damaged newest one), a marker opens as the live kv.db, and
// the reader of a stored snapshot tells Restore where its file is.
type snapStore struct {
	*raft.FileSnapshotStore
	dir  string // the data directory
	live func() (io.ReadCloser, int64, error)
}

func (s *snapStore) List() ([]*raft.SnapshotMeta, error) {
	l, err := s.FileSnapshotStore.List()
	if len(l) > 1 {
		l = l[:1]
	}
	return l, err
}

func (s *snapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	state := filepath.Join(s.dir, snapshotsDir, id, "state.bin")
	head, err := readHead(state, 64)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := parseLiveMarker(head); ok {
		metas, err := s.FileSnapshotStore.List()
		if err != nil {
			return nil, nil, err
		}
		for _, m := range metas {
			if m.ID != id {
				continue
			}
			rc, size, err := s.live()
			if err != nil {
				return nil, nil, err
			}
			meta := *m
			meta.Size = size
			return &meta, rc, nil
		}
		return nil, nil, fmt.Errorf("accord: snapshot %s not found", id)
	}
	meta, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	return meta, &storedSnapshot{ReadCloser: rc, path: state, index: meta.Index, term: meta.Term}, nil
}

// readHead reads up to n bytes from the start of path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:m], nil
}

// storedSnapshot is the reader of a snapshot stored in snapshots/: Restore
// takes the file itself rather than copying the stream.
type storedSnapshot struct {
	io.ReadCloser
	path  string
	index uint64
	term  uint64
}

// findStored finds the storedSnapshot under the wrappers raft adds (its
// restore progress counter).
func findStored(rc io.ReadCloser) (*storedSnapshot, bool) {
	for range 8 {
		switch r := rc.(type) {
		case *storedSnapshot:
			return r, true
		case raft.ReadCloserWrapper:
			rc = r.WrappedReadCloser()
		default:
			return nil, false
		}
	}
	return nil, false
}

// rewriteAsMarker replaces a stored snapshot's data with the marker, and
// its metadata's size and checksum with the marker's, once kv.db holds the
// snapshot (its data was swapped in, or kv.db is already past it).
func rewriteAsMarker(dir, snapDir string, index uint64, noSync bool) error {
	metaPath := filepath.Join(snapDir, "meta.json")
	b, err := os.ReadFile(metaPath)
	if err != nil {
		return err
	}
	var meta struct {
		raft.SnapshotMeta
		CRC []byte
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return err
	}
	marker := liveMarker(index)
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(marker)
	meta.Size, meta.CRC = int64(len(marker)), h.Sum(nil)
	mb, err := json.Marshal(&meta)
	if err != nil {
		return err
	}
	// state.bin first: a crash in between leaves a marker whose checksum
	// does not match, which Open repairs the same way (checkSnapshots).
	if err := writeFileMaybeSync(filepath.Join(snapDir, "state.bin"), marker, noSync); err != nil {
		return err
	}
	if err := crashPoint(dir, crashMarkerState); err != nil {
		return err
	}
	if err := writeFileMaybeSync(metaPath, mb, noSync); err != nil {
		return err
	}
	return crashPoint(dir, crashMarkerMeta)
}

func writeFileMaybeSync(path string, data []byte, noSync bool) error {
	if noSync {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	return writeFileAtomic(path, data)
}

// restore installs a snapshot into the FSM. Called from Restore, on the FSM
// goroutine.
func (f *fsm) restore(rc io.ReadCloser) error {
	install := filepath.Join(f.dir, kvDBInstallName)
	_ = os.Remove(install)
	stored, isFile := findStored(rc)
	br := bufio.NewReaderSize(rc, 64<<10)
	head, _ := br.Peek(64)
	switch stateKind(head) {
	case stateMarker:
		// A marker restores nothing: the state it stands for is kv.db.
		index, _ := parseLiveMarker(head)
		if f.last < index {
			return &CorruptError{Path: kvDBName, Reason: fmt.Sprintf("holds entries up to %d, older than the snapshot (%d) raft restores", f.last, index)}
		}
		return nil
	case stateLegacy:
		st, err := readSnapshot(br)
		if err != nil {
			return err
		}
		var index, term uint64
		if isFile {
			index, term = stored.index, stored.term
		}
		if err := buildKVFile(install, f.bo, func(tx *bbolt.Tx) error { return fillLegacy(tx, st, index, term) }); err != nil {
			return err
		}
	case stateBolt:
		if isFile {
			if err := verifySnapshotFile(stored.path); err != nil {
				return err
			}
			if err := os.Rename(stored.path, install); err != nil {
				return err
			}
		} else if err := copyVerified(br, install); err != nil {
			return err
		}
	default:
		return &CorruptError{Path: "snapshot", Reason: "neither a kv.db nor an accord snapshot"}
	}
	var snapDir string
	var index uint64
	if isFile {
		snapDir, index = filepath.Dir(stored.path), stored.index
	}
	return f.swapIn(install, snapDir, index)
}

// verifySnapshotFile checks a kv.db followed by its SHA-256: the checksum
// and that it opens as a bolt file.
func verifySnapshotFile(path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < sha256.Size {
		return &CorruptError{Path: path, Reason: "too short for a snapshot"}
	}
	h := sha256.New()
	if _, err := io.CopyN(h, fh, fi.Size()-sha256.Size); err != nil {
		return err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(fh, want); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return &CorruptError{Path: path, Reason: "snapshot fails its SHA-256"}
	}
	return nil
}

// copyVerified copies a stream (kv.db + SHA-256) to path, checking the
// sum. It writes path.tmp and renames it once verified: Open takes a
// kv.db.install it finds for a verified snapshot a crash interrupted the
// swap of, and removes the .tmp a crash mid-copy leaves (openKV).
func copyVerified(r io.Reader, path string) error {
	tmp := path + kvDBTmpSuffix
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		fh.Close()
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(fh, r); err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	if err := verifySnapshotFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(path))
}

// finishInstall prepares kv.db.install to become kv.db: it cuts the
// checksum that follows the bolt file, records this cluster's name, and
// checks every record. It is idempotent, so that Open can redo it after a
// crash.
func finishInstall(install string, bo *backendOptions) error {
	db, err := openKVBolt(install, bo)
	if err != nil {
		return err
	}
	// Every record checked before the first write: a file that is refused
	// stays as it was.
	_, _, err = loadKV(install, db)
	var size int64
	if err == nil {
		err = db.Update(func(tx *bbolt.Tx) error {
			if err := initBuckets(tx, bo); err != nil {
				return err
			}
			size = tx.Size()
			return nil
		})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if fi, err := os.Stat(install); err == nil && fi.Size() > size {
		// The SHA-256 trailer, or bolt's own slack: nothing bolt reads.
		if err := os.Truncate(install, size); err != nil {
			return err
		}
	}
	return nil
}

// swapIn replaces kv.db with install and reloads the state from it. With
// snapDir it then writes the marker in place of that snapshot's data.
func (f *fsm) swapIn(install, snapDir string, index uint64) error {
	if err := finishInstall(install, f.bo); err != nil {
		_ = os.Remove(install)
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ks.mu.RLock()
	old := f.ks.be
	f.ks.mu.RUnlock()
	// The old file's pending writes are superseded by the snapshot.
	if err := old.close(); err != nil {
		f.log.Warn("kv.db: closing the replaced file", "err", err)
	}
	path := filepath.Join(f.dir, kvDBName)
	if err := os.Rename(install, path); err != nil {
		return err
	}
	if !f.bo.noSync {
		if err := syncDir(f.dir); err != nil {
			return err
		}
	}
	ks, st, be, err := openKeyspace(path, &f.ks.mu, f.bo)
	if err != nil {
		return err
	}
	if snapDir != "" {
		if err := rewriteAsMarker(f.dir, snapDir, index, f.bo.noSync); err != nil {
			return err
		}
	}
	f.ks.mu.Lock()
	f.ks.adopt(ks)
	f.ks.mu.Unlock()
	f.installState(st)
	be.start()
	f.hub.reset()
	return nil
}

// openKeyspace opens kv.db at path and loads it: the keyspace (whose
// mutex becomes guard's owner: the returned keyspace's fields are meant to
// be moved into the keyspace guard belongs to), its state, and its backend
// (not started).
func openKeyspace(path string, guard *sync.RWMutex, bo *backendOptions) (*keyspace, *kvState, *backend, error) {
	db, err := openKVBolt(path, bo)
	if err != nil {
		return nil, nil, nil, err
	}
	ks, st, err := loadKV(path, db)
	switch {
	case err != nil:
	case st.cluster != bo.clusterName:
		err = fmt.Errorf("%w: %s belongs to cluster %q, not %q", ErrForeignDir, path, st.cluster, bo.clusterName)
	case st.node != "" && bo.nodeID != "" && st.node != bo.nodeID:
		err = fmt.Errorf("%w: %s belongs to node %q, not %q (a file of another node holds its history, not this node's)", ErrForeignDir, path, st.node, bo.nodeID)
	}
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	var size int64
	_ = db.View(func(tx *bbolt.Tx) error { size = tx.Size(); return nil })
	dropResident(db, size)
	be := newBackend(path, db, guard, st.index, bo)
	if st.resume != nil {
		be.cur.compact = st.resume
	}
	ks.be = be
	return ks, st, be, nil
}

// Backup writes a consistent point-in-time copy of the store to w: kv.db,
// with every key's retained history, the revision, the compaction point
// and the leases, followed by its SHA-256. That is the layout of an etcd
// snapshot file: etcdutl reads it (snapshot status, restore). The copy
// reflects every write acknowledged before Backup was called (it starts
// with a linearizable read barrier and waits for the file to hold it).
// Writes continue while it is written. Restore loads it.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	rc, _, err := s.OpenBackup(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	if _, err := io.Copy(w, rc); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("accord: backup: %w", err)
	}
	return nil
}

// OpenBackup is Backup as a stream: it returns a reader of the same bytes
// and their number, known in advance (etcd's Snapshot call reports the
// bytes left). The reader holds a read transaction of kv.db until it is
// closed; the caller must close it.
func (s *Store) OpenBackup(ctx context.Context) (io.ReadCloser, int64, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, 0, fmt.Errorf("accord: backup: %w", err)
	}
	s.ks.mu.RLock()
	be := s.ks.be
	s.ks.mu.RUnlock()
	if err := be.flush(s.fsm.applied.load()); err != nil {
		return nil, 0, fmt.Errorf("accord: backup: %w", err)
	}
	rc, size, err := be.snapshot()
	if err != nil {
		return nil, 0, fmt.Errorf("accord: backup: %w", err)
	}
	return rc, size, nil
}

// Restore creates a new data directory dir from a backup read from r: a
// single-member cluster holding exactly the backed-up keys, history,
// revision, compaction point and leases (which get their full TTL again
// when the store opens). r holds a Backup (or an etcd snapshot file: a
// bolt file with etcd's buckets followed by its SHA-256), or a backup of
// accord 0.2 or older. dir must not exist or be empty. The backup is
// verified completely before anything is written; on any error nothing is
// left behind. Open(dir, opts) then starts the restored store. Restore
// does not need or touch a running store.
func Restore(r io.Reader, dir string, opts *Options) (err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("accord: restore: %s is not empty", dir)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("accord: restore: %w", err)
	}
	created := err != nil
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("accord: restore: %w", err)
	}
	defer func() {
		if err != nil {
			if created {
				os.RemoveAll(dir)
			} else {
				cleanDir(dir)
			}
			err = fmt.Errorf("accord: restore: %w", err)
		}
	}()
	if o.NodeID == "" {
		o.NodeID = newNodeID() // kv.db records it; the manifest takes it (createManifest)
	}
	bo := o.backendOptions(nil)
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(64)
	kvPath := filepath.Join(dir, kvDBName)
	install := filepath.Join(dir, kvDBInstallName)
	switch stateKind(head) {
	case stateLegacy:
		st, err := readSnapshot(br)
		if err != nil {
			return err
		}
		st.members = nil
		if err := buildKVFile(install, bo, func(tx *bbolt.Tx) error { return fillLegacy(tx, st, 1, 1) }); err != nil {
			return err
		}
	case stateBolt:
		if err := copyVerified(br, install); err != nil {
			return err
		}
		if err := checkBackupFile(install, bo); err != nil {
			return err
		}
	default:
		return &CorruptError{Path: "backup", Reason: "neither an accord backup nor an etcd snapshot"}
	}
	if err := resetForNewCluster(install, bo); err != nil {
		return err
	}
	if err := finishInstall(install, bo); err != nil {
		return err
	}
	if err := os.Rename(install, kvPath); err != nil {
		return err
	}
	m, err := createManifest(dir, &o)
	if err != nil {
		return err
	}
	id := raft.ServerID(m.NodeID)
	addr := localAddress(&o, m.NodeID)
	_, trans := raft.NewInmemTransport(addr)
	defer trans.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, o.SnapshotRetain, nullHCLog())
	if err != nil {
		return err
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: id, Address: addr}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, conf, 1, trans)
	if err != nil {
		return err
	}
	if _, err := sink.Write(liveMarker(1)); err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	stable, err := openBolt(filepath.Join(dir, raftDBName), &o)
	if err != nil {
		return err
	}
	err = stable.SetUint64(keyCurrentTerm, 1)
	if cerr := stable.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// An empty log: Open refuses a directory with state but no raft-log/.
	logs, err := raftlog.Open(filepath.Join(dir, raftLogDir), o.raftLogOptions())
	if err == nil {
		err = logs.Close()
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// Storage versions (meta storageVersion) Restore takes: etcd 3.7's rule
// (schema.Validate: a migration path to 3.7 exists from 3.5 and 3.6). A
// file without one is etcd 3.5's, or older accord's.
const (
	minStorageMinor = 5
	maxStorageMinor = 7
)

// checkBackupFile checks a restored bolt file before anything changes it:
// bbolt's own consistency check (etcdutl snapshot status's), and a storage
// version this build reads.
func checkBackupFile(path string, bo *backendOptions) (err error) {
	db, err := openKVBolt(path, bo)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Reason: "bolt database damaged", Err: fmt.Errorf("%v", p)}
		}
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	return db.View(func(tx *bbolt.Tx) error {
		if err := boltcheck.Check(tx); err != nil {
			return &CorruptError{Path: path, Reason: "not a sound bolt file", Err: err}
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketKey) == nil {
			return &CorruptError{Path: path, Reason: "not an etcd or accord key-value file (no meta or key bucket)"}
		}
		raw := meta.Get(metaStorageVersion)
		if raw == nil {
			return nil
		}
		v, err := schema.ParseVersion(raw)
		if err != nil {
			return nil // etcd takes an unparsable storageVersion as absent
		}
		if v.Major != 3 || v.Minor < minStorageMinor || v.Minor > maxStorageMinor {
			return fmt.Errorf("%w: storage version %s: this build reads etcd storage versions 3.%d to 3.%d", ErrUnsupported, v, minStorageMinor, maxStorageMinor)
		}
		return nil
	})
}

// resetForNewCluster makes a restored kv.db the state of a new one-member
// cluster at raft index 1: its consistent index is 1 (so every entry of the
// new log applies), and the alarms and member attributes of the cluster it
// came from (accord's, and an etcd file's members) are dropped.
func resetForNewCluster(path string, bo *backendOptions) error {
	db, err := openKVBolt(path, bo)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := initBuckets(tx, bo); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketAlarm, bucketMembers} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		// An etcd file's membership, emptied as etcdutl's restore empties
		// it (TrimMembershipFromBackend): the new cluster is not that one.
		for _, name := range []string{schema.BucketMembers, schema.BucketMembersRemoved} {
			if b := tx.Bucket([]byte(name)); b != nil {
				if err := tx.DeleteBucket([]byte(name)); err != nil {
					return err
				}
				if _, err := tx.CreateBucket([]byte(name)); err != nil {
					return err
				}
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaConsistentIndex, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		return meta.Put(metaTerm, binary.BigEndian.AppendUint64(nil, 1))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// fillLegacy writes an ACCORDSNAP state into a new kv.db at raft index
// index (of term).
func fillLegacy(tx *bbolt.Tx, st *snapState, index, term uint64) error {
	keys := tx.Bucket(bucketKey)
	var k [schema.TombstoneKeyLen]byte
	for i := range st.view.keys {
		h := &st.view.keys[i]
		for j := range h.vs {
			v := &h.vs[j]
			// A record of its own: bbolt keeps the value until commit.
			var rec []byte
			if v.tomb {
				rec = appendKVRecord(nil, h.key, nil)
			} else {
				rec = appendKVRecord(nil, h.key, &KeyValue{CreateRevision: v.create, ModRevision: v.rev, Version: v.ver, Value: v.value, Lease: LeaseID(v.lease)})
			}
			if err := keys.Put(appendRevKey(k[:0], revision{main: v.rev, sub: v.sub, tomb: v.tomb}), rec); err != nil {
				return err
			}
		}
	}
	leases := tx.Bucket(bucketLease)
	for _, l := range st.leases {
		if err := leases.Put(leaseKey(l.id), appendLeaseRecord(nil, leaseRecord{id: l.id, ttlMillis: l.ttl.Milliseconds()})); err != nil {
			return err
		}
	}
	members := tx.Bucket(bucketMembers)
	for _, m := range st.members {
		if err := members.Put([]byte(m.id), encodeMemberAttrs(m.attrs)); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	puts := []struct{ k, v []byte }{
		{metaConsistentIndex, binary.BigEndian.AppendUint64(nil, index)},
		{metaTerm, binary.BigEndian.AppendUint64(nil, term)},
	}
	if st.view.compactRev > 0 {
		c := appendRevKey(nil, revision{main: st.view.compactRev})
		puts = append(puts, struct{ k, v []byte }{metaScheduledCompact, c}, struct{ k, v []byte }{metaFinishedCompact, c})
	}
	for _, p := range puts {
		if err := meta.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}
