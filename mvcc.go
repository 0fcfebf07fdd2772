package accord

import (
	"bytes"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/google/btree"

	"github.com/accordkv/accord/internal/wire"
)

// This file is the multi-version keyspace. It knows nothing of raft,
// watches or leases beyond a callback that says whether a lease exists.
// fsm.go drives every write; readers call the range and history methods
// concurrently.
//
// Model. Every version of every key is a record in kv.db (backend.go),
// keyed by its revision: the main revision of the transaction that wrote it
// and its position (sub) in that transaction; a delete writes a tombstone.
// In memory there is only the index: for every key, the revisions of its
// retained versions in increasing order. A read finds the revision in the
// index and the record in the backend. Versions are immutable once
// written, so the index and the file only ever grow at the end, until
// compaction removes what is below the compacted revision.

// revision identifies one version: the main revision of its transaction,
// its position in it, and whether it is a tombstone.
// appendRevision appends r to a key's revisions. Past 8 it grows the
// slice by a quarter instead of doubling it: the revisions are most of the
// heap a long history costs (16 bytes each), and doubling leaves a quarter
// of that unused on average, a quarter growth about a tenth.
func appendRevision(revs []revision, r revision) []revision {
	if len(revs) == cap(revs) && len(revs) >= 8 {
		revs = slices.Grow(revs, len(revs)/4)
	}
	return append(revs, r)
}

type revision struct {
	main int64
	sub  int32
	tomb bool
}

// keyIndex holds the revisions of one key's retained versions, ascending.
// A tombstone ends a generation of the key; a later put starts a new one.
type keyIndex struct {
	key  string
	revs []revision
	// Of the latest version, when it is live (zero after a delete): what
	// a put needs to write the next version without reading this one.
	create, ver int64
	lease       LeaseID
}

// at returns the live version of the key at revision rev.
func (k *keyIndex) at(rev int64) (revision, bool) {
	n := len(k.revs)
	if n == 0 {
		return revision{}, false
	}
	i := n - 1
	if k.revs[i].main > rev {
		i = sort.Search(n, func(i int) bool { return k.revs[i].main > rev }) - 1
		if i < 0 {
			return revision{}, false
		}
	}
	if k.revs[i].tomb {
		return revision{}, false
	}
	return k.revs[i], true
}

// latest returns the current live version.
func (k *keyIndex) latest() (revision, bool) { return k.at(math.MaxInt64) }

// before returns the version just before main revision rev, if it is live
// (the previous value an event at rev replaced).
func (k *keyIndex) before(rev int64) (revision, bool) {
	i := sort.Search(len(k.revs), func(i int) bool { return k.revs[i].main >= rev }) - 1
	if i < 0 || k.revs[i].tomb {
		return revision{}, false
	}
	return k.revs[i], true
}

func keyIndexLess(a, b *keyIndex) bool { return a.key < b.key }

// probes are the keyIndex values lookups search the btree with: a probe
// passed to the btree escapes, and a lookup is too hot to allocate one.
var probes = sync.Pool{New: func() any { return new(keyIndex) }}

// revEvents are the events of one revision in transaction order.
type revEvents struct {
	rev    int64
	events []Event // PrevKV is filled when the key existed before, if asked for
}

// keyspace is the multi-version store.
//
// Lock order: keyspace.mu is the innermost lock. It may be taken while
// holding fsm.mu or watchHub.mu; nothing takes another lock while holding
// it, except the backend's committer bookkeeping (backend.mu).
type keyspace struct {
	mu sync.RWMutex // guards every field below, and the backend's batches

	rev        int64                    // current revision; 1 on an empty store
	compactRev int64                    // revisions below this are gone; 0 = never compacted
	index      *btree.BTreeG[*keyIndex] // the only map of keys: no hash map beside it
	be         *backend
	live       int64 // keys whose latest version is not a deletion

	// arena is where the records of applied writes are encoded, carved
	// out of chunks of recordChunk bytes: one allocation per few hundred
	// Puts instead of one per Put. A record is never written again once
	// encoded (the batch holds it until kv.db has it), and a chunk is
	// garbage once no batch refers to it.
	arena []byte
}

// recordChunk is the size of the record arena's chunks.
const recordChunk = 64 << 10

// recordBuf returns an empty slice with room for n bytes, from the arena.
// The caller holds ks.mu for writing.
func (ks *keyspace) recordBuf(n int) []byte {
	if n > recordChunk/8 {
		return make([]byte, 0, n)
	}
	if cap(ks.arena)-len(ks.arena) < n {
		ks.arena = make([]byte, 0, recordChunk)
	}
	l := len(ks.arena)
	ks.arena = ks.arena[:l+n]
	return ks.arena[l : l : l+n]
}

// kvRecord encodes a version record (appendKVRecord) into the arena.
func (ks *keyspace) kvRecord(key string, v *KeyValue) []byte {
	return appendKVRecord(ks.recordBuf(kvRecordSize(key, v)), key, v)
}

func newKeyspace() *keyspace {
	return &keyspace{rev: 1, index: btree.NewG[*keyIndex](32, keyIndexLess)}
}

// adopt takes the contents of a keyspace loaded from kv.db (openKeyspace).
// The caller holds ks.mu for writing, or ks is not shared yet.
func (ks *keyspace) adopt(o *keyspace) {
	ks.rev, ks.compactRev, ks.index, ks.be, ks.live = o.rev, o.compactRev, o.index, o.be, o.live
}

// Rev returns the current revision.
func (ks *keyspace) Rev() int64 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.rev
}

// Revs returns the current and the compacted revision.
func (ks *keyspace) Revs() (rev, compacted int64) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.rev, ks.compactRev
}

// Sizes returns the size of kv.db and the part of it in use.
func (ks *keyspace) Sizes() (size, inUse int64) {
	ks.mu.RLock()
	be := ks.be
	ks.mu.RUnlock()
	return be.sizes()
}

// projectedSize is kv.db's size plus what is applied but not yet
// committed to it: what the quota check weighs (the file alone lags a
// batch behind, and a fast writer would overshoot by a batch).
func (ks *keyspace) projectedSize() int64 {
	ks.mu.RLock()
	be, pending := ks.be, ks.be.pending()
	ks.mu.RUnlock()
	size, _ := be.sizes()
	return size + pending
}

// Stats returns the number of live keys and the size of kv.db.
func (ks *keyspace) Stats() (keys, size int64) {
	ks.mu.RLock()
	keys, be := ks.live, ks.be
	ks.mu.RUnlock()
	size, _ = be.sizes()
	return keys, size
}

// kv reads the version r of key from the backend. The value is copied:
// the record's memory is valid only while ks.mu is held. keysOnly leaves
// the value out. Called with ks.mu held.
func (ks *keyspace) kv(key string, r revision, keysOnly bool) (KeyValue, error) {
	rec, err := ks.be.get(r)
	if err != nil {
		return KeyValue{}, err
	}
	k, kv, err := decodeKVRecord(rec)
	if err != nil || string(k) != key || kv.ModRevision != r.main {
		return KeyValue{}, &CorruptError{Path: ks.be.path, Reason: "record of key " + quoteKey(key) + " does not match the index", Err: err}
	}
	kv.Key = key
	if keysOnly {
		kv.Value = nil
	} else {
		kv.Value = cloneBytes(kv.Value)
	}
	return kv, nil
}

func quoteKey(k string) string {
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return `"` + k + `"`
}

// Range serves a read. Revision 0 means the current revision. The result
// is the caller's own.
func (ks *keyspace) Range(req *wire.RangeRequest) (*GetResponse, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	rev := req.Revision
	if rev == 0 {
		rev = ks.rev
	}
	if err := ks.checkRevLocked(rev, ks.rev); err != nil {
		return nil, err
	}
	resp := &GetResponse{Revision: ks.rev}
	if err := ks.rangeLocked(req, rev, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (ks *keyspace) checkRevLocked(rev, current int64) error {
	if rev > current {
		return ErrFutureRev
	}
	if rev < ks.compactRev {
		return ErrCompacted
	}
	return nil
}

// get returns the index entry of key, or nil.
func (ks *keyspace) get(key string) *keyIndex {
	p := probes.Get().(*keyIndex)
	p.key = key
	k, _ := ks.index.Get(p)
	p.key = ""
	probes.Put(p)
	return k
}

// insert adds an index entry.
func (ks *keyspace) insert(k *keyIndex) { ks.index.ReplaceOrInsert(k) }

// remove drops an index entry.
func (ks *keyspace) remove(k *keyIndex) { ks.index.Delete(k) }

// ascend calls fn for every key in the range [key, end) (with etcd's
// conventions for an empty end and "\x00") until fn returns false.
func (ks *keyspace) ascend(key, end string, fn func(k *keyIndex) bool) {
	if end == "" {
		if k := ks.get(key); k != nil {
			fn(k)
		}
		return
	}
	if end == "\x00" {
		ks.index.AscendGreaterOrEqual(&keyIndex{key: key}, fn)
		return
	}
	if end <= key {
		return
	}
	ks.index.AscendRange(&keyIndex{key: key}, &keyIndex{key: end}, fn)
}

// rangeLocked fills resp for req read at rev.
func (ks *keyspace) rangeLocked(req *wire.RangeRequest, rev int64, resp *GetResponse) error {
	order, target := req.SortOrder, req.SortTarget
	if target != wire.SortByKey && order == wire.SortNone {
		order = wire.SortAscend // etcd: a non-key target without order ascends
	}
	native := target == wire.SortByKey && order != wire.SortDescend
	filtered := req.MinModRev != 0 || req.MaxModRev != 0 || req.MinCreateRev != 0 || req.MaxCreateRev != 0
	// Without sorting we can stop collecting at the limit (but keep counting).
	// Like etcd (rangeLimit in server/etcdserver/txn/range.go), a non-key
	// target with order NONE also takes the first limit+1 keys in key order
	// and sorts only those, unless a filter is set.
	collectLimit := int64(0)
	if req.Limit > 0 && (native || (req.SortOrder == wire.SortNone && !filtered)) {
		collectLimit = req.Limit + 1
	}
	// Sorting by value needs the values even with keys_only (etcd drops
	// them after sorting).
	stripLate := req.KeysOnly && target == wire.SortByValue
	var count int64
	var err error
	ks.ascend(req.Key, req.RangeEnd, func(k *keyIndex) bool {
		r, ok := k.at(rev)
		if !ok {
			return true
		}
		count++ // the whole range, whatever the filters and the limit
		if req.CountOnly || (collectLimit > 0 && int64(len(resp.KVs)) >= collectLimit) {
			return true // counted, not read
		}
		var kv KeyValue
		if kv, err = ks.kv(k.key, r, req.KeysOnly && !stripLate); err != nil {
			return false
		}
		if filtered && !passFilters(req, &kv) {
			return true
		}
		resp.KVs = append(resp.KVs, kv)
		return true
	})
	if err != nil {
		return err
	}
	resp.Count = count
	if !native {
		sortKVs(resp.KVs, target, order)
	}
	if stripLate {
		for i := range resp.KVs {
			resp.KVs[i].Value = nil
		}
	}
	if req.Limit > 0 && int64(len(resp.KVs)) > req.Limit {
		resp.KVs = resp.KVs[:req.Limit]
		resp.More = true
	}
	return nil
}

func passFilters(req *wire.RangeRequest, kv *KeyValue) bool {
	if req.MinModRev != 0 && kv.ModRevision < req.MinModRev {
		return false
	}
	if req.MaxModRev != 0 && kv.ModRevision > req.MaxModRev {
		return false
	}
	if req.MinCreateRev != 0 && kv.CreateRevision < req.MinCreateRev {
		return false
	}
	if req.MaxCreateRev != 0 && kv.CreateRevision > req.MaxCreateRev {
		return false
	}
	return true
}

func sortKVs(kvs []KeyValue, target, order uint8) {
	cmp := func(a, b *KeyValue) int {
		switch target {
		case wire.SortByVersion:
			return cmpInt(a.Version, b.Version)
		case wire.SortByCreate:
			return cmpInt(a.CreateRevision, b.CreateRevision)
		case wire.SortByMod:
			return cmpInt(a.ModRevision, b.ModRevision)
		case wire.SortByValue:
			return bytes.Compare(a.Value, b.Value)
		}
		return 0 // by key: the input is already ascending by key
	}
	if target == wire.SortByKey {
		// The input is ascending by key. (A comparator that never returns
		// 0 or +1, as this once used, is inconsistent, and the stable sort
		// reversed the input, so KEY DESCEND came out ascending.)
		if order == wire.SortDescend {
			slices.Reverse(kvs)
		}
		return
	}
	if order == wire.SortDescend {
		slices.SortStableFunc(kvs, func(a, b KeyValue) int { return cmp(&b, &a) })
		return
	}
	slices.SortStableFunc(kvs, func(a, b KeyValue) int { return cmp(&a, &b) })
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// leaseChecker tells the keyspace whether a lease exists when a put
// attaches a key to it.
type leaseChecker func(id int64) bool

// undoEntry restores one key's index if a transaction fails halfway.
type undoEntry struct {
	k           *keyIndex
	created     bool // k was added by this transaction
	create, ver int64
	lease       LeaseID
}

// txnExec applies one write transaction. It writes straight into the index
// and the backend's current batch at revision rev (= current + 1), so that
// later operations see earlier ones, and keeps an undo log so that an
// operation failing halfway leaves the keyspace exactly as it was.
type txnExec struct {
	ks      *keyspace
	leases  leaseChecker
	rev     int64
	sub     int32
	changed bool
	events  []Event
	undo    []undoEntry
	// readOnly marks a transaction evaluated under the read lock; a write
	// in it is a bug in the caller and fails instead of mutating.
	readOnly bool

	// Room for the common case, a transaction of one Put: its response,
	// event and undo entry live in the txnExec's own allocation rather
	// than in five of their own (applying a Put is on the path of every
	// write's latency).
	top     TxnResponse
	topOps  [1]OpResponse
	put1    PutResponse
	putUsed bool
	evBuf   [1]Event
	undoBuf [1]undoEntry
}

// newTxnExec returns a txnExec whose events and undo log start in its own
// buffers.
func newTxnExec(ks *keyspace, leases leaseChecker, rev int64) *txnExec {
	x := &txnExec{ks: ks, leases: leases, rev: rev}
	x.events, x.undo = x.evBuf[:0], x.undoBuf[:0]
	return x
}

// applyTxn executes req atomically. It returns the response and the events
// to publish (nil if nothing changed). The caller holds ks.mu for writing.
func (ks *keyspace) applyTxn(req *wire.TxnRequest, leases leaseChecker) (*TxnResponse, []Event, error) {
	x := newTxnExec(ks, leases, ks.rev+1)
	mk, mo, mb := ks.be.mark()
	resp, err := x.txn(req, 0)
	if err != nil {
		x.rollback()
		ks.be.rollback(mk, mo, mb)
		return nil, nil, err
	}
	if x.changed {
		ks.rev = x.rev
		// Every put event of version 1 makes a key live and every delete
		// event ends one, whatever else the transaction did to that key.
		for i := range x.events {
			switch ev := &x.events[i]; {
			case ev.Type == EventDelete:
				ks.live--
			case ev.KV.Version == 1:
				ks.live++
			}
		}
	}
	setTxnRevision(resp, ks.rev)
	if len(x.events) == 0 {
		return resp, nil, nil
	}
	return resp, x.events, nil
}

func setTxnRevision(r *TxnResponse, rev int64) {
	r.Revision = rev
	for i := range r.Responses {
		switch op := r.Responses[i]; {
		case op.Get != nil:
			op.Get.Revision = rev
		case op.Put != nil:
			op.Put.Revision = rev
		case op.Delete != nil:
			op.Delete.Revision = rev
		case op.Txn != nil:
			setTxnRevision(op.Txn, rev)
		}
	}
}

func (x *txnExec) rollback() {
	ks := x.ks
	for i := len(x.undo) - 1; i >= 0; i-- {
		u := x.undo[i]
		if u.created {
			ks.remove(u.k)
			continue
		}
		u.k.revs = u.k.revs[:len(u.k.revs)-1]
		u.k.create, u.k.ver, u.k.lease = u.create, u.ver, u.lease
	}
	x.undo = nil
	x.events = nil
}

func (x *txnExec) txn(req *wire.TxnRequest, depth int) (*TxnResponse, error) {
	if depth > wire.MaxTxnDepth {
		return nil, ErrInvalidArgument
	}
	ok := true
	for i := range req.Compare {
		holds, err := x.compare(&req.Compare[i])
		if err != nil {
			return nil, err
		}
		if !holds {
			ok = false
			break
		}
	}
	ops := req.Success
	if !ok {
		ops = req.Failure
	}
	var resp *TxnResponse
	if depth == 0 && x.top.Responses == nil {
		resp = &x.top
	} else {
		resp = &TxnResponse{}
	}
	resp.Succeeded = ok
	switch {
	case len(ops) == 1 && resp == &x.top:
		resp.Responses = x.topOps[:1]
	case len(ops) > 0:
		resp.Responses = make([]OpResponse, len(ops))
	}
	for i := range ops {
		op := &ops[i]
		switch {
		case op.Range != nil:
			r, err := x.rangeOp(op.Range)
			if err != nil {
				return nil, err
			}
			resp.Responses[i].Get = r
		case x.readOnly && (op.Put != nil || op.DeleteRange != nil):
			return nil, ErrInvalidArgument
		case op.Put != nil:
			r, err := x.put(op.Put)
			if err != nil {
				return nil, err
			}
			resp.Responses[i].Put = r
		case op.DeleteRange != nil:
			r, err := x.deleteRange(op.DeleteRange)
			if err != nil {
				return nil, err
			}
			resp.Responses[i].Delete = r
		case op.Txn != nil:
			r, err := x.txn(op.Txn, depth+1)
			if err != nil {
				return nil, err
			}
			resp.Responses[i].Txn = r
		default:
			return nil, ErrInvalidArgument
		}
	}
	return resp, nil
}

func (x *txnExec) compare(c *wire.Compare) (bool, error) {
	empty := true
	allHold := true
	var err error
	x.ks.ascend(c.Key, c.RangeEnd, func(k *keyIndex) bool {
		// At ks.rev, the revision before this transaction: etcd evaluates
		// every compare, nested ones included, before any write
		// (compareToPath), so a nested compare does not see earlier ops.
		r, ok := k.at(x.ks.rev)
		if !ok {
			return true
		}
		var kv KeyValue
		if kv, err = x.ks.kv(k.key, r, c.Target != wire.CmpValue); err != nil {
			return false
		}
		empty = false
		if !compareKV(c, &kv) {
			allHold = false
			return false
		}
		return true
	})
	if err != nil {
		return false, err
	}
	if empty {
		if c.Target == wire.CmpValue {
			return false, nil
		}
		return compareKV(c, &KeyValue{}), nil
	}
	return allHold, nil
}

// compareKV evaluates c against one version (a zero KeyValue stands for a
// missing key).
func compareKV(c *wire.Compare, kv *KeyValue) bool {
	var r int
	switch c.Target {
	case wire.CmpValue:
		r = bytes.Compare(kv.Value, c.Value)
	case wire.CmpVersion:
		r = cmpInt(kv.Version, c.Int)
	case wire.CmpCreate:
		r = cmpInt(kv.CreateRevision, c.Int)
	case wire.CmpMod:
		r = cmpInt(kv.ModRevision, c.Int)
	case wire.CmpLease:
		r = cmpInt(int64(kv.Lease), c.Int)
	default:
		return false
	}
	switch c.Result {
	case wire.CmpEqual:
		return r == 0
	case wire.CmpNotEqual:
		return r != 0
	case wire.CmpGreater:
		return r > 0
	case wire.CmpLess:
		return r < 0
	}
	return false
}

func (x *txnExec) rangeOp(req *wire.RangeRequest) (*GetResponse, error) {
	rev := req.Revision
	if rev == 0 {
		rev = math.MaxInt64 // include this transaction's own writes
	} else if err := x.ks.checkRevLocked(rev, x.ks.rev); err != nil {
		// Checked against the revision before the txn, as etcd's checkTxn
		// does: the txn's own revision is not readable by number.
		return nil, err
	}
	resp := &GetResponse{}
	if err := x.ks.rangeLocked(req, rev, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// write records version r of key (creating its index entry if needed),
// with rec, its encoded record, and the latest version's metadata (zero
// for a tombstone).
func (x *txnExec) write(key string, k *keyIndex, r revision, rec []byte, create, ver int64, lease LeaseID) {
	ks := x.ks
	if k == nil {
		k = &keyIndex{key: key, revs: []revision{r}}
		ks.insert(k)
		x.undo = append(x.undo, undoEntry{k: k, created: true})
	} else {
		x.undo = append(x.undo, undoEntry{k: k, create: k.create, ver: k.ver, lease: k.lease})
		k.revs = appendRevision(k.revs, r)
	}
	k.create, k.ver, k.lease = create, ver, lease
	ks.be.putKV(r, rec)
	x.changed = true
}

func (x *txnExec) put(req *wire.PutRequest) (*PutResponse, error) {
	if req.Key == "" {
		return nil, ErrEmptyKey
	}
	// etcd rejects the request (checkPutRequest) before it looks at the key.
	if req.IgnoreValue && len(req.Value) != 0 {
		return nil, ErrValueProvided
	}
	if req.IgnoreLease && req.Lease != 0 {
		return nil, ErrLeaseProvided
	}
	k := x.ks.get(req.Key)
	var cur revision
	live := false
	if k != nil {
		// A second write to one key in one transaction (only reachable
		// from a command that skipped validation) is appended at the same
		// main revision: the last one wins, as it always has.
		cur, live = k.latest()
	}
	value, lease := req.Value, LeaseID(req.Lease)
	var resp *PutResponse
	if !x.putUsed {
		x.putUsed, resp = true, &x.put1
	} else {
		resp = &PutResponse{}
	}
	if live && (req.PrevKV || req.IgnoreValue) {
		kv, err := x.ks.kv(req.Key, cur, false)
		if err != nil {
			return nil, err
		}
		if req.IgnoreValue {
			value = kv.Value
		}
		if req.PrevKV {
			resp.PrevKV = &kv
		}
	}
	if req.IgnoreValue || req.IgnoreLease {
		if !live {
			return nil, ErrKeyNotFound
		}
		if req.IgnoreLease {
			lease = k.lease
		}
	}
	if lease != 0 && (x.leases == nil || !x.leases(int64(lease))) {
		return nil, ErrLeaseNotFound
	}
	nv := KeyValue{Key: req.Key, CreateRevision: x.rev, ModRevision: x.rev, Version: 1, Value: value, Lease: lease}
	ev := Event{Type: EventPut}
	if live {
		nv.CreateRevision, nv.Version = k.create, k.ver+1
		ev.prev, ev.prevLease, ev.hasPrev = cur, k.lease, true
	}
	r := revision{main: x.rev, sub: x.sub}
	x.sub++
	x.write(req.Key, k, r, x.ks.kvRecord(req.Key, &nv), nv.CreateRevision, nv.Version, nv.Lease)
	ev.KV = nv
	x.events = append(x.events, ev)
	return resp, nil
}

func (x *txnExec) deleteRange(req *wire.DeleteRangeRequest) (*DeleteResponse, error) {
	resp := &DeleteResponse{}
	type victim struct {
		k *keyIndex
		r revision
	}
	var vs []victim
	x.ks.ascend(req.Key, req.RangeEnd, func(k *keyIndex) bool {
		if r, ok := k.latest(); ok {
			vs = append(vs, victim{k, r})
		}
		return true
	})
	for _, v := range vs {
		if req.PrevKV {
			prev, err := x.ks.kv(v.k.key, v.r, false)
			if err != nil {
				return nil, err
			}
			resp.PrevKVs = append(resp.PrevKVs, prev)
		}
		ev := Event{
			Type:      EventDelete,
			KV:        KeyValue{Key: v.k.key, ModRevision: x.rev},
			prev:      v.r,
			prevLease: v.k.lease,
			hasPrev:   true,
		}
		r := revision{main: x.rev, sub: x.sub, tomb: true}
		x.sub++
		x.write(v.k.key, v.k, r, x.ks.kvRecord(v.k.key, nil), 0, 0, 0)
		x.events = append(x.events, ev)
		resp.Deleted++
	}
	return resp, nil
}

// fillPrev sets the PrevKV of the events that replaced a version, reading
// those versions (a version compacted away meanwhile is left out, as etcd
// leaves it out). Takes ks.mu for reading.
func (ks *keyspace) fillPrev(evs []Event) error {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for i := range evs {
		ev := &evs[i]
		if !ev.hasPrev || ev.PrevKV != nil {
			continue
		}
		k := ks.get(ev.KV.Key)
		if k == nil {
			continue
		}
		if _, ok := slices.BinarySearchFunc(k.revs, ev.prev, func(a, b revision) int {
			if a.less(b) {
				return -1
			}
			if b.less(a) {
				return 1
			}
			return 0
		}); !ok {
			continue
		}
		p, err := ks.kv(k.key, ev.prev, false)
		if err != nil {
			return err
		}
		ev.PrevKV = &p
	}
	return nil
}

// compactIndex drops from the index every version below rev except, for
// each key, the one current at rev (so reads at rev still work), and the
// tombstones at rev (so a watch from rev sees them). It returns the
// revisions <= rev that remain: the versions a compaction of the file must
// keep. The caller holds ks.mu for writing.
func (ks *keyspace) compactIndex(rev int64) map[revision]struct{} {
	keep := make(map[revision]struct{})
	var drop []*keyIndex
	ks.index.Ascend(func(k *keyIndex) bool {
		// i = index of the last version with main <= rev.
		i := sort.Search(len(k.revs), func(i int) bool { return k.revs[i].main > rev }) - 1
		if i < 0 {
			return true
		}
		cut := i
		if k.revs[i].tomb && k.revs[i].main < rev {
			cut = i + 1
		}
		if cut == len(k.revs) {
			drop = append(drop, k)
			return true
		}
		if cut > 0 {
			k.revs = append([]revision(nil), k.revs[cut:]...)
		}
		for _, r := range k.revs {
			if r.main > rev {
				break
			}
			keep[revision{main: r.main, sub: r.sub}] = struct{}{}
		}
		return true
	})
	for _, k := range drop {
		ks.remove(k)
	}
	return keep
}

// compact drops history below rev from the index and schedules the same
// in the file. The caller holds ks.mu for writing.
func (ks *keyspace) compact(rev int64) error {
	if rev <= ks.compactRev {
		return ErrCompacted
	}
	if rev > ks.rev {
		return ErrFutureRev
	}
	keep := ks.compactIndex(rev)
	ks.compactRev = rev
	ks.be.scheduleCompaction(&compactJob{rev: rev, keep: keep})
	return nil
}

// historyMaxBytes bounds the bytes one history read gathers (a revision is
// never split, so one huge revision may go past it).
const historyMaxBytes = 4 << 20

// history returns the events of revisions [from, upTo] (upTo 0 = current),
// at most maxRevs revisions, and the last revision covered (which may be
// beyond the last event when later revisions had no events, i.e. the
// result is complete up to that revision). With prev, events carry the
// version they replaced. It fails with ErrCompacted when from is below
// the compacted revision. Values are the caller's own.
func (ks *keyspace) history(from, upTo int64, maxRevs int, prev bool) ([]revEvents, int64, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if from < ks.compactRev {
		return nil, 0, ErrCompacted
	}
	if upTo == 0 || upTo > ks.rev {
		upTo = ks.rev
	}
	if maxRevs <= 0 {
		maxRevs = math.MaxInt
	}
	var out []revEvents
	size := 0
	stopped := false
	add := func(r revision, rec []byte) (bool, error) {
		if r.main < from {
			return true, nil
		}
		if r.main > upTo {
			return false, nil
		}
		n := len(out)
		if n == 0 || out[n-1].rev != r.main {
			if n == maxRevs || size >= historyMaxBytes {
				stopped = true
				return false, nil
			}
			out = append(out, revEvents{rev: r.main})
			n++
		}
		ev, err := ks.event(r, rec, prev)
		if err != nil {
			return false, err
		}
		size += len(rec)
		out[n-1].events = append(out[n-1].events, ev)
		return true, nil
	}
	if err := ks.be.scan(from, add); err != nil {
		return nil, 0, err
	}
	covered := upTo
	if stopped {
		covered = out[len(out)-1].rev
	}
	return out, covered, nil
}

// event turns the record of revision r into an event.
func (ks *keyspace) event(r revision, rec []byte, prev bool) (Event, error) {
	key, kv, err := decodeKVRecord(rec)
	if err != nil {
		return Event{}, &CorruptError{Path: ks.be.path, Reason: "bad record", Err: err}
	}
	kv.Key = string(key)
	ev := Event{Type: EventPut, KV: kv}
	if r.tomb {
		ev = Event{Type: EventDelete, KV: KeyValue{Key: kv.Key, ModRevision: r.main}}
	} else {
		ev.KV.Value = cloneBytes(kv.Value)
	}
	if prev {
		if k := ks.get(ev.KV.Key); k != nil {
			if pr, ok := k.before(r.main); ok {
				p, err := ks.kv(k.key, pr, false)
				if err != nil {
					return Event{}, err
				}
				ev.PrevKV = &p
			}
		}
	}
	return ev, nil
}
