package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Op statuses.
const (
	statusOK      = "ok"      // answered
	statusFailed  = "failed"  // a read that failed, or a write that certainly did not apply
	statusUnknown = "unknown" // a write whose outcome the client never learned
)

// Operation kinds.
const (
	opGet         = "get" // linearizable Get of one key (porcupine)
	opGetLocal    = "get-serializable"
	opPut         = "put"         // porcupine
	opDelete      = "delete"      // porcupine
	opCAS         = "cas"         // Txn(mod_revision = x).Then(put).Else(get), porcupine
	opTxnRead     = "txn-read"    // read-only Txn of 2-3 list keys
	opTxnAppend   = "txn-append"  // Txn(mod_revisions...).Then(put each list + id)
	opLeaseGrant  = "lease-grant" //
	opLeasePut    = "lease-put"   // Put with a lease
	opKeepAlive   = "lease-keepalive"
	opLeaseRevoke = "lease-revoke"
	opLeaseGet    = "lease-get"   // linearizable Get of a lease's key prefix
	opFinalGet    = "final-get"   // the last read of each register key, after healing (porcupine)
	opCrashPut    = "crash-put"   // CrashLoop's writes
	opBarrier     = "barrier-put" // the last write of a run
)

// KV is a key-value pair as a read returned it.
type KV struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Create  int64  `json:"create"`
	Mod     int64  `json:"mod"`
	Version int64  `json:"version"`
	Lease   int64  `json:"lease,omitempty"`
}

func kvsOf(in []*mvccpb.KeyValue) []KV {
	out := make([]KV, len(in))
	for i, kv := range in {
		out[i] = KV{Key: string(kv.Key), Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
	}
	return out
}

// Op is one client operation as recorded (one JSON line of ops.jsonl).
type Op struct {
	Client   int      `json:"client"`
	Kind     string   `json:"kind"`
	Key      string   `json:"key,omitempty"`  // the key, or the prefix of a lease-get
	Keys     []string `json:"keys,omitempty"` // txn-read, txn-append
	Value    string   `json:"value,omitempty"`
	ExpRev   int64    `json:"exp_rev,omitempty"` // cas: the mod revision compared; txn-append: per key in ExpRevs
	ExpRevs  []int64  `json:"exp_revs,omitempty"`
	ExpValue string   `json:"exp_value,omitempty"`
	Lease    int64    `json:"lease,omitempty"`
	Node     string   `json:"node,omitempty"` // the member a pinned client talked to when the operation returned

	Call   int64  `json:"call"`   // ns since the run started
	Return int64  `json:"return"` // ns since the run started; for unknown outcomes, when the client gave up
	Status string `json:"status"`
	Err    string `json:"err,omitempty"`

	Rev       int64 `json:"rev,omitempty"` // the answer's header revision
	Succeeded bool  `json:"succeeded,omitempty"`
	Deleted   int64 `json:"deleted,omitempty"`
	KVs       []KV  `json:"kvs,omitempty"` // what a read returned; for failed cas the Else get
	TTL       int64 `json:"ttl,omitempty"`

	// Resolved is where the committed history shows a write of unknown
	// outcome: its revision, or -1 when it never took effect.
	Resolved int64 `json:"resolved,omitempty"`

	checked bool // went into at least one check
}

func (o *Op) isWrite() bool {
	switch o.Kind {
	case opPut, opDelete, opCAS, opTxnAppend, opLeasePut, opCrashPut, opBarrier:
		return true
	}
	return false
}

// recorder collects the operations of every client of a run.
type recorder struct {
	start time.Time
	mu    sync.Mutex // guards the fields below
	ops   []*Op
	where map[int]func() string // client -> the member it is pinned to
}

func newRecorder() *recorder { return &recorder{start: time.Now(), where: map[int]func() string{}} }

// pin notes where a client's operations go, for the saved history.
func (r *recorder) pin(client int, where func() string) {
	r.mu.Lock()
	r.where[client] = where
	r.mu.Unlock()
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// at converts a recorder time back to wall time.
func (r *recorder) at(t int64) time.Time { return r.start.Add(time.Duration(t)) }

// finish stamps op's return time and status (from err, for a write or a
// read) and records it.
func (r *recorder) finish(op *Op, err error) {
	op.Return = r.now()
	switch {
	case err == nil:
		op.Status = statusOK
	case op.isWrite():
		op.Status, op.Err = statusUnknown, err.Error()
	default:
		op.Status, op.Err = statusFailed, err.Error()
	}
	r.mu.Lock()
	where := r.where[op.Client]
	r.mu.Unlock()
	if where != nil && op.Node == "" {
		op.Node = where()
	}
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) all() []*Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// count adds the operations to rep.Ops.
func (r *recorder) count(rep *Report) {
	for _, op := range r.all() {
		c := rep.Ops[op.Kind]
		if c == nil {
			c = &OpCount{}
			rep.Ops[op.Kind] = c
		}
		switch op.Status {
		case statusOK:
			c.OK++
		case statusFailed:
			c.Failed++
		default:
			c.Unknown++
		}
	}
}

// ---- the committed history ----

// hevent is one event of the committed history.
type hevent struct {
	Rev     int64  `json:"rev"`
	Key     string `json:"key"`
	Delete  bool   `json:"delete,omitempty"`
	Value   string `json:"value,omitempty"`
	Create  int64  `json:"create,omitempty"`
	Mod     int64  `json:"mod"`
	Version int64  `json:"version,omitempty"`
	Lease   int64  `json:"lease,omitempty"`
}

func heventOf(ev *clientv3.Event) hevent {
	kv := ev.Kv
	return hevent{
		Rev: kv.ModRevision, Key: string(kv.Key), Delete: ev.Type == mvccpb.DELETE, Value: string(kv.Value),
		Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version, Lease: kv.Lease,
	}
}

// history is the committed history of a run: every event from revision 2
// (the first write) to the last, as a watch from revision 1 delivered it.
type history struct {
	events []hevent
	byRev  map[int64][]int  // revision -> indexes of its events
	keys   map[string][]int // key -> indexes of its events, ascending
	sorted []string         // every key that ever existed, sorted
	last   int64            // the last revision
}

func newHistory(events []hevent) *history {
	h := &history{events: events, byRev: map[int64][]int{}, keys: map[string][]int{}}
	for i, ev := range events {
		h.byRev[ev.Rev] = append(h.byRev[ev.Rev], i)
		h.keys[ev.Key] = append(h.keys[ev.Key], i)
		h.last = max(h.last, ev.Rev)
	}
	for k := range h.keys {
		h.sorted = append(h.sorted, k)
	}
	slices.Sort(h.sorted)
	return h
}

// at returns the live version of key at rev (nil if absent then).
func (h *history) at(key string, rev int64) *hevent {
	idx := h.keys[key]
	i, _ := slices.BinarySearchFunc(idx, rev+1, func(e int, r int64) int {
		switch {
		case h.events[e].Rev < r:
			return -1
		case h.events[e].Rev > r:
			return 1
		}
		return 0
	})
	// idx[:i] are the events at or before rev.
	if i == 0 {
		return nil
	}
	ev := &h.events[idx[i-1]]
	if ev.Delete {
		return nil
	}
	return ev
}

// before returns the live version of key just before rev.
func (h *history) before(key string, rev int64) *hevent { return h.at(key, rev-1) }

// rangeAt returns the live versions of the keys with prefix at rev, sorted.
func (h *history) rangeAt(prefix string, rev int64) []KV {
	var out []KV
	i, _ := slices.BinarySearch(h.sorted, prefix)
	for ; i < len(h.sorted) && strings.HasPrefix(h.sorted[i], prefix); i++ {
		if ev := h.at(h.sorted[i], rev); ev != nil {
			out = append(out, ev.kv())
		}
	}
	return out
}

func (ev *hevent) kv() KV {
	return KV{Key: ev.Key, Value: ev.Value, Create: ev.Create, Mod: ev.Mod, Version: ev.Version, Lease: ev.Lease}
}

// readHistory reads every event from revision 1 to upto with a watch on
// cli (pinned to one member).
func readHistory(ctx context.Context, cli *clientv3.Client, upto int64, d time.Duration) ([]hevent, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var out []hevent
	for resp := range cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(1)) {
		if err := resp.Err(); err != nil {
			return out, err
		}
		for _, ev := range resp.Events {
			out = append(out, heventOf(ev))
		}
		if len(out) > 0 && out[len(out)-1].Rev >= upto {
			return out, nil
		}
	}
	last := int64(0)
	if len(out) > 0 {
		last = out[len(out)-1].Rev
	}
	if err := wctx.Err(); err != nil {
		return out, fmt.Errorf("watch from revision 1 reached revision %d of %d in %v: %w", last, upto, d, err)
	}
	return out, errors.New("watch from revision 1 ended early")
}

// ---- saving a failing run ----

// writeJSONLines writes one JSON value per line.
func writeJSONLines[T any](path string, vs []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// faultRecord is one injected fault (one line of faults.jsonl).
type faultRecord struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Start  int64  `json:"start"` // ns since the run started
	End    int64  `json:"end"`
}

// saveViolations writes the violations as text.
func saveViolations(dir string, rep *Report) error {
	var b strings.Builder
	for _, v := range rep.Violations {
		fmt.Fprintf(&b, "%s\n\n", v)
	}
	return os.WriteFile(filepath.Join(dir, "violations.txt"), []byte(b.String()), 0o644)
}
