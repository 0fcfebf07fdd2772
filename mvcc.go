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

// This file is the in-memory multi-version keyspace. It is a pure data
// structure: it knows nothing of raft, watches or leases beyond a callback
// that says whether a lease exists. fsm.go drives every write; readers call
// the range and history methods concurrently.
//
// Model. Every key has a history: its versions in increasing revision
// order, the last of which is a tombstone if the key is currently deleted.
// Versions are immutable once written: a write appends, compaction builds a
// new shorter slice. That makes a point-in-time snapshot a copy of slice
// headers (see view), taken under the read lock in O(keys).
//
// Besides the per-key histories, the keyspace keeps the change log by
// revision (events), the input of watch catch-up. It is derived data: it
// holds exactly the versions with a revision >= the compacted revision,
// ordered by (revision, position in the transaction), so it is rebuilt from
// the histories on restore rather than stored in snapshots.

// version is one version of one key. Its fields never change once the
// version is visible to readers.
type version struct {
	rev    int64 // mod revision
	create int64 // create revision; 0 for a tombstone
	ver    int64 // version; 0 for a tombstone
	lease  int64
	value  []byte
	sub    int32 // position of the write within its transaction
	tomb   bool
}

// keyHist is the history of one key, ascending by rev.
type keyHist struct {
	key string
	vs  []version
}

// at returns the live version of the key at revision rev, or nil if the key
// did not exist then.
func (h *keyHist) at(rev int64) *version {
	n := len(h.vs)
	if n == 0 {
		return nil
	}
	var i int
	if h.vs[n-1].rev <= rev {
		i = n - 1
	} else {
		i = sort.Search(n, func(i int) bool { return h.vs[i].rev > rev }) - 1
		if i < 0 {
			return nil
		}
	}
	if h.vs[i].tomb {
		return nil
	}
	return &h.vs[i]
}

// latest returns the current live version, or nil.
func (h *keyHist) latest() *version { return h.at(math.MaxInt64) }

func keyHistLess(a, b *keyHist) bool { return a.key < b.key }

// revEvents are the events of one revision in transaction order.
type revEvents struct {
	rev    int64
	events []Event // PrevKV is always filled when the key existed before
}

// keyspace is the multi-version store.
//
// Lock order: keyspace.mu is the innermost lock. It may be taken while
// holding fsm.mu or watchHub.mu; nothing takes another lock while holding
// it.
type keyspace struct {
	mu sync.RWMutex // guards every field below

	rev        int64 // current revision; 1 on an empty store
	compactRev int64 // revisions below this are gone; 0 = never compacted
	keys       map[string]*keyHist
	index      *btree.BTreeG[*keyHist]
	events     []revEvents // ascending by rev; only revisions >= compactRev
	size       int64       // approximate bytes held, for Status
	live       int64       // keys whose latest version is not a deletion
}

func newKeyspace() *keyspace {
	return &keyspace{
		rev:   1,
		keys:  make(map[string]*keyHist),
		index: btree.NewG[*keyHist](32, keyHistLess),
	}
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

// Size returns the approximate number of bytes the keyspace holds.
func (ks *keyspace) Size() int64 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.size
}

// Stats returns the number of live keys and the approximate size.
func (ks *keyspace) Stats() (keys, size int64) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.live, ks.size
}

func versionSize(key string, v *version) int64 { return int64(len(key)+len(v.value)) + 48 }

// Range serves a read. Revision 0 means the current revision.
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
	ks.rangeLocked(req, rev, resp)
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

// ascend calls fn for every key history in the range [key, end) (with
// etcd's conventions for an empty end and "\x00") until fn returns false.
func (ks *keyspace) ascend(key, end string, fn func(h *keyHist) bool) {
	if end == "" {
		if h := ks.keys[key]; h != nil {
			fn(h)
		}
		return
	}
	if end == "\x00" {
		ks.index.AscendGreaterOrEqual(&keyHist{key: key}, fn)
		return
	}
	if end <= key {
		return
	}
	ks.index.AscendRange(&keyHist{key: key}, &keyHist{key: end}, fn)
}

func toKV(key string, v *version, keysOnly bool) KeyValue {
	kv := KeyValue{Key: key, CreateRevision: v.create, ModRevision: v.rev, Version: v.ver, Lease: LeaseID(v.lease)}
	if !keysOnly {
		kv.Value = v.value
	}
	return kv
}

// rangeLocked fills resp for req read at rev. Returned values alias the
// store's immutable memory; the public read path copies them.
func (ks *keyspace) rangeLocked(req *wire.RangeRequest, rev int64, resp *GetResponse) {
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
	ks.ascend(req.Key, req.RangeEnd, func(h *keyHist) bool {
		v := h.at(rev)
		if v == nil {
			return true
		}
		count++
		if req.CountOnly {
			return true
		}
		if filtered && !passFilters(req, v) {
			return true
		}
		if collectLimit == 0 || int64(len(resp.KVs)) < collectLimit {
			resp.KVs = append(resp.KVs, toKV(h.key, v, req.KeysOnly && !stripLate))
		}
		return true
	})
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
}

func passFilters(req *wire.RangeRequest, v *version) bool {
	if req.MinModRev != 0 && v.rev < req.MinModRev {
		return false
	}
	if req.MaxModRev != 0 && v.rev > req.MaxModRev {
		return false
	}
	if req.MinCreateRev != 0 && v.create < req.MinCreateRev {
		return false
	}
	if req.MaxCreateRev != 0 && v.create > req.MaxCreateRev {
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

// undoEntry restores one key's history if a transaction fails halfway.
type undoEntry struct {
	h       *keyHist
	created bool    // h was added by this transaction
	prev    version // for replaced: the version overwritten
	replace bool
}

// txnExec applies one write transaction. It writes straight into the
// histories at revision rev (= current + 1), so that later operations see
// earlier ones, and keeps an undo log so that an operation failing halfway
// leaves the keyspace exactly as it was.
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
}

// applyTxn executes req atomically. It returns the response and the events
// to publish (nil if nothing changed). The caller holds ks.mu for writing.
func (ks *keyspace) applyTxn(req *wire.TxnRequest, leases leaseChecker) (*TxnResponse, []Event, error) {
	x := &txnExec{ks: ks, leases: leases, rev: ks.rev + 1}
	size := ks.size
	resp, err := x.txn(req, 0)
	if err != nil {
		x.rollback()
		ks.size = size // write() counted the undone versions
		return nil, nil, err
	}
	if x.changed {
		ks.rev = x.rev
		ks.events = append(ks.events, revEvents{rev: x.rev, events: x.events})
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
		switch {
		case u.created:
			delete(ks.keys, u.h.key)
			ks.index.Delete(u.h)
		case u.replace:
			u.h.vs[len(u.h.vs)-1] = u.prev
		default:
			u.h.vs = u.h.vs[:len(u.h.vs)-1]
		}
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
		if !x.compare(&req.Compare[i]) {
			ok = false
			break
		}
	}
	ops := req.Success
	if !ok {
		ops = req.Failure
	}
	resp := &TxnResponse{Succeeded: ok}
	if len(ops) > 0 {
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
			resp.Responses[i].Delete = x.deleteRange(op.DeleteRange)
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

func (x *txnExec) compare(c *wire.Compare) bool {
	empty := true
	allHold := true
	check := func(v *version) bool {
		empty = false
		if !compareVersion(c, v) {
			allHold = false
			return false
		}
		return true
	}
	x.ks.ascend(c.Key, c.RangeEnd, func(h *keyHist) bool {
		// At ks.rev, the revision before this transaction: etcd evaluates
		// every compare, nested ones included, before any write
		// (compareToPath), so a nested compare does not see earlier ops.
		v := h.at(x.ks.rev)
		if v == nil {
			return true
		}
		return check(v)
	})
	if empty {
		if c.Target == wire.CmpValue {
			return false
		}
		return compareVersion(c, &version{})
	}
	return allHold
}

// compareVersion evaluates c against one version (a zero version stands
// for a missing key).
func compareVersion(c *wire.Compare, v *version) bool {
	var r int
	switch c.Target {
	case wire.CmpValue:
		r = bytes.Compare(v.value, c.Value)
	case wire.CmpVersion:
		r = cmpInt(v.ver, c.Int)
	case wire.CmpCreate:
		r = cmpInt(v.create, c.Int)
	case wire.CmpMod:
		r = cmpInt(v.rev, c.Int)
	case wire.CmpLease:
		r = cmpInt(v.lease, c.Int)
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
	x.ks.rangeLocked(req, rev, resp)
	return resp, nil
}

// write appends v to the history of key (creating it if needed).
func (x *txnExec) write(key string, h *keyHist, v version) {
	ks := x.ks
	if h == nil {
		h = &keyHist{key: key, vs: []version{v}}
		ks.keys[key] = h
		ks.index.ReplaceOrInsert(h)
		x.undo = append(x.undo, undoEntry{h: h, created: true})
	} else if n := len(h.vs); n > 0 && h.vs[n-1].rev == x.rev {
		// A second write to one key in one transaction: only reachable from
		// a command that skipped validation. Keep the last write.
		x.undo = append(x.undo, undoEntry{h: h, replace: true, prev: h.vs[n-1]})
		h.vs[n-1] = v
	} else {
		h.vs = append(h.vs, v)
		x.undo = append(x.undo, undoEntry{h: h})
	}
	ks.size += versionSize(key, &v)
	x.changed = true
}

func (x *txnExec) put(req *wire.PutRequest) (*PutResponse, error) {
	if req.Key == "" {
		return nil, ErrEmptyKey
	}
	h := x.ks.keys[req.Key]
	var cur *version
	if h != nil {
		cur = h.latest()
	}
	value, lease := req.Value, req.Lease
	// etcd rejects the request (checkPutRequest) before it looks at the key.
	if req.IgnoreValue && len(req.Value) != 0 {
		return nil, ErrValueProvided
	}
	if req.IgnoreLease && req.Lease != 0 {
		return nil, ErrLeaseProvided
	}
	if req.IgnoreValue || req.IgnoreLease {
		if cur == nil {
			return nil, ErrKeyNotFound
		}
		if req.IgnoreValue {
			value = cur.value
		}
		if req.IgnoreLease {
			lease = cur.lease
		}
	}
	if lease != 0 && (x.leases == nil || !x.leases(lease)) {
		return nil, ErrLeaseNotFound
	}
	nv := version{rev: x.rev, sub: x.sub, lease: lease, value: value, create: x.rev, ver: 1}
	x.sub++
	resp := &PutResponse{}
	ev := Event{Type: EventPut}
	if cur != nil {
		prev := toKV(req.Key, cur, false)
		nv.create, nv.ver = cur.create, cur.ver+1
		ev.PrevKV = &prev
		if req.PrevKV {
			resp.PrevKV = &prev
		}
	}
	x.write(req.Key, h, nv)
	ev.KV = toKV(req.Key, &nv, false)
	x.events = append(x.events, ev)
	return resp, nil
}

func (x *txnExec) deleteRange(req *wire.DeleteRangeRequest) *DeleteResponse {
	resp := &DeleteResponse{}
	var hs []*keyHist
	x.ks.ascend(req.Key, req.RangeEnd, func(h *keyHist) bool {
		if h.latest() != nil {
			hs = append(hs, h)
		}
		return true
	})
	for _, h := range hs {
		cur := h.latest()
		prev := toKV(h.key, cur, false)
		x.write(h.key, h, version{rev: x.rev, sub: x.sub, tomb: true})
		x.sub++
		x.events = append(x.events, Event{
			Type:   EventDelete,
			KV:     KeyValue{Key: h.key, ModRevision: x.rev},
			PrevKV: &prev,
		})
		resp.Deleted++
		if req.PrevKV {
			resp.PrevKVs = append(resp.PrevKVs, prev)
		}
	}
	return resp
}

// compact drops history below rev, keeping for every key the version that
// was current at rev (so reads at rev still work) and every event at rev or
// later (so a watch can start at rev). The caller holds ks.mu for writing.
func (ks *keyspace) compact(rev int64) error {
	if rev <= ks.compactRev {
		return ErrCompacted
	}
	if rev > ks.rev {
		return ErrFutureRev
	}
	var drop []*keyHist
	ks.index.Ascend(func(h *keyHist) bool {
		// i = index of the last version with rev <= target.
		i := sort.Search(len(h.vs), func(i int) bool { return h.vs[i].rev > rev }) - 1
		if i < 0 {
			return true
		}
		keep := i
		if h.vs[i].tomb && h.vs[i].rev < rev {
			keep = i + 1
		}
		if keep == 0 {
			return true
		}
		for j := 0; j < keep; j++ {
			ks.size -= versionSize(h.key, &h.vs[j])
		}
		if keep == len(h.vs) {
			drop = append(drop, h)
			return true
		}
		h.vs = append([]version(nil), h.vs[keep:]...) // new array: snapshots may hold the old one
		return true
	})
	for _, h := range drop {
		delete(ks.keys, h.key)
		ks.index.Delete(h)
	}
	i := sort.Search(len(ks.events), func(i int) bool { return ks.events[i].rev >= rev })
	ks.events = append([]revEvents(nil), ks.events[i:]...)
	if len(ks.events) > 0 && ks.events[0].rev == rev {
		// The versions before rev are gone, so events at rev lose their
		// PrevKV: keyspaceFromView cannot rebuild it after a snapshot, and
		// every replica must replay the same history (etcd, whose PrevKV is
		// a read at rev-1, omits it too). New slice: watchers may hold the old.
		evs := slices.Clone(ks.events[0].events)
		for j := range evs {
			evs[j].PrevKV = nil
		}
		ks.events[0].events = evs
	}
	ks.compactRev = rev
	return nil
}

// history returns the events of revisions [from, upTo] (upTo 0 = current),
// at most maxRevs revisions, and the last revision covered (which may be
// beyond the last event when later revisions had no events in the range,
// i.e. the result is complete up to that revision). It fails with
// ErrCompacted when from is below the compacted revision.
func (ks *keyspace) history(from, upTo int64, maxRevs int) ([]revEvents, int64, error) {
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
	i := sort.Search(len(ks.events), func(i int) bool { return ks.events[i].rev >= from })
	j := i
	for j < len(ks.events) && ks.events[j].rev <= upTo && j-i < maxRevs {
		j++
	}
	out := ks.events[i:j:j]
	covered := upTo
	if j-i == maxRevs && j < len(ks.events) && ks.events[j].rev <= upTo {
		covered = ks.events[j-1].rev
	}
	return out, covered, nil
}

// ksView is a point-in-time copy of the keyspace's structure; the version
// slices it holds are immutable, so it can be read without locks.
type ksView struct {
	rev        int64
	compactRev int64
	keys       []keyHist
}

// view captures the keyspace for a snapshot or backup.
func (ks *keyspace) view() *ksView {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	v := &ksView{rev: ks.rev, compactRev: ks.compactRev, keys: make([]keyHist, 0, ks.index.Len())}
	ks.index.Ascend(func(h *keyHist) bool {
		v.keys = append(v.keys, keyHist{key: h.key, vs: h.vs[:len(h.vs):len(h.vs)]})
		return true
	})
	return v
}

// keyspaceFromView builds a keyspace (including its derived event log)
// from histories, as restored from a snapshot. The histories must be
// ascending by key and each ascending by revision.
func keyspaceFromView(v *ksView) *keyspace {
	ks := newKeyspace()
	ks.rev, ks.compactRev = v.rev, v.compactRev
	type evRef struct {
		rev int64
		sub int32
		ev  Event
	}
	var evs []evRef
	for i := range v.keys {
		h := &keyHist{key: v.keys[i].key, vs: v.keys[i].vs}
		ks.keys[h.key] = h
		ks.index.ReplaceOrInsert(h)
		if h.latest() != nil {
			ks.live++
		}
		for j := range h.vs {
			ver := &h.vs[j]
			ks.size += versionSize(h.key, ver)
			if ver.rev < ks.compactRev {
				continue
			}
			var prev *KeyValue
			if j > 0 && !h.vs[j-1].tomb {
				p := toKV(h.key, &h.vs[j-1], false)
				prev = &p
			}
			ev := Event{Type: EventPut, KV: toKV(h.key, ver, false), PrevKV: prev}
			if ver.tomb {
				ev = Event{Type: EventDelete, KV: KeyValue{Key: h.key, ModRevision: ver.rev}, PrevKV: prev}
			}
			evs = append(evs, evRef{ver.rev, ver.sub, ev})
		}
	}
	slices.SortFunc(evs, func(a, b evRef) int {
		if c := cmpInt(a.rev, b.rev); c != 0 {
			return c
		}
		return cmpInt(int64(a.sub), int64(b.sub))
	})
	for _, e := range evs {
		if n := len(ks.events); n > 0 && ks.events[n-1].rev == e.rev {
			ks.events[n-1].events = append(ks.events[n-1].events, e.ev)
			continue
		}
		ks.events = append(ks.events, revEvents{rev: e.rev, events: []Event{e.ev}})
	}
	return ks
}

// replaceWith swaps in the contents of other (used by restore).
func (ks *keyspace) replaceWith(other *keyspace) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.rev, ks.compactRev = other.rev, other.compactRev
	ks.keys, ks.index, ks.events, ks.size, ks.live = other.keys, other.index, other.events, other.size, other.live
}
