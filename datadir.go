package accord

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/accordkv/accord/internal/fsutil"
	"github.com/accordkv/accord/internal/raftlog"
	"github.com/accordkv/accord/internal/wire"
)

// The data directory holds:
//
//	accord.manifest  node ID, cluster name, format version, whether raft state was created
//	raft.db          raft's stable store: current term and vote (bbolt, via raft-boltdb)
//	raft-log/        the raft log: segment files of internal/raftlog
//	kv.db            the keyspace, leases, alarms, member attributes, and the
//	                 index of the last raft entry they include (bbolt, etcd's layout; backend.go)
//	snapshots/       raft's snapshot metadata; state.bin is a marker: the data is kv.db (snapshot.go)
//
// Format 1 kept the raft log in raft.db too; Open moves it to raft-log/
// (migrateLog) and records format 2. Format 2 kept the keyspace in memory,
// with whole copies in snapshots/ (ACCORDSNAP); Open builds kv.db from the
// newest one and records format 3 (openKV). Each step can be interrupted
// and is finished by the next Open.
//
// Open checks all of it before raft sees any of it, because raft's own
// reactions to damage are silent or fatal: it skips a snapshot whose
// metadata does not parse, falls back to an older snapshot when the newest
// fails its checksum, starts empty when raft.db is gone, and panics in a
// background goroutine on a log entry it cannot read. Each of those would
// be a silent start with fewer acknowledged writes, or a crash loop.

const (
	manifestName   = "accord.manifest"
	raftDBName     = "raft.db"
	raftLogDir     = "raft-log"
	snapshotsDir   = "snapshots"
	formatVersion  = 3
	boltOpenTimout = time.Second
)

// keyCurrentTerm is raft's stable-store key for the current term.
var keyCurrentTerm = []byte("CurrentTerm")

type manifest struct {
	Format      int       `json:"format"`
	NodeID      string    `json:"node_id"`
	ClusterName string    `json:"cluster_name"`
	Created     time.Time `json:"created"`
	// Initialized is set once raft state has been created in the
	// directory. From then on a missing or empty raft.db is damage, not a
	// fresh start.
	Initialized bool `json:"initialized"`
}

func newNodeID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

func readManifest(dir string) (*manifest, error) {
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &CorruptError{Path: path, Reason: "manifest does not parse", Err: err}
	}
	if m.Format < 1 || m.NodeID == "" || m.ClusterName == "" {
		return nil, &CorruptError{Path: path, Reason: "manifest is incomplete"}
	}
	return &m, nil
}

func writeManifest(dir string, m *manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, manifestName), append(b, '\n'))
}

func createManifest(dir string, o *Options) (*manifest, error) {
	m := &manifest{Format: formatVersion, NodeID: o.NodeID, ClusterName: o.ClusterName, Created: time.Now().UTC(), Initialized: true}
	if m.NodeID == "" {
		m.NodeID = newNodeID()
	}
	return m, writeManifest(dir, m)
}

func writeFileAtomic(path string, data []byte) error {
	return fsutil.WriteFileAtomic(path, data, true)
}

func syncDir(dir string) error { return fsutil.SyncDir(dir) }

// cleanDir removes what a failed Restore wrote.
func cleanDir(dir string) {
	for _, name := range []string{manifestName, manifestName + ".tmp", raftDBName, raftLogDir, raftLogDir + ".tmp", snapshotsDir, kvDBName, kvDBName + kvDBTmpSuffix, kvDBInstallName, kvDBInstallName + kvDBTmpSuffix} {
		os.RemoveAll(filepath.Join(dir, name))
	}
}

// localAddress is the raft address a node without a running listener
// records for itself (Restore, and a lone node on the in-memory transport):
// its advertised peer address when configured, else its ID. A ready leader
// corrects its own address in the configuration if it differs from the
// one it listens on (see becomeReady).
func localAddress(o *Options, nodeID string) raft.ServerAddress {
	if o.AdvertisePeerAddr != "" {
		return raft.ServerAddress(o.AdvertisePeerAddr)
	}
	return raft.ServerAddress(nodeID)
}

func nullHCLog() hclog.Logger { return hclog.NewNullLogger() }

// openBolt opens raft.db, turning bbolt's panics on damaged files into
// errors. NoFreelistSync with the map freelist: the freelist is rebuilt on
// open instead of being written on every commit, which saves a page write
// per commit on the hot path.
func openBolt(path string, o *Options) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Reason: "bolt database is damaged", Err: fmt.Errorf("%v", p)}
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path:   path,
		NoSync: o.UnsafeNoFsync,
		BoltOptions: &bbolt.Options{
			Timeout:        boltOpenTimout,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked by another Store (in this or another process)", ErrInUse, path)
	}
	if err != nil {
		return nil, &CorruptError{Path: path, Reason: "cannot open bolt database", Err: err}
	}
	return store, nil
}

// boltState is what checkBolt learns about raft.db.
type boltState struct {
	term    uint64 // raft's current term
	hasLogs bool   // it still holds log entries (format 1, or a migration not finished)
}

// checkBolt checks raft.db read-only, before raft-boltdb opens it for
// writing (which commits a transaction, changing the file even if Open then
// refuses it): both meta pages, every page that holds data, the current
// term, and with checkEntries the raft log it holds (format 1: checkLog).
//
// Not tx.Check: it runs in a goroutine of its own, where bbolt's assertions
// on a damaged page panic beyond any recover and take the process down.
// Here a damaged page panics (or, with SetPanicOnFault, faults) on our
// goroutine and becomes an ErrCorrupt.
func checkBolt(path string, snap *snapInfo, initialized, checkEntries bool) (st boltState, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Reason: "bolt database is damaged", Err: fmt.Errorf("%v", p)}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if err := checkBoltPages(path); err != nil {
		return st, err
	}
	db, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimout}})
	if err != nil {
		return st, &CorruptError{Path: path, Reason: "cannot open bolt database", Err: err}
	}
	defer db.Close()
	if st.term, err = readTerm(path, db); err != nil {
		return st, err
	}
	last, err := db.LastIndex()
	if err != nil {
		return st, &CorruptError{Path: path, Reason: "cannot read last log index", Err: err}
	}
	st.hasLogs = last > 0
	if checkEntries {
		// Before they are moved; the configuration is read again from
		// raft-log/ afterwards.
		_, err = checkLog(path, db, st.term, snap, initialized)
	}
	return st, err
}

func readTerm(path string, db *raftboltdb.BoltStore) (uint64, error) {
	term, err := db.GetUint64(keyCurrentTerm)
	if err != nil && err.Error() != "not found" && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, &CorruptError{Path: path, Reason: "cannot read current term", Err: err}
	}
	return term, nil
}

// openRaftState checks the raft state of dir, raft.db (stable store, read
// only) and raft-log/ (log), and opens the log. A format-1 directory's log
// is moved out of raft.db first. It returns the latest configuration in the
// log, if any, and what it learnt of raft.db, for openStable. Nothing is
// changed in a directory it refuses, except that a torn tail of the log
// (the last batch, which a crash cut short, never acknowledged) is zeroed,
// and a suffix delete a crash interrupted is finished. raft.db is not
// opened for writing here: bbolt commits a transaction when raft-boltdb
// opens it, and Open may still refuse the directory for kv.db (openKV).
func openRaftState(dir string, m *manifest, snap *snapInfo, o *Options) (logs *raftlog.Log, conf *raft.Configuration, st boltState, err error) {
	dbPath := filepath.Join(dir, raftDBName)
	logPath := filepath.Join(dir, raftLogDir)
	if fi, err := os.Stat(dbPath); err == nil && fi.Size() > 0 {
		if st, err = checkBolt(dbPath, snap, m.Initialized, m.Format < 2); err != nil {
			return nil, nil, st, err
		}
	} else if m.Initialized {
		reason := "raft.db is missing or empty but this directory had raft state"
		if snap != nil {
			reason = "raft.db is missing or empty next to existing snapshots"
		}
		return nil, nil, st, &CorruptError{Path: dbPath, Reason: reason}
	}
	if m.Format < 2 {
		// Whatever raft-log/ holds is an earlier migration that did not
		// finish (the manifest still says 1): raft.db has every entry.
		if err := migrateLog(dbPath, logPath, st.hasLogs, o); err != nil {
			return nil, nil, st, fmt.Errorf("accord: moving the raft log out of %s: %w", dbPath, err)
		}
		m.Format = 2
		if err := writeManifest(dir, m); err != nil {
			return nil, nil, st, fmt.Errorf("accord: open: %w", err)
		}
		o.Logger.Info("raft log moved to its own directory (data directory format 2)", "from", dbPath, "to", logPath)
	} else if _, err := os.Stat(logPath); err != nil && m.Initialized {
		return nil, nil, st, &CorruptError{Path: logPath, Reason: "raft log directory is missing but this directory had raft state", Err: err}
	}
	opened, err := raftlog.Open(logPath, o.raftLogOptions())
	if err != nil {
		return nil, nil, st, logError(logPath, err)
	}
	defer func() {
		if err != nil {
			opened.Close() // logs is nil by now: the return set it
		}
	}()
	logs = opened
	if r := logs.Repaired(); r != nil && r.Deleted {
		o.Logger.Warn("raft log: finished deleting conflicting entries, a delete a crash interrupted", "segment", r.Path, "offset", r.Offset, "bytes", r.Bytes)
	} else if r != nil {
		o.Logger.Warn("raft log: zeroed the torn tail of a write a crash cut short (its last batch, never acknowledged)", "segment", r.Path, "offset", r.Offset, "bytes", r.Bytes, "entries", r.Entries)
	}
	if conf, err = checkLog(logPath, logs, st.term, snap, m.Initialized); err != nil {
		return nil, nil, st, err
	}
	return logs, conf, st, nil
}

// openStable opens raft.db (checked by openRaftState) for raft, removing
// the log entries a format-1 directory kept there once they are in
// raft-log/.
func openStable(dir string, st boltState, o *Options) (*raftboltdb.BoltStore, error) {
	dbPath := filepath.Join(dir, raftDBName)
	stable, err := openBolt(dbPath, o)
	if err != nil {
		return nil, err
	}
	if st.hasLogs {
		// Format 1's entries, now in raft-log/.
		first, ferr := stable.FirstIndex()
		last, lerr := stable.LastIndex()
		if err = errors.Join(ferr, lerr); err == nil {
			err = stable.DeleteRange(first, last)
		}
		if err != nil {
			stable.Close()
			return nil, fmt.Errorf("accord: removing moved log entries from %s: %w", dbPath, err)
		}
	}
	return stable, nil
}

// logError turns raftlog's damage reports into ErrCorrupt.
func logError(path string, err error) error {
	var ce *raftlog.CorruptError
	if errors.As(err, &ce) {
		reason := ce.Reason
		if ce.Offset >= 0 {
			reason = fmt.Sprintf("%s (offset %d)", ce.Reason, ce.Offset)
		}
		return &CorruptError{Path: ce.Path, Reason: reason}
	}
	return &CorruptError{Path: path, Reason: "raft log unreadable", Err: err}
}

// migrateLog copies the raft log of a format-1 raft.db (checked already)
// into a new raft-log/ directory: built as raft-log.tmp, synced, then
// renamed, so raft-log/ is complete whenever it exists. raft.db keeps its
// entries until the manifest says format 2.
func migrateLog(dbPath, logPath string, hasLogs bool, o *Options) error {
	tmp := logPath + ".tmp"
	for _, p := range []string{tmp, logPath} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	wal, err := raftlog.Open(tmp, o.raftLogOptions())
	if err != nil {
		return err
	}
	if hasLogs {
		err = copyLog(dbPath, wal)
	}
	if cerr := wal.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, logPath)
	}
	if err == nil && !o.UnsafeNoFsync {
		err = syncDir(filepath.Dir(logPath))
	}
	return err
}

func copyLog(dbPath string, wal *raftlog.Log) error {
	db, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimout}})
	if err != nil {
		return err
	}
	defer db.Close()
	first, err := db.FirstIndex()
	if err != nil {
		return err
	}
	last, err := db.LastIndex()
	if err != nil {
		return err
	}
	const batch = 256
	var pending []*raft.Log
	flush := func() error {
		err := wal.StoreLogs(pending)
		pending = pending[:0]
		return err
	}
	for i := first; i <= last && last > 0; i++ {
		l := new(raft.Log)
		if err := db.GetLog(i, l); errors.Is(err, raft.ErrLogNotFound) {
			// The hole below an installed snapshot (checkLog allowed it).
			if err := flush(); err != nil {
				return err
			}
			continue
		} else if err != nil {
			return err
		}
		pending = append(pending, l)
		if len(pending) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func checkBoltPages(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimout})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s is locked by another Store (in this or another process)", ErrInUse, path)
	}
	if err != nil {
		return &CorruptError{Path: path, Reason: "cannot open bolt database", Err: err}
	}
	defer db.Close()
	if err := checkMetaPages(path, db.Info().PageSize); err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		if err := tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return checkBucket(b) }); err != nil {
			return &CorruptError{Path: path, Reason: "bolt consistency check failed", Err: err}
		}
		return nil
	})
}

// checkMetaPages refuses raft.db if either bolt meta page fails its
// checksum. bbolt silently uses the other one, which may hold the state
// before the last transaction: a start without the last acknowledged log
// entries. (A meta page torn by a crash mid-commit is refused too: that
// transaction was never acknowledged, but the two cannot be told apart.)
func checkMetaPages(path string, pageSize int) error {
	b := make([]byte, 2*pageSize)
	f, err := os.Open(path)
	if err != nil {
		return &CorruptError{Path: path, Reason: "bolt meta pages unreadable", Err: err}
	}
	defer f.Close()
	if _, err := io.ReadFull(f, b); err != nil {
		return &CorruptError{Path: path, Reason: "bolt meta pages unreadable", Err: err}
	}
	// A meta page: 16-byte page header, then magic, version, ... and at 56
	// the FNV-64a checksum of the 56 bytes before it (bbolt's common.Meta).
	for i := range 2 {
		m := b[i*pageSize+16:]
		h := fnv.New64a()
		h.Write(m[:56])
		if binary.NativeEndian.Uint32(m) != 0xED0CDAED || binary.NativeEndian.Uint32(m[4:]) != 2 || binary.NativeEndian.Uint64(m[56:]) != h.Sum64() {
			return &CorruptError{Path: path, Reason: fmt.Sprintf("bolt meta page %d is damaged (bbolt would fall back to the state before the last transaction)", i)}
		}
	}
	return nil
}

// checkBucket walks every key of b and its sub-buckets, checking their order.
func checkBucket(b *bbolt.Bucket) error {
	var prev []byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("key %x out of order after %x", k, prev)
		}
		prev = k
		if v != nil {
			continue
		}
		if sub := b.Bucket(k); sub != nil {
			if err := checkBucket(sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapInfo is what checkSnapshots learns about the newest snapshot.
type snapInfo struct {
	meta    raft.SnapshotMeta
	dir     string
	kind    int  // stateMarker, stateBolt or stateLegacy (snapshot.go)
	missing bool // state.bin is missing: moved into kv.db by an interrupted restore
	stale   bool // state.bin is a marker, meta.json still describes the data it replaced
}

// snapshotNameOrder reads the term and index from a snapshot directory
// name as raft's file snapshot store makes it: term-index-milliseconds.
func snapshotNameOrder(name string) (raft.SnapshotMeta, bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 {
		return raft.SnapshotMeta{}, false
	}
	var n [3]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return raft.SnapshotMeta{}, false
		}
		n[i] = v
	}
	return raft.SnapshotMeta{ID: name, Term: n[0], Index: n[1]}, n[1] > 0
}

// checkSnapshots verifies every snapshot's metadata and the newest one's
// data checksum. It returns the newest snapshot, or nil if there is none.
// An older snapshot with a file missing is what a crash during raft's reap
// leaves: its remains are removed. The newest with a file missing is
// refused.
func checkSnapshots(dir string) (*snapInfo, error) {
	root := filepath.Join(dir, snapshotsDir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var all []*snapInfo
	var crcs = map[string][]byte{}
	// Snapshots with a file missing: damage if newest, or a reap that a
	// crash interrupted (raft removes an old snapshot's files one by one)
	// if a newer complete snapshot exists.
	type partial struct {
		dir   string
		order raft.SnapshotMeta // term and index from the directory name
		err   error
		meta  *raft.SnapshotMeta // the metadata, when only state.bin is missing
	}
	var partials []partial
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue // .tmp: a snapshot that was never completed; raft ignores it (removeSnapshotTemps removes it)
		}
		sd := filepath.Join(root, e.Name())
		b, err := os.ReadFile(filepath.Join(sd, "meta.json"))
		if errors.Is(err, fs.ErrNotExist) {
			if m, ok := snapshotNameOrder(e.Name()); ok {
				partials = append(partials, partial{sd, m, &CorruptError{Path: sd, Reason: "snapshot metadata unreadable", Err: err}, nil})
				continue
			}
		}
		if err != nil {
			return nil, &CorruptError{Path: sd, Reason: "snapshot metadata unreadable", Err: err}
		}
		var fm raft.SnapshotMeta
		var crc struct{ CRC []byte }
		if err := json.Unmarshal(b, &fm); err != nil || json.Unmarshal(b, &crc) != nil || fm.ID != e.Name() || fm.Index == 0 {
			return nil, &CorruptError{Path: filepath.Join(sd, "meta.json"), Reason: "snapshot metadata is garbage", Err: err}
		}
		fi, err := os.Stat(filepath.Join(sd, "state.bin"))
		if errors.Is(err, fs.ErrNotExist) {
			partials = append(partials, partial{sd, fm, &CorruptError{Path: sd, Reason: "snapshot data missing", Err: err}, &fm})
			continue
		}
		if err != nil {
			return nil, &CorruptError{Path: sd, Reason: "snapshot data missing", Err: err}
		}
		if fi.Size() != fm.Size {
			if head, _ := readHead(filepath.Join(sd, "state.bin"), 64); func() bool { _, ok := parseLiveMarker(head); return ok }() {
				// A marker written over the data of a restored snapshot
				// before its metadata (rewriteAsMarker): openKV rewrites
				// both once kv.db is found to hold the snapshot.
				all = append(all, &snapInfo{meta: fm, dir: sd, kind: stateMarker, stale: true})
				continue
			}
			return nil, &CorruptError{Path: filepath.Join(sd, "state.bin"), Reason: fmt.Sprintf("snapshot data is %d bytes, metadata says %d", fi.Size(), fm.Size)}
		}
		crcs[fm.ID] = crc.CRC
		all = append(all, &snapInfo{meta: fm, dir: sd})
	}
	// raft's order: newest term, then index, then ID.
	newer := func(a, b raft.SnapshotMeta) bool {
		if a.Term != b.Term {
			return a.Term > b.Term
		}
		if a.Index != b.Index {
			return a.Index > b.Index
		}
		return a.ID > b.ID
	}
	sort.Slice(all, func(i, j int) bool { return newer(all[i].meta, all[j].meta) })
	for _, p := range partials {
		if len(all) == 0 || !newer(all[0].meta, p.order) {
			if p.meta != nil && (len(all) == 0 || newer(*p.meta, all[0].meta)) {
				// The newest snapshot's data was moved into kv.db by a
				// restore that a crash interrupted before it wrote the
				// marker: openKV decides from kv.db's index.
				all = append([]*snapInfo{{meta: *p.meta, dir: p.dir, missing: true}}, all...)
				continue
			}
			return nil, p.err
		}
		// Finish the interrupted reap, so that it is not met again.
		if err := os.RemoveAll(p.dir); err != nil {
			return nil, fmt.Errorf("accord: removing the remains of an old snapshot: %w", err)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	newest := all[0]
	if newest.missing || newest.stale {
		return newest, nil
	}
	f, err := os.Open(filepath.Join(newest.dir, "state.bin"))
	if err != nil {
		return nil, &CorruptError{Path: newest.dir, Reason: "snapshot data unreadable", Err: err}
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	if _, err := io.Copy(h, f); err != nil {
		return nil, &CorruptError{Path: newest.dir, Reason: "snapshot data unreadable", Err: err}
	}
	if !bytes.Equal(h.Sum(nil), crcs[newest.meta.ID]) {
		return nil, &CorruptError{Path: filepath.Join(newest.dir, "state.bin"), Reason: "snapshot data fails its checksum"}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	head, err := readHead(f.Name(), 64)
	if err != nil {
		return nil, &CorruptError{Path: newest.dir, Reason: "snapshot data unreadable", Err: err}
	}
	newest.kind = stateKind(head)
	statePath := filepath.Join(newest.dir, "state.bin")
	switch newest.kind {
	case stateMarker:
		if _, ok := parseLiveMarker(head); !ok {
			return nil, &CorruptError{Path: statePath, Reason: "snapshot marker is invalid"}
		}
	case stateLegacy:
		if _, err := readSnapshot(f); err != nil {
			return nil, &CorruptError{Path: statePath, Reason: "snapshot content is invalid", Err: err}
		}
	case stateBolt:
		if err := verifySnapshotFile(statePath); err != nil {
			return nil, &CorruptError{Path: statePath, Reason: "snapshot content is invalid", Err: err}
		}
	default:
		return nil, &CorruptError{Path: statePath, Reason: "snapshot content is of no known kind"}
	}
	return newest, nil
}

// checkLog verifies that the raft log is readable entry by entry, that it
// joins up with the newest snapshot, and that it is not missing or emptied
// next to a directory that had state. It returns the latest cluster
// configuration found in the log, if any.
func checkLog(path string, logs raft.LogStore, term uint64, snap *snapInfo, initialized bool) (conf *raft.Configuration, err error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return nil, &CorruptError{Path: path, Reason: "cannot read first log index", Err: err}
	}
	last, err := logs.LastIndex()
	if err != nil {
		return nil, &CorruptError{Path: path, Reason: "cannot read last log index", Err: err}
	}
	if initialized && term == 0 && last == 0 {
		reason := "raft state is empty but this directory had raft state"
		if snap != nil {
			reason = "raft state is empty next to existing snapshots"
		}
		return nil, &CorruptError{Path: path, Reason: reason}
	}
	if last == 0 {
		return nil, nil
	}
	var snapIdx uint64
	if snap != nil {
		snapIdx = snap.meta.Index
	}
	if first > snapIdx+1 {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log starts at index %d but the newest snapshot covers only up to %d: entries are missing", first, snapIdx)}
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			if i <= snapIdx && errors.Is(err, raft.ErrLogNotFound) {
				// raft installs a leader's snapshot without deleting the
				// trailing entries below it and appends after its index:
				// the gap up to the snapshot's index is covered by it.
				i = snapIdx
				continue
			}
			var ce *raftlog.CorruptError
			if errors.As(err, &ce) {
				return nil, logError(path, err)
			}
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log entry %d unreadable", i), Err: err}
		}
		if l.Index != i {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log entry %d claims index %d", i, l.Index)}
		}
		if l.Type == raft.LogConfiguration {
			c, err := decodeConfiguration(l.Data)
			if err != nil {
				return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log entry %d: bad configuration", i), Err: err}
			}
			// As raft does on restart: entries the newest snapshot covers
			// do not override its configuration.
			if i > snapIdx {
				conf = &c
			}
		}
		// Every command accord writes carries its checksum (propose and the
		// leader's no-op both use logEntrySum); raft's own entries carry
		// none. A missing, extra or wrong sum is damage.
		if l.Type == raft.LogCommand && !bytes.Equal(l.Extensions, logEntrySum(l.Data)) ||
			l.Type != raft.LogCommand && len(l.Extensions) > 0 {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log entry %d fails its checksum", i)}
		}
		if l.Type == raft.LogCommand {
			if _, err := wire.DecodeCommand(l.Data); err != nil && !errors.Is(err, wire.ErrUnknownCommand) {
				return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("log entry %d does not decode", i), Err: err}
			}
		}
	}
	return conf, nil
}

// logSumCRC32C tags a log entry's Extensions as a CRC-32C of its Data.
// bbolt has no checksums on data pages, so without it a flipped byte in a
// stored command would be applied as a different write.
const logSumCRC32C = 1

// logEntrySum is the Extensions stored with each command.
func logEntrySum(data []byte) []byte {
	return binary.BigEndian.AppendUint32([]byte{logSumCRC32C}, crc32.Checksum(data, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decodeConfiguration is raft.DecodeConfiguration without its panic.
func decodeConfiguration(b []byte) (c raft.Configuration, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return raft.DecodeConfiguration(b), nil
}

// diskGuard keeps writes off a full disk (Options.MinFreeDiskBytes). It
// checks the file system of the data directory every diskCheckInterval,
// and again, at most every diskRecheckInterval, on a write refused for
// lack of space, so that writes resume promptly once space is back.
//
// Between two checks the disk can still fill (another program writes
// fast), and raft's own appends then fail with ENOSPC: hashicorp raft steps
// a leader down on a failed append, and the new term's first entry fails
// again, an election per append for as long as the disk stays full. So the
// guard also keeps a reserve: a preallocated file (diskReserveName, Linux,
// diskReserveSize) that it deletes the moment the raft store reports no
// space (noSpace). Client writes are refused from then on, and raft's own
// small entries (no-ops, terms, votes, revokes, compactions) have the
// reserve's blocks. The reserve is allocated again once the free space is
// above MinFreeDiskBytes plus its size; until then writes stay refused.
type diskGuard struct {
	dir  string
	min  uint64 // 0: off
	log  *slog.Logger
	free atomic.Pointer[func(dir string) (uint64, bool)] // freeDiskBytes; tests swap it

	full      atomic.Bool
	lastCheck atomic.Int64 // unix nanos of the last check
	noSpaceAt atomic.Int64 // unix nanos of the last write the raft store failed for lack of space

	mu        sync.Mutex // serialises reserve changes; guards the fields below
	reserved  bool       // the reserve file is allocated
	released  bool       // noSpace deleted it; check must allocate it again
	noReserve bool       // preallocation is not available here
}

const (
	diskCheckInterval   = time.Second
	diskRecheckInterval = 100 * time.Millisecond
	diskReserveName     = "disk.reserve"
	diskReserveSize     = 4 << 20
)

func newDiskGuard(dir string, minFree int64, log *slog.Logger) *diskGuard {
	g := &diskGuard{dir: dir, log: log}
	f := freeDiskBytes
	g.free.Store(&f)
	if minFree > 0 {
		g.min = uint64(minFree)
		g.mu.Lock()
		g.released = !g.reserve() // not allocated: check tries again, writes wait
		g.mu.Unlock()
	}
	g.check()
	return g
}

// reserve allocates the reserve file if it is not there yet. Called with
// mu held. It reports whether the reserve is in place; where preallocation
// is not available there is none, and that counts as in place.
func (g *diskGuard) reserve() bool {
	if g.reserved || g.noReserve {
		return true
	}
	path := filepath.Join(g.dir, diskReserveName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		g.log.Warn("disk reserve not allocated", "path", path, "err", err)
		return false
	}
	err = allocate(f, diskReserveSize)
	f.Close()
	switch {
	case errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EOPNOTSUPP):
		os.Remove(path)
		g.noReserve = true
		return true
	case err != nil:
		os.Remove(path)
		return false
	}
	g.reserved, g.released = true, false
	return true
}

// noSpace is called when the raft store failed a write for lack of space:
// writes are refused at once, and the reserve is freed for raft's own.
func (g *diskGuard) noSpace(err error) {
	if g.min == 0 {
		return
	}
	now := time.Now().UnixNano()
	g.noSpaceAt.Store(now)
	g.lastCheck.Store(now)
	wasFull := g.full.Swap(true)
	g.mu.Lock()
	freed := false
	if g.reserved {
		freed = os.Remove(filepath.Join(g.dir, diskReserveName)) == nil
		g.reserved = false
	}
	g.released = true
	g.mu.Unlock()
	if !wasFull || freed {
		g.log.Error("disk full: the raft log could not be written; refusing writes until space is freed", "err", err, "reserve_freed", freed)
	}
}

// noSpaceSince reports whether the raft store failed a write for lack of
// space at or after t.
func (g *diskGuard) noSpaceSince(t time.Time) bool {
	at := g.noSpaceAt.Load()
	return at != 0 && at >= t.UnixNano()
}

// check reads the free space and updates full, logging transitions.
func (g *diskGuard) check() {
	if g.min == 0 {
		return
	}
	g.lastCheck.Store(time.Now().UnixNano())
	free, ok := (*g.free.Load())(g.dir)
	if !ok {
		return
	}
	full := free < g.min
	if !full {
		g.mu.Lock()
		if g.released && !g.noReserve && (free < g.min+diskReserveSize || !g.reserve()) {
			full = true // space for the reserve first
		}
		g.released = g.released && full
		g.mu.Unlock()
	}
	if g.full.Swap(full) != full {
		if full {
			g.log.Error("disk almost full: refusing writes until space is freed", "free_bytes", free, "min_free_bytes", g.min)
		} else {
			g.log.Info("disk space is back: accepting writes again", "free_bytes", free)
		}
	}
}

func (g *diskGuard) loop(stop <-chan struct{}) {
	if g.min == 0 {
		return
	}
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

// refuse returns ErrNoSpace for a command that adds data while the disk is
// full. Commands that free space or keep the cluster running (revoke,
// expiry, compaction, no-ops, member attributes) pass: they are small and
// MinFreeDiskBytes leaves room for them.
func (g *diskGuard) refuse(t wire.CmdType) error {
	if t != wire.CmdTxn && t != wire.CmdLeaseGrant {
		return nil
	}
	if !g.full.Load() {
		return nil
	}
	if time.Since(time.Unix(0, g.lastCheck.Load())) >= diskRecheckInterval {
		g.check()
		if !g.full.Load() {
			return nil
		}
	}
	return ErrNoSpace
}

// raftStore is the raft log and stable store of a data directory, as raft
// sees them: the log in raft-log/ (internal/raftlog), term and vote in
// raft.db (bolt). It adds three things to them:
//
//   - For a directory without state yet (a joining node), it marks the
//     directory initialized in its manifest before raft's first write (a
//     log entry, a term, a vote) reaches the disk: from then on the node
//     may have acknowledged entries or voted, and lost raft state must be
//     refused, not mistaken for a fresh start. If marking fails, the write
//     fails.
//   - It makes closing safe. raft's heartbeat fast path runs on the
//     transport's connection goroutines, which raft.Shutdown does not wait
//     for, and it panics if saving a newer term fails ("failed to save
//     current term"). close waits for calls in progress; afterwards writes
//     are dropped and reads fail. Only a store that is shutting down sees
//     that: its raft has stopped, and a dropped term update can only make
//     it forget a term in which it neither voted nor accepted entries.
//   - A write that fails for lack of space tells the disk guard at once
//     (diskGuard.noSpace), which frees its reserve for raft's own writes.
//
// It does not implement raft.MonotonicLogStore, on purpose. raftlog keeps
// a gap between segments (the entries below a snapshot a follower
// installed, which raft never reads again), so raft's default of leaving
// the old log in place is safe. A monotonic store would make raft delete
// the whole log after every snapshot install, and at every Open that
// restores a snapshot; that is for stores that cannot hold a gap (raft-wal).
type raftStore struct {
	logs    *raftlog.Log
	stable  *raftboltdb.BoltStore
	mark    func() error // nil once the directory is initialized
	noSpace func(error)  // told of a write that failed for lack of space

	failLogs atomic.Pointer[error] // tests: StoreLogs fails with this error

	mu     sync.RWMutex // held for reading by every call, for writing by close
	closed bool
	initMu sync.Mutex // serialises the first mark
	inited atomic.Bool
}

var errStoreClosed = errors.New("accord: raft store closed")

func newRaftStore(logs *raftlog.Log, stable *raftboltdb.BoltStore, mark func() error, noSpace func(error)) *raftStore {
	rs := &raftStore{logs: logs, stable: stable, mark: mark, noSpace: noSpace}
	rs.inited.Store(mark == nil)
	return rs
}

// close waits for calls in progress and closes both stores.
func (rs *raftStore) close() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil
	}
	rs.closed = true
	return errors.Join(rs.logs.Close(), rs.stable.Close())
}

// write runs f unless the store is closed, after marking the directory
// initialized if needed: if f creates state. raft's NewRaft stores the
// term it starts with, 0 on a new node, which is no state yet: a node
// closed before it heard of a term must not be refused on its next Open.
func (rs *raftStore) write(creates bool, f func() error) error {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	if rs.closed {
		return nil
	}
	if creates && !rs.inited.Load() {
		rs.initMu.Lock()
		if !rs.inited.Load() {
			if err := rs.mark(); err != nil {
				rs.initMu.Unlock()
				return fmt.Errorf("accord: marking the data directory initialized: %w", err)
			}
			rs.inited.Store(true)
		}
		rs.initMu.Unlock()
	}
	err := f()
	if err != nil && rs.noSpace != nil && isNoSpace(err) {
		rs.noSpace(err)
	}
	return err
}

func (rs *raftStore) read(f func() error) error {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	if rs.closed {
		return errStoreClosed
	}
	return f()
}

func (rs *raftStore) StoreLog(l *raft.Log) error {
	return rs.StoreLogs([]*raft.Log{l})
}

func (rs *raftStore) StoreLogs(ls []*raft.Log) error {
	return rs.write(len(ls) > 0, func() error {
		if e := rs.failLogs.Load(); e != nil {
			return *e
		}
		return rs.logs.StoreLogs(ls)
	})
}

func (rs *raftStore) DeleteRange(min, max uint64) error {
	return rs.write(false, func() error { return rs.logs.DeleteRange(min, max) })
}

func (rs *raftStore) Set(k, v []byte) error {
	return rs.write(len(v) > 0, func() error { return rs.stable.Set(k, v) })
}

func (rs *raftStore) SetUint64(k []byte, v uint64) error {
	return rs.write(v != 0, func() error { return rs.stable.SetUint64(k, v) })
}

func (rs *raftStore) FirstIndex() (i uint64, err error) {
	err = rs.read(func() (e error) { i, e = rs.logs.FirstIndex(); return })
	return i, err
}

func (rs *raftStore) LastIndex() (i uint64, err error) {
	err = rs.read(func() (e error) { i, e = rs.logs.LastIndex(); return })
	return i, err
}

func (rs *raftStore) GetLog(idx uint64, l *raft.Log) error {
	return rs.read(func() error { return rs.logs.GetLog(idx, l) })
}

func (rs *raftStore) Get(k []byte) (v []byte, err error) {
	err = rs.read(func() (e error) { v, e = rs.stable.Get(k); return })
	return v, err
}

func (rs *raftStore) GetUint64(k []byte) (v uint64, err error) {
	err = rs.read(func() (e error) { v, e = rs.stable.GetUint64(k); return })
	return v, err
}

// openKV checks and opens kv.db against the newest snapshot, finishing
// whatever a crash interrupted: a snapshot swap (kv.db.install), a
// migration from format 2 (kv.db built from the newest ACCORDSNAP
// snapshot), a restore whose marker was not yet written. The rule it keeps:
// kv.db must hold every entry up to the newest snapshot, because raft
// replays only the entries after it, and its log may have been trimmed up
// to it. kv.db may lag behind the snapshot (or be missing) only if the raft
// log still holds every entry in between (covers): Open then applies them
// before raft starts (replayToSnapshot). Otherwise it is refused. Without a
// snapshot, a missing kv.db is created empty: raft replays the whole log.
func openKV(dir string, snap *snapInfo, ks *keyspace, bo *backendOptions, covers func(from, to uint64) error) (*kvState, *backend, error) {
	path := filepath.Join(dir, kvDBName)
	for _, left := range []string{path + kvDBTmpSuffix, path + kvDBDefragSuffix, path + kvDBInstallName[len(kvDBName):] + kvDBTmpSuffix} {
		// A file a crash left half made (the original is intact).
		if err := os.Remove(left); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
	}
	install := filepath.Join(dir, kvDBInstallName)
	if _, err := os.Stat(install); err == nil {
		// A verified snapshot was being swapped in.
		if err := finishInstall(install, bo); err != nil {
			return nil, nil, err
		}
		if err := crashPoint(dir, crashInstallFinished); err != nil {
			return nil, nil, err
		}
		if err := os.Rename(install, path); err != nil {
			return nil, nil, err
		}
		if err := syncDir(dir); err != nil {
			return nil, nil, err
		}
		if err := crashPoint(dir, crashInstallRenamed); err != nil {
			return nil, nil, err
		}
	}
	exists := func() bool { _, err := os.Stat(path); return err == nil }
	var snapIndex uint64
	if snap != nil {
		snapIndex = snap.meta.Index
	}
	if snap != nil && (snap.kind == stateBolt || snap.kind == stateLegacy) {
		// The snapshot holds data: a leader's kv.db that was not restored
		// yet, or a format-2 snapshot. Take it unless kv.db is past it.
		ci := uint64(0)
		if exists() {
			st, err := peekKV(path, bo)
			if err != nil {
				return nil, nil, err
			}
			ci = st
		}
		if !exists() || ci < snapIndex {
			if err := installSnapshotData(dir, snap, bo); err != nil {
				return nil, nil, err
			}
		}
		snap.kind = stateMarker
		snap.stale = true
	}
	if !exists() {
		if snap != nil {
			if err := covers(1, snapIndex); err != nil {
				return nil, nil, &CorruptError{Path: path, Reason: fmt.Sprintf("missing: the newest snapshot (index %d) says the state is kept there, and the raft log cannot rebuild it (%v)", snapIndex, err)}
			}
			bo.log.Warn("kv.db is missing; rebuilding it from the raft log, which holds every entry", "snapshot_index", snapIndex)
		}
		if err := createKVFile(path, bo); err != nil {
			return nil, nil, err
		}
	}
	nks, st, be, err := openKeyspace(path, &ks.mu, bo)
	if err != nil {
		return nil, nil, err
	}
	if st.index < snapIndex {
		if err := covers(st.index+1, snapIndex); err != nil {
			be.close()
			return nil, nil, &CorruptError{Path: path, Reason: fmt.Sprintf("holds raft entries up to %d, older than the newest snapshot (%d), and the raft log does not hold those in between (%v): acknowledged writes would be missing", st.index, snapIndex, err)}
		}
		bo.log.Warn("kv.db is behind the newest snapshot; applying the entries in between from the raft log", "kv_index", st.index, "snapshot_index", snapIndex)
	}
	if snap != nil && (snap.missing || snap.stale) {
		if err := rewriteAsMarker(dir, snap.dir, snapIndex, bo.noSync); err != nil {
			be.close()
			return nil, nil, err
		}
	}
	ks.adopt(nks)
	return st, be, nil
}

// logHolds reports whether the raft log holds every entry from from to to.
func logHolds(logs raft.LogStore, from, to uint64) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return err
	}
	if first == 0 || first > from {
		return fmt.Errorf("it starts at index %d, not %d", first, from)
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

// replayToSnapshot applies the log entries from from to to (the newest
// snapshot's index; all committed) to a kv.db that lags behind them,
// before raft starts: raft replays only the entries after its snapshot.
func replayToSnapshot(f *fsm, logs raft.LogStore, from, to uint64) error {
	const batch = 256
	var pending []*raft.Log
	for i := from; i <= to; i++ {
		l := new(raft.Log)
		if err := logs.GetLog(i, l); err != nil {
			return &CorruptError{Path: raftLogDir, Reason: fmt.Sprintf("log entry %d unreadable while bringing kv.db up to the snapshot", i), Err: err}
		}
		pending = append(pending, l)
		if len(pending) == batch || i == to {
			f.ApplyBatch(pending)
			pending = pending[:0]
		}
	}
	f.log.Info("kv.db brought up to the newest snapshot from the raft log", "from", from, "to", to)
	return nil
}

// removeSnapshotTemps removes the snapshots a crash left incomplete
// (snapshots/<id>.tmp): one this member was taking, or one a leader was
// sending, which is a whole kv.db. raft ignores them and never reaps them,
// so each crash in the middle of a snapshot install would keep a copy of
// the leader's kv.db on disk for good. Called by Open once the directory
// checked out and kv.db is open (so no other process uses it) and before
// raft starts. A failure only leaves the space in use: it is logged.
func removeSnapshotTemps(dir string, log *slog.Logger) {
	root := filepath.Join(dir, snapshotsDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			log.Warn("cannot remove an incomplete snapshot", "dir", e.Name(), "err", err)
		}
	}
}

// peekKV returns the raft index kv.db at path holds.
func peekKV(path string, bo *backendOptions) (uint64, error) {
	db, err := openKVBolt(path, bo)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var ci uint64
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return &CorruptError{Path: path, Reason: "not a key-value file (no meta bucket)"}
		}
		if v := meta.Get(metaConsistentIndex); len(v) == 8 {
			ci = binary.BigEndian.Uint64(v)
		} else if v != nil {
			return &CorruptError{Path: path, Reason: "bad consistent_index"}
		}
		return nil
	})
	return ci, err
}

// installSnapshotData makes kv.db from the data of snapshot snap (already
// verified by checkSnapshots).
func installSnapshotData(dir string, snap *snapInfo, bo *backendOptions) error {
	state := filepath.Join(snap.dir, "state.bin")
	install := filepath.Join(dir, kvDBInstallName)
	switch snap.kind {
	case stateLegacy:
		f, err := os.Open(state)
		if err != nil {
			return err
		}
		st, err := readSnapshot(f)
		f.Close()
		if err != nil {
			return &CorruptError{Path: state, Reason: "snapshot content is invalid", Err: err}
		}
		if err := buildKVFile(install, bo, func(tx *bbolt.Tx) error { return fillLegacy(tx, st, snap.meta.Index, snap.meta.Term) }); err != nil {
			return err
		}
	case stateBolt:
		if err := os.Rename(state, install); err != nil {
			return err
		}
	}
	if err := crashPoint(dir, crashInstallBuilt); err != nil {
		return err
	}
	if err := finishInstall(install, bo); err != nil {
		return err
	}
	if err := crashPoint(dir, crashInstallFinished); err != nil {
		return err
	}
	if err := os.Rename(install, filepath.Join(dir, kvDBName)); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return crashPoint(dir, crashInstallRenamed)
}

// Points in Open's migration and snapshot install where tests stop it, as
// a crash would (crashPoint). Each leaves the directory as the crash
// would; the next Open must finish the work.
const (
	crashInstallBuilt    = "kv.db.install built"       // the snapshot's data is kv.db.install
	crashInstallFinished = "kv.db.install finished"    // ...checked and stamped with this cluster
	crashInstallRenamed  = "kv.db.install renamed"     // ...renamed to kv.db; the snapshot still holds its data
	crashMarkerState     = "snapshot marker state.bin" // the snapshot's state.bin is a marker, its meta.json not yet
	crashMarkerMeta      = "snapshot marker meta.json" // both rewritten; the manifest still says the old format
	crashManifest        = "manifest says format 3"    // the migration is done
)

// testCrashHook, set by tests only, is called at each crash point with the
// data directory; an error it returns stops Open there.
var testCrashHook atomic.Pointer[func(dir, point string) error]

func crashPoint(dir, point string) error {
	if h := testCrashHook.Load(); h != nil {
		return (*h)(dir, point)
	}
	return nil
}
