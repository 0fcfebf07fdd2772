package accord

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/accordkv/accord/internal/schema"
)

// The backend is the keyspace file, kv.db: a bbolt database holding every
// retained version of every key (keyed by revision, as etcd's backend
// is), the leases, the alarms, the members' published attributes and the
// index of the last raft entry applied (etcd's consistent_index). Only an
// index of keys to revisions lives in memory (mvcc.go).
//
// Writes are batched. The FSM appends what it applies to the current
// batch, in memory; a committer goroutine writes batches to bbolt every
// backendBatchInterval, or sooner when a batch grows past
// backendBatchOps, in one bbolt transaction (one fdatasync) that also
// records the raft index the batch reaches. The raft log stays the point of
// durability: after a crash, raft replays the entries after the recorded
// index, and the FSM skips those it already holds (fsm.go), so applying is
// idempotent by index.
//
// Readers find a version by its revision: in the current batch, in the
// batch being committed, or through a shared bbolt read transaction that
// is replaced after each commit. bbolt blocks a commit that must grow its
// memory map while any read transaction is open, so the file is mapped
// with room to spare (initialMmapSize) and a commit that could outgrow the
// mapping first closes the shared transaction, holding readers off until
// it is done (the slow path, etcd's only path).
//
// Locking: the current and committing batches, the shared read
// transaction and the compaction job handed over in a batch are guarded
// by the keyspace's mutex (ks.mu), which every reader holds while it
// reads. The committer takes it only to swap batches and transactions;
// bbolt writes and fsyncs happen outside it. be.mu guards the committer's
// own bookkeeping (flush waiters, the committed index, errors).

const (
	kvDBName             = "kv.db"
	kvDBTmpSuffix        = ".tmp"    // a kv.db being built (restore, migration)
	kvDBDefragSuffix     = ".defrag" // a kv.db being rewritten by Defragment
	backendBatchInterval = 100 * time.Millisecond
	backendBatchOps      = 10000
	// backendMaxPending bounds the bytes applied but not yet committed;
	// past it, the FSM waits for the committer (back-pressure, as etcd's
	// apply waits for its backend).
	backendMaxPending       = 64 << 20
	compactDeletesPerCommit = 10000
	defragTxMaxSize         = 16 << 20
)

var (
	bucketKey     = []byte(schema.BucketKey)
	bucketMeta    = []byte(schema.BucketMeta)
	bucketLease   = []byte(schema.BucketLease)
	bucketAlarm   = []byte(schema.BucketAlarm)
	bucketMembers = []byte("accord_members") // accord's own: published member attributes, flat

	metaConsistentIndex  = []byte(schema.MetaConsistentIndexKey)
	metaTerm             = []byte(schema.MetaTermKey)
	metaScheduledCompact = []byte(schema.MetaScheduledCompactKey)
	metaFinishedCompact  = []byte(schema.MetaFinishedCompactKey)
	metaStorageVersion   = []byte(schema.MetaStorageVersionKey)
	metaCluster          = []byte("accord_cluster") // the cluster name, as the manifest holds it
	metaNode             = []byte("accord_node")    // the ID of the node whose data directory holds the file

	// storageVersion is what etcd 3.6+ reads to decide the schema of a
	// file; accord writes the layout of etcd 3.6 (the newest schema change).
	storageVersion = []byte("3.6.0")
)

// batchOp is a write to a bucket other than "key".
type batchOp struct {
	bucket []byte
	key    []byte
	value  []byte // nil: delete
}

// pendingKV is one version not yet committed.
type pendingKV struct {
	rev revision
	rec []byte // the encoded record
}

// batch is what the FSM applied since the previous batch was handed to the
// committer, in apply order.
type batch struct {
	kvs     []pendingKV // ascending by revision
	ops     []batchOp
	index   uint64 // last raft index applied into this batch (0: none)
	term    uint64
	bytes   int
	compact *compactJob // a compaction applied in this batch (the last one)
	first   time.Time   // when the first write went in
}

func (b *batch) empty() bool {
	return len(b.kvs) == 0 && len(b.ops) == 0 && b.index == 0 && b.compact == nil
}

// find returns the record of revision r in the batch.
func (b *batch) find(r revision) ([]byte, bool) {
	i := sort.Search(len(b.kvs), func(i int) bool { return !b.kvs[i].rev.less(r) })
	if i < len(b.kvs) && b.kvs[i].rev.main == r.main && b.kvs[i].rev.sub == r.sub {
		return b.kvs[i].rec, true
	}
	return nil, false
}

// compactJob deletes from the file the versions a compaction dropped from
// the index: every version with a revision <= rev that keep does not hold.
type compactJob struct {
	rev  int64
	keep map[revision]struct{}
	next []byte // the scan position: first revision key not yet looked at; nil: the start
	done bool
}

type backend struct {
	// unlinked is set (committer goroutine only) when Defragment renamed
	// its copy over kv.db but could not open it: the file in use is then
	// no longer the one at path, and nothing may be committed to it.
	unlinked error

	path     string
	log      *slog.Logger
	guard    *sync.RWMutex // the keyspace's mutex; see the locking note above
	noSync   bool
	mmapSize int
	pageSize int
	bo       *backendOptions

	db *bbolt.DB
	// guarded by *guard
	cur    *batch
	frozen *batch    // being committed; nil when the committer is idle
	rtx    *bbolt.Tx // shared read transaction of the committed state
	rkeys  *bbolt.Bucket

	kick chan struct{} // cap 1: commit now
	stop chan struct{}
	done chan struct{}
	reqs chan func() // work for the committer goroutine (defrag)

	mu        sync.Mutex // guards the fields below
	committed uint64     // raft index the file holds
	waiters   []flushWaiter
	err       error         // the last commit's failure, nil once one succeeds
	idle      chan struct{} // closed and replaced whenever a commit ends
	job       *compactJob   // the compaction the committer is carrying out (committer only)
	streams   sync.WaitGroup
	streamMu  sync.RWMutex // held for reading by each snapshot stream, for writing while defrag swaps files
	started   bool         // start was called (set before the backend is shared)
	closeOnce sync.Once
	closeErr  error
}

type flushWaiter struct {
	index uint64
	ch    chan error
}

func (r revision) less(o revision) bool {
	if r.main != o.main {
		return r.main < o.main
	}
	return r.sub < o.sub
}

// backendOptions configures openBackend.
type backendOptions struct {
	noSync      bool
	clusterName string
	nodeID      string // recorded in the file, and checked ("": neither)
	quota       int64
	log         *slog.Logger
}

// initialMmapSize is how much of the address space kv.db is mapped with:
// twice the quota, at least 1 GiB, so that a commit almost never has to
// grow the map (which would wait for every reader).
func initialMmapSize(quota int64) int {
	const gib = 1 << 30
	return int(min(max(2*quota, gib), 64*gib))
}

func boltOptions(o *backendOptions, readOnly bool) *bbolt.Options {
	return &bbolt.Options{
		Timeout:         boltOpenTimout,
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  false, // the freelist is stored: Open does not walk every page to rebuild it
		InitialMmapSize: initialMmapSize(o.quota),
		NoSync:          o.noSync,
		ReadOnly:        readOnly,
	}
}

// openBolt opens path as a bbolt database, telling damage from a lock held
// by another Store.
func openKVBolt(path string, o *backendOptions) (db *bbolt.DB, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, &CorruptError{Path: path, Reason: "empty file"}
	}
	// bbolt trusts the file's length: a file cut short faults on the first
	// read of a missing page, which can be in Open (the freelist).
	if need, ok := boltHighWaterMark(path); ok && fi.Size() < need {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("file is %d bytes, its meta page says %d: truncated", fi.Size(), need)}
	}
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Reason: "cannot open bolt database", Err: fmt.Errorf("%v", p)}
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	db, err = bbolt.Open(path, 0o600, boltOptions(o, false))
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked by another Store (in this or another process)", ErrInUse, path)
	}
	if err != nil {
		return nil, &CorruptError{Path: path, Reason: "cannot open bolt database", Err: err}
	}
	// The meta page bbolt chose, checked again.
	var need int64
	_ = db.View(func(tx *bbolt.Tx) error { need = tx.Size(); return nil })
	if fi.Size() < need {
		db.Close()
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("file is %d bytes, its meta page says %d: truncated", fi.Size(), need)}
	}
	return db, nil
}

// boltHighWaterMark reads the bolt file's meta pages and returns the size
// the newest valid one says the file has at least (its high water mark);
// ok is false if neither is valid (bbolt.Open then refuses the file).
// bbolt's meta page: a 16-byte page header, then magic, version, page
// size, flags, root bucket (page, sequence), freelist page, high water
// mark, txid, and the FNV-64a checksum of all that.
func boltHighWaterMark(path string) (need int64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var txid uint64
	for off := int64(0); ; {
		m := make([]byte, 16+64)
		if _, err := f.ReadAt(m, off); err != nil {
			return need, ok
		}
		m = m[16:]
		h := fnv.New64a()
		h.Write(m[:56])
		pageSize := int64(binary.NativeEndian.Uint32(m[8:]))
		if binary.NativeEndian.Uint32(m) == 0xED0CDAED && binary.NativeEndian.Uint64(m[56:]) == h.Sum64() && pageSize >= 512 {
			if id := binary.NativeEndian.Uint64(m[48:]); !ok || id > txid {
				hwm := binary.NativeEndian.Uint64(m[40:])
				txid, need, ok = id, int64(min(hwm, 1<<40))*pageSize, true
			}
			if off > 0 {
				return need, ok
			}
			off = pageSize // meta page 1
			continue
		}
		if off > 0 {
			return need, ok
		}
		// Meta page 0 damaged: page 1 is at the page size, which only
		// page 0 says; bbolt tries the OS page size.
		off = int64(os.Getpagesize())
	}
}

// createKVFile creates an empty kv.db at path (through a temporary file,
// so that a crash never leaves a half-made one) for cluster clusterName.
func createKVFile(path string, o *backendOptions) error {
	return buildKVFile(path, o, func(tx *bbolt.Tx) error { return nil })
}

// buildKVFile creates path with fill's content: every bucket created, the
// cluster and storage version recorded, fill run in one transaction, the
// file synced and renamed into place.
func buildKVFile(path string, o *backendOptions, fill func(tx *bbolt.Tx) error) error {
	tmp := path + kvDBTmpSuffix
	_ = os.Remove(tmp)
	opts := boltOptions(o, false)
	opts.NoSync = true // synced once at the end
	db, err := bbolt.Open(tmp, 0o600, opts)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := initBuckets(tx, o); err != nil {
			return err
		}
		return fill(tx)
	})
	if err == nil && !o.noSync {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && !o.noSync {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("accord: creating %s: %w", path, err)
	}
	return nil
}

// initBuckets creates the buckets kv.db needs and records the cluster and
// node it belongs to: a file of another node, even of the same cluster,
// holds another history up to another index, and one found in this
// node's directory is refused (openKeyspace). A snapshot installed from
// the leader becomes this node's own here (finishInstall).
func initBuckets(tx *bbolt.Tx, o *backendOptions) error {
	for _, b := range [][]byte{bucketKey, bucketMeta, bucketLease, bucketAlarm, bucketMembers} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaStorageVersion) == nil {
		if err := meta.Put(metaStorageVersion, storageVersion); err != nil {
			return err
		}
	}
	if o.nodeID != "" {
		if err := meta.Put(metaNode, []byte(o.nodeID)); err != nil {
			return err
		}
	}
	return meta.Put(metaCluster, []byte(o.clusterName))
}

// newBackend wraps an open kv.db. The caller has loaded its state
// (loadBackendState) and starts the committer with start.
func newBackend(path string, db *bbolt.DB, guard *sync.RWMutex, committed uint64, o *backendOptions) *backend {
	be := &backend{
		path:      path,
		log:       o.log,
		guard:     guard,
		noSync:    o.noSync,
		mmapSize:  initialMmapSize(o.quota),
		pageSize:  db.Info().PageSize,
		bo:        o,
		db:        db,
		cur:       &batch{},
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		reqs:      make(chan func()),
		committed: committed,
		idle:      make(chan struct{}),
	}
	be.beginRead()
	return be
}

// beginRead opens the shared read transaction. Called with *guard held
// for writing, or before the backend is shared.
func (be *backend) beginRead() {
	tx, err := be.db.Begin(false)
	if err != nil {
		// Only a closed database fails here; reads then find nothing
		// committed and say so (get returns an error).
		be.rtx, be.rkeys = nil, nil
		return
	}
	be.rtx, be.rkeys = tx, tx.Bucket(bucketKey)
}

func (be *backend) endRead() {
	if be.rtx != nil {
		_ = be.rtx.Rollback()
		be.rtx, be.rkeys = nil, nil
	}
}

// get returns the record of revision r, from the batches or the file. The
// result aliases memory that stays valid only while *guard is held. The
// caller holds *guard (for reading or writing).
func (be *backend) get(r revision) ([]byte, error) {
	if rec, ok := be.cur.find(r); ok {
		return rec, nil
	}
	if be.frozen != nil {
		if rec, ok := be.frozen.find(r); ok {
			return rec, nil
		}
	}
	if be.rkeys == nil {
		return nil, fmt.Errorf("accord: %s is closed", be.path)
	}
	var k [schema.TombstoneKeyLen]byte
	rec := be.rkeys.Get(appendRevKey(k[:0], r))
	if rec == nil {
		return nil, &CorruptError{Path: be.path, Reason: fmt.Sprintf("version %d.%d is in the index but not in the file", r.main, r.sub)}
	}
	return rec, nil
}

// putKV appends a version to the current batch. Called by the FSM with
// *guard held for writing.
func (be *backend) putKV(r revision, rec []byte) {
	b := be.cur
	if len(b.kvs) == 0 && len(b.ops) == 0 {
		b.first = time.Now()
	}
	b.kvs = append(b.kvs, pendingKV{rev: r, rec: rec})
	b.bytes += len(rec) + schema.TombstoneKeyLen
}

// putOp appends a write to another bucket (value nil deletes).
func (be *backend) putOp(bucket, key, value []byte) {
	b := be.cur
	if len(b.kvs) == 0 && len(b.ops) == 0 {
		b.first = time.Now()
	}
	b.ops = append(b.ops, batchOp{bucket: bucket, key: key, value: value})
	b.bytes += len(key) + len(value)
}

// mark returns the position to roll the current batch back to.
func (be *backend) mark() (kvs, ops, bytes int) {
	return len(be.cur.kvs), len(be.cur.ops), be.cur.bytes
}

// rollback undoes the writes after a mark (a transaction that failed
// halfway).
func (be *backend) rollback(kvs, ops, bytes int) {
	clear(be.cur.kvs[kvs:])
	clear(be.cur.ops[ops:])
	be.cur.kvs, be.cur.ops, be.cur.bytes = be.cur.kvs[:kvs], be.cur.ops[:ops], bytes
}

// applied records that the entries up to index (of term) are in the
// current batch.
func (be *backend) applied(index, term uint64) {
	if index > be.cur.index {
		be.cur.index, be.cur.term = index, term
		if be.cur.first.IsZero() {
			be.cur.first = time.Now()
		}
	}
}

// scheduleCompaction hands a compaction to the committer with the batch.
func (be *backend) scheduleCompaction(job *compactJob) {
	be.cur.compact = job
	be.putOp(bucketMeta, metaScheduledCompact, appendRevKey(nil, revision{main: job.rev}))
}

// full reports whether the FSM should wait for the committer before
// applying more: the uncommitted batches hold more than backendMaxPending.
// Called with *guard held.
func (be *backend) full() bool { return be.pending() > backendMaxPending }

// pending returns the bytes applied but not yet committed. Called with
// *guard held.
func (be *backend) pending() int64 {
	n := be.cur.bytes
	if be.frozen != nil {
		n += be.frozen.bytes
	}
	return int64(n)
}

// due reports whether the current batch should be committed now.
func (be *backend) due() bool {
	return len(be.cur.kvs)+len(be.cur.ops) >= backendBatchOps || be.cur.bytes >= backendMaxPending/4
}

// nudge asks the committer to commit soon.
func (be *backend) nudge() {
	select {
	case be.kick <- struct{}{}:
	default:
	}
}

// waitRoom blocks until the uncommitted batches are below the limit, or
// the backend stops. Called without *guard.
func (be *backend) waitRoom() {
	for {
		be.guard.RLock()
		full := be.full()
		be.guard.RUnlock()
		if !full {
			return
		}
		be.nudge()
		be.mu.Lock()
		idle := be.idle
		be.mu.Unlock()
		select {
		case <-idle:
		case <-be.stop:
			return
		}
	}
}

// start runs the committer until close.
func (be *backend) start() {
	be.started = true
	go be.run()
}

func (be *backend) run() {
	defer close(be.done)
	t := time.NewTicker(backendBatchInterval / 4)
	defer t.Stop()
	for {
		select {
		case <-be.stop:
			be.commit(true)
			return
		case f := <-be.reqs:
			f()
			continue
		case <-be.kick:
		case <-t.C:
			be.guard.RLock()
			due := !be.cur.empty() && time.Since(be.cur.first) >= backendBatchInterval
			be.mu.Lock()
			due = due || len(be.waiters) > 0 || be.job != nil || be.err != nil
			be.mu.Unlock()
			be.guard.RUnlock()
			if !due {
				continue
			}
		}
		be.commit(false)
	}
}

// commit writes the current batch (and the next slice of a compaction) to
// the file. Only the committer goroutine calls it.
func (be *backend) commit(final bool) {
	be.guard.Lock()
	b := be.frozen
	if b == nil { // the previous commit succeeded: take the next batch
		b = be.cur
		be.cur = &batch{}
		be.frozen = b
	}
	be.guard.Unlock()
	if b.compact != nil {
		be.job = b.compact // a newer compaction supersedes one in progress
		b.compact = nil
	}
	var err error
	if b.empty() && be.job == nil {
		be.guard.Lock()
		be.frozen = nil
		be.guard.Unlock()
	} else {
		err = be.write(b)
	}
	if err != nil && final {
		be.log.Error("kv.db: last commit before close failed; raft replays these entries at the next start", "err", err)
	}
	be.finishCommit(b, err)
}

// write runs one bbolt transaction for b. On success the shared read
// transaction is replaced (it sees b) and the committing batch is dropped.
func (be *backend) write(b *batch) (err error) {
	if be.unlinked != nil {
		if err := be.reopenDefragged(); err != nil {
			return err
		}
	}
	var size int64
	if be.rtx != nil {
		size = be.rtx.Size()
	}
	// Room the commit may need: each write can dirty a page of its own.
	need := size + 2*int64(b.bytes) + int64(len(b.kvs)+len(b.ops)+compactDeletesPerCommit+64)*int64(2*be.pageSize)
	slow := need >= int64(be.mmapSize)
	if slow {
		be.guard.Lock() // readers wait: the map may move
		be.endRead()
		defer func() {
			if err == nil {
				be.frozen = nil
			}
			be.beginRead()
			be.guard.Unlock()
		}()
	}
	tx, err := be.db.Begin(true)
	if err != nil {
		return err
	}
	if err := fillTx(tx, b, be.job); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if be.job != nil && be.job.done {
		be.job = nil
	}
	if !slow {
		be.guard.Lock()
		be.endRead()
		be.beginRead()
		be.frozen = nil
		be.guard.Unlock()
	}
	return nil
}

// fillTx writes b, and a slice of job, into tx.
func fillTx(tx *bbolt.Tx, b *batch, job *compactJob) error {
	keys := tx.Bucket(bucketKey)
	// Revision keys only ever grow: split pages nearly full, as etcd does
	// for this bucket (bbolt's default, half full, doubles the file).
	keys.FillPercent = 0.9
	var k [schema.TombstoneKeyLen]byte
	for i := range b.kvs {
		if err := keys.Put(appendRevKey(k[:0], b.kvs[i].rev), b.kvs[i].rec); err != nil {
			return err
		}
	}
	for _, op := range b.ops {
		bk := tx.Bucket(op.bucket)
		var err error
		if op.value == nil {
			err = bk.Delete(op.key)
		} else {
			err = bk.Put(op.key, op.value)
		}
		if err != nil {
			return err
		}
	}
	if b.index > 0 {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaConsistentIndex, binary.BigEndian.AppendUint64(nil, b.index)); err != nil {
			return err
		}
		if err := meta.Put(metaTerm, binary.BigEndian.AppendUint64(nil, b.term)); err != nil {
			return err
		}
	}
	if job != nil {
		return job.step(tx, compactDeletesPerCommit)
	}
	return nil
}

// step deletes up to n versions of the job and advances its scan; when the
// scan has passed rev it records finishedCompactRev and sets done. A step
// whose transaction fails is simply retried: the scan position moves only
// with a commit (the caller keeps the job), and deleting is idempotent.
func (j *compactJob) step(tx *bbolt.Tx, n int) error {
	keys := tx.Bucket(bucketKey)
	c := keys.Cursor()
	end := appendRevKey(nil, revision{main: j.rev + 1})
	var k []byte
	if j.next == nil {
		k, _ = c.First()
	} else {
		k, _ = c.Seek(j.next)
	}
	var del [][]byte
	for ; k != nil && bytes.Compare(k, end) < 0 && len(del) < n; k, _ = c.Next() {
		r, err := parseRevKey(k)
		if err != nil {
			return &CorruptError{Path: kvDBName, Reason: "bad key in the key bucket", Err: err}
		}
		if _, ok := j.keep[revision{main: r.main, sub: r.sub}]; !ok {
			del = append(del, slices.Clone(k))
		}
	}
	for _, k := range del {
		if err := keys.Delete(k); err != nil {
			return err
		}
	}
	if k == nil || bytes.Compare(k, end) >= 0 {
		j.done = true
		return tx.Bucket(bucketMeta).Put(metaFinishedCompact, appendRevKey(nil, revision{main: j.rev}))
	}
	j.next = slices.Clone(k)
	return nil
}

// reopenDefragged opens the defragmented kv.db that a Defragment renamed
// in but could not open, and puts it in place of the unlinked file.
// Committer goroutine only.
func (be *backend) reopenDefragged() error {
	db, err := openKVBolt(be.path, be.bo)
	if err != nil {
		return fmt.Errorf("kv.db was replaced by its defragmented copy, which does not open (%v): %w", be.unlinked, err)
	}
	be.streamMu.Lock()
	be.guard.Lock()
	be.endRead()
	old := be.db
	be.db = db
	be.beginRead()
	be.guard.Unlock()
	be.streamMu.Unlock()
	if err := old.Close(); err != nil {
		be.log.Warn("kv.db: closing the file defragmentation replaced", "err", err)
	}
	be.unlinked = nil
	be.log.Info("kv.db: defragmented copy opened; commits resume")
	return nil
}

// finishCommit records a commit's outcome and answers flush waiters.
func (be *backend) finishCommit(b *batch, err error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if err == nil {
		be.committed = max(be.committed, b.index)
		if be.err != nil {
			be.log.Info("kv.db: commits resumed")
		}
		be.err = nil
	} else {
		if be.err == nil {
			be.log.Error("kv.db: commit failed; retrying (reads are served, raft keeps the entries)", "err", err)
		}
		be.err = err
	}
	kept := be.waiters[:0]
	for _, w := range be.waiters {
		switch {
		case be.committed >= w.index:
			w.ch <- nil
		case err != nil:
			w.ch <- fmt.Errorf("accord: writing %s: %w", be.path, err)
		default:
			kept = append(kept, w)
		}
	}
	be.waiters = kept
	close(be.idle)
	be.idle = make(chan struct{})
}

// flush waits until the file holds every entry up to index. It fails if a
// commit fails meanwhile, or the backend closes.
func (be *backend) flush(index uint64) error {
	ch := make(chan error, 1)
	be.mu.Lock()
	if be.committed >= index {
		be.mu.Unlock()
		return nil
	}
	be.waiters = append(be.waiters, flushWaiter{index: index, ch: ch})
	be.mu.Unlock()
	be.nudge()
	select {
	case err := <-ch:
		return err
	case <-be.done:
		be.mu.Lock()
		defer be.mu.Unlock()
		if be.committed >= index {
			return nil
		}
		return ErrClosed
	}
}

// do runs f on the committer goroutine, between commits, and returns its
// error. It fails with ErrClosed once the backend is closing.
func (be *backend) do(f func() error) error {
	ch := make(chan error, 1)
	select {
	case be.reqs <- func() { ch <- f() }:
		return <-ch
	case <-be.done:
		return ErrClosed
	case <-be.stop:
		return ErrClosed
	}
}

// close commits what is pending, stops the committer and closes the file.
// It waits for snapshot streams to end.
func (be *backend) close() error {
	be.closeOnce.Do(func() { be.closeErr = be.doClose() })
	return be.closeErr
}

func (be *backend) doClose() error {
	close(be.stop)
	if be.started {
		<-be.done
	} else {
		close(be.done)
	}
	be.streams.Wait()
	be.guard.Lock()
	be.endRead()
	be.guard.Unlock()
	be.mu.Lock()
	err := be.err
	be.mu.Unlock()
	if cerr := be.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// sizes returns the file's size and the part of it in use (etcd's
// dbSize and dbSizeInUse).
func (be *backend) sizes() (size, inUse int64) {
	be.guard.RLock()
	db := be.db
	if be.rtx != nil {
		size = be.rtx.Size()
	}
	be.guard.RUnlock()
	st := db.Stats()
	inUse = size - int64(st.FreePageN+st.PendingPageN)*int64(be.pageSize)
	return size, max(inUse, 0)
}

// storageVersion returns the file's meta storageVersion, "" when absent.
func (be *backend) storageVersion() string {
	be.guard.RLock()
	defer be.guard.RUnlock()
	if be.rtx == nil {
		return ""
	}
	if meta := be.rtx.Bucket(bucketMeta); meta != nil {
		return string(meta.Get(metaStorageVersion))
	}
	return ""
}

// snapshot returns a stream of the committed file followed by its SHA-256
// (the layout of etcd's snapshot files: etcdctl snapshot save writes what
// the Maintenance.Snapshot call sends, which is this), and its length. The
// stream reads one bbolt read transaction; Close releases it.
func (be *backend) snapshot() (io.ReadCloser, int64, error) {
	// bbolt's WriteTo reads the file by its path: defrag must not rename
	// another file there while a stream is on.
	be.streamMu.RLock()
	be.guard.RLock()
	tx, err := be.db.Begin(false)
	be.guard.RUnlock()
	if err != nil {
		be.streamMu.RUnlock()
		return nil, 0, err
	}
	size := tx.Size()
	pr, pw := io.Pipe()
	be.streams.Add(1)
	go func() {
		defer be.streams.Done()
		defer be.streamMu.RUnlock()
		defer tx.Rollback()
		h := sha256.New()
		_, err := tx.WriteTo(io.MultiWriter(pw, h))
		if err == nil {
			_, err = pw.Write(h.Sum(nil))
		}
		pw.CloseWithError(err)
	}()
	return pr, size + sha256.Size, nil
}

// scan calls fn for every version from main revision from on, in revision
// order: the committed ones, then the batches. It stops when fn returns
// false or an error. The caller holds *guard.
func (be *backend) scan(from int64, fn func(r revision, rec []byte) (bool, error)) error {
	if be.rkeys != nil {
		c := be.rkeys.Cursor()
		for k, v := c.Seek(appendRevKey(nil, revision{main: from})); k != nil; k, v = c.Next() {
			r, err := parseRevKey(k)
			if err != nil {
				return &CorruptError{Path: be.path, Reason: "bad key in the key bucket", Err: err}
			}
			if more, err := fn(r, v); err != nil || !more {
				return err
			}
		}
	}
	for _, b := range []*batch{be.frozen, be.cur} {
		if b == nil {
			continue
		}
		i := sort.Search(len(b.kvs), func(i int) bool { return b.kvs[i].rev.main >= from })
		for ; i < len(b.kvs); i++ {
			if more, err := fn(b.kvs[i].rev, b.kvs[i].rec); err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// kvState is what Open and a restore read from kv.db besides the index.
type kvState struct {
	index, term      uint64 // the last raft entry the file holds
	scheduledCompact int64
	finishedCompact  int64
	cluster          string
	node             string // the node it belongs to ("" in a file written before nodes were recorded)
	leases           []leaseRecord
	alarms           []Alarm
	members          map[string]memberAttrs
	attached         map[int64][]string // lease -> keys whose current version holds it
	resume           *compactJob        // a compaction to finish in the file
}

// loadKV reads the whole state of an open kv.db: meta, leases, alarms,
// members, and every version into a new keyspace. It checks every record
// (revision keys in order, record checksums, versions that agree with
// their keys) and fails with a *CorruptError naming path on the first
// damage. bbolt panics or faults on some damage to its pages; that is
// caught and reported the same way.
func loadKV(path string, db *bbolt.DB) (ks *keyspace, st *kvState, err error) {
	defer func() {
		if p := recover(); p != nil {
			ks, st, err = nil, nil, &CorruptError{Path: path, Reason: "bolt database damaged", Err: fmt.Errorf("%v", p)}
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	corrupt := func(reason string, err error) error { return &CorruptError{Path: path, Reason: reason, Err: err} }
	st = &kvState{members: make(map[string]memberAttrs), attached: make(map[int64][]string)}
	ks = newKeyspace()
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		keys := tx.Bucket(bucketKey)
		if meta == nil || keys == nil {
			return corrupt("not a key-value file (no meta or key bucket)", nil)
		}
		u64 := func(name []byte) (uint64, error) {
			v := meta.Get(name)
			if v == nil {
				return 0, nil
			}
			if len(v) != 8 {
				return 0, corrupt(fmt.Sprintf("meta %s is %d bytes, not 8", name, len(v)), nil)
			}
			return binary.BigEndian.Uint64(v), nil
		}
		rev := func(name []byte) (int64, error) {
			v := meta.Get(name)
			if v == nil {
				return 0, nil
			}
			r, err := parseRevKey(v)
			if err != nil {
				return 0, corrupt(fmt.Sprintf("meta %s", name), err)
			}
			return r.main, nil
		}
		var err error
		if st.index, err = u64(metaConsistentIndex); err != nil {
			return err
		}
		if st.term, err = u64(metaTerm); err != nil {
			return err
		}
		if st.scheduledCompact, err = rev(metaScheduledCompact); err != nil {
			return err
		}
		if st.finishedCompact, err = rev(metaFinishedCompact); err != nil {
			return err
		}
		st.cluster = string(meta.Get(metaCluster))
		st.node = string(meta.Get(metaNode))
		if b := tx.Bucket(bucketLease); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				l, err := decodeLeaseRecord(v)
				if err != nil || len(k) != 8 || int64(binary.BigEndian.Uint64(k)) != l.id || l.id <= 0 || l.ttlMillis <= 0 {
					return corrupt(fmt.Sprintf("bad lease record %x", k), err)
				}
				st.leases = append(st.leases, l)
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketAlarm); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				_, a, err := parseAlarmKey(k)
				if err != nil {
					return corrupt(fmt.Sprintf("bad alarm record %x", k), err)
				}
				st.alarms = append(st.alarms, Alarm{NodeID: string(v), Type: a})
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMembers); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				a, err := decodeMemberAttrs(v)
				if err != nil {
					return corrupt(fmt.Sprintf("bad member record %q", k), err)
				}
				st.members[string(k)] = a
				return nil
			}); err != nil {
				return err
			}
		}
		return ks.load(keys, corrupt, st)
	})
	if err != nil {
		return nil, nil, err
	}
	return ks, st, nil
}

// load builds the index from the key bucket.
func (ks *keyspace) load(keys *bbolt.Bucket, corrupt func(string, error) error, st *kvState) error {
	var last revision
	c := keys.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := parseRevKey(k)
		if err != nil {
			return corrupt("bad revision key", err)
		}
		if r.main < 1 || !last.less(r) && (last.main != 0 || last.sub != 0) {
			return corrupt(fmt.Sprintf("revision %d.%d out of order", r.main, r.sub), nil)
		}
		last = r
		key, kv, err := decodeKVRecord(v)
		if err != nil {
			return corrupt(fmt.Sprintf("record of revision %d.%d", r.main, r.sub), err)
		}
		if !r.tomb && (kv.ModRevision != r.main || kv.CreateRevision < 1 || kv.CreateRevision > r.main || kv.Version < 1 || kv.Lease < 0) {
			return corrupt(fmt.Sprintf("record of revision %d.%d is not a valid version", r.main, r.sub), nil)
		}
		ki := ks.get(string(key))
		if ki == nil {
			ki = &keyIndex{key: string(key)}
			ks.insert(ki)
		}
		ki.revs = append(ki.revs, r)
		if r.tomb {
			ki.create, ki.ver, ki.lease = 0, 0, 0
		} else {
			ki.create, ki.ver, ki.lease = kv.CreateRevision, kv.Version, kv.Lease
		}
	}
	ks.rev = max(last.main, st.scheduledCompact, 1)
	ks.compactRev = st.scheduledCompact
	if ks.compactRev > 0 {
		// Versions a compaction dropped may still be in the file if it was
		// cut short; the index never shows them, and the committer finishes
		// deleting them.
		keep := ks.compactIndex(ks.compactRev)
		if st.finishedCompact < st.scheduledCompact {
			st.resume = &compactJob{rev: ks.compactRev, keep: keep}
		}
	}
	ks.index.Ascend(func(k *keyIndex) bool {
		if _, ok := k.latest(); ok {
			ks.live++
			if k.lease != 0 {
				st.attached[int64(k.lease)] = append(st.attached[int64(k.lease)], k.key)
			}
		}
		return true
	})
	return nil
}

// defrag rewrites kv.db into a new file holding only what is in use and
// swaps it in (etcd's Defragment), and returns the sizes before and after.
// Applies go on meanwhile, into the current batch (the committer is busy
// here, so a long defragmentation ends in back-pressure, as etcd's blocks
// writes). A crash leaves kv.db.defrag behind, which Open removes: the old
// file is untouched until the new one is complete and synced.
func (be *backend) defrag() (before, after int64, err error) {
	err = be.do(func() error {
		for range 2 { // the batch a failed commit left, then the current one
			be.commit(false)
		}
		be.mu.Lock()
		err := be.err
		be.mu.Unlock()
		if err != nil {
			return err
		}
		before, _ = be.sizes()
		tmp := be.path + kvDBDefragSuffix
		_ = os.Remove(tmp)
		opts := boltOptions(be.bo, false)
		opts.NoSync = true // synced once, before the swap
		dst, err := bbolt.Open(tmp, 0o600, opts)
		if err != nil {
			return err
		}
		err = bbolt.Compact(dst, be.db, defragTxMaxSize)
		if err == nil && !be.noSync {
			err = dst.Sync()
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(tmp)
			return err
		}
		be.streamMu.Lock()
		defer be.streamMu.Unlock()
		be.guard.Lock()
		be.endRead()
		old := be.db
		err = os.Rename(tmp, be.path)
		renamed := err == nil
		if err == nil && !be.noSync {
			err = syncDir(filepath.Dir(be.path))
		}
		var db *bbolt.DB
		if err == nil {
			db, err = openKVBolt(be.path, be.bo)
		}
		if err != nil {
			// Reads go on from the old file, whose data is complete (the
			// new one holds the same). If the copy is already at path,
			// commits to the old file would be lost on restart: they
			// wait until the copy opens (reopenDefragged); raft keeps the
			// entries meanwhile.
			if renamed {
				be.unlinked = err
				be.log.Error("kv.db: defragmented copy renamed in but not opened; commits wait for it", "err", err)
			}
			be.beginRead()
			be.guard.Unlock()
			return err
		}
		be.db = db
		be.beginRead()
		be.guard.Unlock()
		// Snapshot streams of the old file finish first (Close waits).
		if err := old.Close(); err != nil {
			be.log.Warn("kv.db: closing the file defragmentation replaced", "err", err)
		}
		after, _ = be.sizes()
		return nil
	})
	return before, after, err
}
