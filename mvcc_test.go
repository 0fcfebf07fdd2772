package accord

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/accordkv/accord/internal/wire"
)

// Tests of the in-memory keyspace (mvcc.go), driven directly with wire
// requests: no raft, no store. Helpers carry an "mv" prefix so they cannot
// collide with other test files of the package.

func mvPut(key, val string) wire.RequestOp {
	return wire.RequestOp{Put: &wire.PutRequest{Key: key, Value: []byte(val)}}
}

func mvPutReq(r wire.PutRequest) wire.RequestOp { return wire.RequestOp{Put: &r} }

func mvDel(key, end string) wire.RequestOp {
	return wire.RequestOp{DeleteRange: &wire.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKV: true}}
}

func mvGet(r wire.RangeRequest) wire.RequestOp { return wire.RequestOp{Range: &r} }

func mvNested(t wire.TxnRequest) wire.RequestOp { return wire.RequestOp{Txn: &t} }

func mvLeases(ids ...int64) leaseChecker {
	return func(id int64) bool { return slices.Contains(ids, id) }
}

// mvApplyTxn runs req under the write lock, as the FSM does.
// The events come as watchers get them: PrevKV read, the store's own
// fields cleared.
func mvApplyTxn(ks *keyspace, req *wire.TxnRequest, leases leaseChecker) (*TxnResponse, []Event, error) {
	ks.mu.Lock()
	resp, evs, err := ks.applyTxn(req, leases)
	ks.mu.Unlock()
	if err != nil {
		return resp, evs, err
	}
	if err := ks.fillPrev(evs); err != nil {
		return nil, nil, err
	}
	for i := range evs {
		evs[i].prev, evs[i].prevLease, evs[i].hasPrev = revision{}, 0, false
	}
	return resp, evs, nil
}

// mvMust applies ops as the Then branch of a compare-free transaction.
func mvMust(t *testing.T, ks *keyspace, ops ...wire.RequestOp) (*TxnResponse, []Event) {
	t.Helper()
	resp, evs, err := mvApplyTxn(ks, &wire.TxnRequest{Success: ops}, mvLeases(7, 8))
	if err != nil {
		t.Fatalf("applyTxn: %v", err)
	}
	return resp, evs
}

func mvCompact(ks *keyspace, rev int64) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.compact(rev)
}

func mvRange(t *testing.T, ks *keyspace, r wire.RangeRequest) *GetResponse {
	t.Helper()
	resp, err := ks.Range(&r)
	if err != nil {
		t.Fatalf("Range(%+v): %v", r, err)
	}
	return resp
}

func mvKeys(kvs []KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func mvHistory(t *testing.T, ks *keyspace, from int64) []revEvents {
	t.Helper()
	revs, _, err := ks.history(from, 0, math.MaxInt32, true)
	if err != nil {
		t.Fatalf("history(%d): %v", from, err)
	}
	return revs
}

func mvKV(key, val string, create, mod, ver, lease int64) KeyValue {
	return KeyValue{Key: key, Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver, Lease: LeaseID(lease)}
}

// mvState is everything observable about a keyspace, deep-copied, to show
// that a failed transaction leaves no trace.
type mvState struct {
	Rev, Compact int64
	Hists        map[string][]revision
	Index        []string
	Ranges       map[int64]*GetResponse
	History      []revEvents
}

func mvCapture(t *testing.T, ks *keyspace) mvState {
	t.Helper()
	st := mvState{Hists: map[string][]revision{}, Ranges: map[int64]*GetResponse{}}
	st.Rev, st.Compact = ks.Revs()
	ks.mu.RLock()
	ks.index.Ascend(func(k *keyIndex) bool {
		st.Hists[k.key] = slices.Clone(k.revs)
		st.Index = append(st.Index, k.key)
		return true
	})
	ks.mu.RUnlock()
	for rev := max(st.Compact, 1); rev <= st.Rev; rev++ {
		st.Ranges[rev] = mvRange(t, ks, wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", Revision: rev})
	}
	st.History = mvHistory(t, ks, st.Compact)
	return st
}

func TestKeyspaceEmptyStartsAtRevisionOne(t *testing.T) {
	ks := newTestKeyspace(t)
	if got := ks.Rev(); got != 1 {
		t.Fatalf("Rev() = %d, want 1", got)
	}
	for _, rev := range []int64{0, 1} {
		resp := mvRange(t, ks, wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", Revision: rev})
		if resp.Revision != 1 || resp.Count != 0 || len(resp.KVs) != 0 || resp.More {
			t.Errorf("Range at %d on empty store = %+v, want revision 1 and nothing", rev, resp)
		}
	}
	if _, err := ks.Range(&wire.RangeRequest{Key: "a", Revision: 2}); !errors.Is(err, ErrFutureRev) {
		t.Errorf("Range at 2 on empty store: err = %v, want ErrFutureRev", err)
	}
	if h := mvHistory(t, ks, 1); len(h) != 0 {
		t.Errorf("history of empty store = %+v", h)
	}
	resp, _ := mvMust(t, ks, mvPut("a", "1"))
	if resp.Revision != 2 || ks.Rev() != 2 {
		t.Errorf("first write: response revision %d, Rev() %d; want 2", resp.Revision, ks.Rev())
	}
}

func TestKeyspaceTxnAddsExactlyOneRevision(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("c", "c1"))                                                   // rev 2
	mvMust(t, ks, mvPutReq(wire.PutRequest{Key: "d", Value: []byte("d1"), Lease: 7})) // rev 3
	resp, evs := mvMust(t, ks,
		mvPut("b", "b1"),
		mvPut("a", "a1"),
		mvDel("c", ""),
		mvGet(wire.RangeRequest{Key: "a", RangeEnd: "\x00"}),
		mvPut("d", "d2"),
	)
	const rev = 4
	if ks.Rev() != rev || resp.Revision != rev {
		t.Fatalf("after a 4-write txn: Rev() %d, response %d; want %d", ks.Rev(), resp.Revision, rev)
	}
	if !resp.Succeeded || len(resp.Responses) != 5 {
		t.Fatalf("response = %+v", resp)
	}
	for i, r := range resp.Responses {
		var got int64
		switch {
		case r.Put != nil:
			got = r.Put.Revision
		case r.Delete != nil:
			got = r.Delete.Revision
		case r.Get != nil:
			got = r.Get.Revision
		}
		if got != rev {
			t.Errorf("response %d carries revision %d, want %d", i, got, rev)
		}
	}
	c1 := mvKV("c", "c1", 2, 2, 1, 0)
	d1 := mvKV("d", "d1", 3, 3, 1, 7)
	want := []Event{
		{Type: EventPut, KV: mvKV("b", "b1", rev, rev, 1, 0)},
		{Type: EventPut, KV: mvKV("a", "a1", rev, rev, 1, 0)},
		{Type: EventDelete, KV: KeyValue{Key: "c", ModRevision: rev}, PrevKV: &c1},
		{Type: EventPut, KV: mvKV("d", "d2", 3, rev, 2, 0), PrevKV: &d1},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events =\n%+v\nwant (in transaction order, one revision)\n%+v", evs, want)
	}
	h := mvHistory(t, ks, rev)
	if len(h) != 1 || h[0].rev != rev || !reflect.DeepEqual(h[0].events, want) {
		t.Errorf("history(%d) = %+v, want one revision with the txn's events", rev, h)
	}
	if d := resp.Responses[2].Delete; d.Deleted != 1 || !reflect.DeepEqual(d.PrevKVs, []KeyValue{c1}) {
		t.Errorf("delete response = %+v", d)
	}
	// The next write adds exactly one more.
	mvMust(t, ks, mvPut("e", "e"))
	if ks.Rev() != rev+1 {
		t.Errorf("Rev() = %d after one more put, want %d", ks.Rev(), rev+1)
	}
}

func TestKeyspaceNoChangeNoRevision(t *testing.T) {
	tests := []struct {
		name string
		req  wire.TxnRequest
	}{
		{"delete missing key", wire.TxnRequest{Success: []wire.RequestOp{mvDel("missing", "")}}},
		{"delete empty range", wire.TxnRequest{Success: []wire.RequestOp{mvDel("m", "n")}}},
		{"delete inverted range", wire.TxnRequest{Success: []wire.RequestOp{mvDel("b", "a")}}},
		{"read-only txn", wire.TxnRequest{Success: []wire.RequestOp{mvGet(wire.RangeRequest{Key: "a"}), mvGet(wire.RangeRequest{Key: "\x00", RangeEnd: "\x00"})}}},
		{"empty txn", wire.TxnRequest{}},
		{"failed compare into read-only else", wire.TxnRequest{
			Compare: []wire.Compare{{Target: wire.CmpVersion, Result: wire.CmpEqual, Key: "a", Int: 99}},
			Success: []wire.RequestOp{mvPut("a", "x")},
			Failure: []wire.RequestOp{mvGet(wire.RangeRequest{Key: "a"})},
		}},
		{"failed compare into empty else", wire.TxnRequest{
			Compare: []wire.Compare{{Target: wire.CmpValue, Result: wire.CmpEqual, Key: "nope", Value: []byte("")}},
			Success: []wire.RequestOp{mvDel("a", "")},
		}},
		{"nested txn that only deletes nothing", wire.TxnRequest{Success: []wire.RequestOp{mvNested(wire.TxnRequest{Success: []wire.RequestOp{mvDel("zz", "\x00")}})}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := newTestKeyspace(t)
			mvMust(t, ks, mvPut("a", "1"), mvPut("b", "1"))
			before := mvCapture(t, ks)
			resp, evs, err := mvApplyTxn(ks, &tc.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if evs != nil {
				t.Errorf("events = %+v, want none", evs)
			}
			if resp.Revision != 2 {
				t.Errorf("response revision = %d, want the unchanged 2", resp.Revision)
			}
			if after := mvCapture(t, ks); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func TestKeyspaceLaterOpsSeeEarlierWrites(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("a", "old"), mvPut("b", "old"))
	resp, _ := mvMust(t, ks,
		mvPut("a", "new"),
		mvGet(wire.RangeRequest{Key: "a"}),
		mvDel("b", ""),
		mvGet(wire.RangeRequest{Key: "\x00", RangeEnd: "\x00"}),
		mvNested(wire.TxnRequest{Success: []wire.RequestOp{mvPut("c", "c"), mvGet(wire.RangeRequest{Key: "c"})}}),
		mvGet(wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", CountOnly: true}),
	)
	if got := resp.Responses[1].Get.KVs; !reflect.DeepEqual(got, []KeyValue{mvKV("a", "new", 2, 3, 2, 0)}) {
		t.Errorf("get after put in the same txn = %+v", got)
	}
	if got := mvKeys(resp.Responses[3].Get.KVs); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("range after delete in the same txn = %v, want [a]", got)
	}
	if got := resp.Responses[4].Txn.Responses[1].Get.KVs; len(got) != 1 || string(got[0].Value) != "c" || got[0].ModRevision != 3 {
		t.Errorf("nested get after nested put = %+v", got)
	}
	if got := resp.Responses[5].Get.Count; got != 2 {
		t.Errorf("count after nested put = %d, want 2 (a, c)", got)
	}
	if ks.Rev() != 3 {
		t.Errorf("Rev() = %d, want 3", ks.Rev())
	}
}

func TestKeyspacePutVersioning(t *testing.T) {
	ks := newTestKeyspace(t)
	steps := []struct {
		name string
		put  wire.PutRequest
		want KeyValue // the key after the put
		prev *KeyValue
	}{
		{"create", wire.PutRequest{Key: "k", Value: []byte("v1")}, mvKV("k", "v1", 2, 2, 1, 0), nil},
		{"update sets lease", wire.PutRequest{Key: "k", Value: []byte("v2"), Lease: 7}, mvKV("k", "v2", 2, 3, 2, 7), new(mvKV("k", "v1", 2, 2, 1, 0))},
		{"plain put replaces the lease", wire.PutRequest{Key: "k", Value: []byte("v3")}, mvKV("k", "v3", 2, 4, 3, 0), new(mvKV("k", "v2", 2, 3, 2, 7))},
		{"set lease again", wire.PutRequest{Key: "k", Value: []byte("v4"), Lease: 8}, mvKV("k", "v4", 2, 5, 4, 8), new(mvKV("k", "v3", 2, 4, 3, 0))},
		{"ignore_lease keeps it", wire.PutRequest{Key: "k", Value: []byte("v5"), IgnoreLease: true}, mvKV("k", "v5", 2, 6, 5, 8), new(mvKV("k", "v4", 2, 5, 4, 8))},
		{"ignore_value keeps the value", wire.PutRequest{Key: "k", IgnoreValue: true, Lease: 7}, mvKV("k", "v5", 2, 7, 6, 7), new(mvKV("k", "v5", 2, 6, 5, 8))},
		{"ignore both", wire.PutRequest{Key: "k", IgnoreValue: true, IgnoreLease: true}, mvKV("k", "v5", 2, 8, 7, 7), new(mvKV("k", "v5", 2, 7, 6, 7))},
		{"empty value", wire.PutRequest{Key: "k"}, KeyValue{Key: "k", CreateRevision: 2, ModRevision: 9, Version: 8}, new(mvKV("k", "v5", 2, 8, 7, 7))},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			p := st.put
			p.PrevKV = true
			resp, evs := mvMust(t, ks, mvPutReq(p))
			got := mvRange(t, ks, wire.RangeRequest{Key: "k"}).KVs
			if len(got) != 1 || !mvSameKV(got[0], st.want) {
				t.Errorf("after put: %+v, want %+v", got, st.want)
			}
			if pk := resp.Responses[0].Put.PrevKV; !mvSamePtrKV(pk, st.prev) {
				t.Errorf("PrevKV = %+v, want %+v", pk, st.prev)
			}
			if len(evs) != 1 || evs[0].Type != EventPut || !mvSameKV(evs[0].KV, st.want) || !mvSamePtrKV(evs[0].PrevKV, st.prev) {
				t.Errorf("event = %+v", evs)
			}
		})
	}
	// Without PrevKV in the request, the response has none (the event does).
	resp, evs := mvMust(t, ks, mvPut("k", "x"))
	if resp.Responses[0].Put.PrevKV != nil || evs[0].PrevKV == nil {
		t.Errorf("put without PrevKV: response %+v, event %+v", resp.Responses[0].Put, evs[0])
	}
}

// mvSameKV compares two KeyValues, treating nil and empty values alike.
func mvSameKV(a, b KeyValue) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease
}

func mvSamePtrKV(a, b *KeyValue) bool {
	if a == nil || b == nil {
		return a == b
	}
	return mvSameKV(*a, *b)
}

func TestKeyspaceDeleteThenRecreate(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("k", "v1")) // 2
	mvMust(t, ks, mvPut("k", "v2")) // 3
	resp, evs := mvMust(t, ks, mvDel("k", ""))
	prev := mvKV("k", "v2", 2, 3, 2, 0)
	wantDel := []Event{{Type: EventDelete, KV: KeyValue{Key: "k", ModRevision: 4}, PrevKV: &prev}}
	if !reflect.DeepEqual(evs, wantDel) {
		t.Errorf("delete event = %+v, want a tombstone with key and mod revision only", evs)
	}
	if d := resp.Responses[0].Delete; d.Deleted != 1 || !reflect.DeepEqual(d.PrevKVs, []KeyValue{prev}) {
		t.Errorf("delete response = %+v", d)
	}
	if got := mvRange(t, ks, wire.RangeRequest{Key: "k"}); len(got.KVs) != 0 || got.Count != 0 {
		t.Errorf("get after delete = %+v", got)
	}
	_, evs = mvMust(t, ks, mvPut("k", "v3")) // 5
	want := mvKV("k", "v3", 5, 5, 1, 0)
	if len(evs) != 1 || !reflect.DeepEqual(evs[0], Event{Type: EventPut, KV: want}) || !evs[0].IsCreate() {
		t.Errorf("re-create event = %+v, want a create with a new create revision, version 1, no PrevKV", evs)
	}
	for rev, want := range map[int64][]KeyValue{
		1: nil,
		2: {mvKV("k", "v1", 2, 2, 1, 0)},
		3: {mvKV("k", "v2", 2, 3, 2, 0)},
		4: nil,
		5: {want},
	} {
		got := mvRange(t, ks, wire.RangeRequest{Key: "k", Revision: rev})
		if !reflect.DeepEqual(got.KVs, want) || got.Revision != 5 {
			t.Errorf("at %d: %+v (revision %d), want %+v (revision 5)", rev, got.KVs, got.Revision, want)
		}
	}
}

func TestKeyspacePutErrors(t *testing.T) {
	tests := []struct {
		name string
		put  wire.PutRequest
		want error
	}{
		{"ignore_value on missing key", wire.PutRequest{Key: "missing", IgnoreValue: true}, ErrKeyNotFound},
		{"ignore_lease on missing key", wire.PutRequest{Key: "missing", IgnoreLease: true}, ErrKeyNotFound},
		{"ignore_value on deleted key", wire.PutRequest{Key: "gone", IgnoreValue: true}, ErrKeyNotFound},
		{"ignore_value with a value", wire.PutRequest{Key: "a", Value: []byte("x"), IgnoreValue: true}, ErrValueProvided},
		{"ignore_lease with a lease", wire.PutRequest{Key: "a", Lease: 7, IgnoreLease: true}, ErrLeaseProvided},
		// etcd checks the request before looking at the key.
		{"ignore_value with a value on missing key", wire.PutRequest{Key: "missing", Value: []byte("x"), IgnoreValue: true}, ErrValueProvided},
		{"ignore_lease with a lease on missing key", wire.PutRequest{Key: "missing", Lease: 7, IgnoreLease: true}, ErrLeaseProvided},
		{"unknown lease", wire.PutRequest{Key: "a", Value: []byte("x"), Lease: 99}, ErrLeaseNotFound},
		{"unknown lease on new key", wire.PutRequest{Key: "new", Value: []byte("x"), Lease: 99}, ErrLeaseNotFound},
		{"ignore_value with unknown lease", wire.PutRequest{Key: "a", IgnoreValue: true, Lease: 99}, ErrLeaseNotFound},
		{"empty key", wire.PutRequest{Value: []byte("x")}, ErrEmptyKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := newTestKeyspace(t)
			mvMust(t, ks, mvPut("a", "1"), mvPut("gone", "1"))
			mvMust(t, ks, mvDel("gone", ""))
			before := mvCapture(t, ks)
			resp, evs, err := mvApplyTxn(ks, &wire.TxnRequest{Success: []wire.RequestOp{mvPutReq(tc.put)}}, mvLeases(7))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if resp != nil || evs != nil {
				t.Errorf("failed txn returned %+v, %+v", resp, evs)
			}
			if after := mvCapture(t, ks); !reflect.DeepEqual(before, after) {
				t.Errorf("failed put changed the keyspace:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	t.Run("no lease checker", func(t *testing.T) {
		ks := newTestKeyspace(t)
		_, _, err := mvApplyTxn(ks, &wire.TxnRequest{Success: []wire.RequestOp{mvPutReq(wire.PutRequest{Key: "a", Lease: 1})}}, nil)
		if !errors.Is(err, ErrLeaseNotFound) {
			t.Errorf("err = %v, want ErrLeaseNotFound", err)
		}
	})
}

func TestKeyspaceFailedTxnLeavesNoTrace(t *testing.T) {
	badLease := mvPutReq(wire.PutRequest{Key: "w", Value: []byte("x"), Lease: 99})
	tests := []struct {
		name string
		req  wire.TxnRequest
		want error
	}{
		{"three puts then unknown lease", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("x", "1"), mvPut("a", "2"), mvPut("y", "3"), badLease,
		}}, ErrLeaseNotFound},
		{"puts and deletes then unknown lease", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("new", "1"), mvDel("a", "b"), mvDel("c", "\x00"), mvPut("b", "2"), badLease,
		}}, ErrLeaseNotFound},
		{"writes then failure in a nested txn", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("x", "1"), mvDel("a", ""),
			mvNested(wire.TxnRequest{Success: []wire.RequestOp{mvPut("y", "2"), mvNested(wire.TxnRequest{Success: []wire.RequestOp{mvPut("z", "3"), badLease}})}}),
		}}, ErrLeaseNotFound},
		{"writes in else branch then ignore_value on missing key", wire.TxnRequest{
			Compare: []wire.Compare{{Target: wire.CmpVersion, Result: wire.CmpGreater, Key: "a", Int: 100}},
			Failure: []wire.RequestOp{mvPut("x", "1"), mvPut("a", "2"), mvPutReq(wire.PutRequest{Key: "missing", IgnoreValue: true})},
		}, ErrKeyNotFound},
		{"writes then a read at a future revision", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("x", "1"), mvGet(wire.RangeRequest{Key: "x", Revision: 100}),
		}}, ErrFutureRev},
		{"writes then a read below compaction", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("x", "1"), mvDel("b", ""), mvGet(wire.RangeRequest{Key: "x", Revision: 2}),
		}}, ErrCompacted},
		{"writes then an empty op", wire.TxnRequest{Success: []wire.RequestOp{mvPut("x", "1"), {}}}, ErrInvalidArgument},
		{"overwrite of an existing key then failure", wire.TxnRequest{Success: []wire.RequestOp{
			mvPut("a", "changed"), mvPut("b", "changed"), mvPutReq(wire.PutRequest{Key: "c", Value: []byte("v"), Lease: 99}),
		}}, ErrLeaseNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := newTestKeyspace(t)
			mvMust(t, ks, mvPut("a", "1"), mvPut("b", "1"), mvPut("c", "1")) // 2
			mvMust(t, ks, mvPut("a", "2"))                                   // 3
			mvMust(t, ks, mvPutReq(wire.PutRequest{Key: "d", Value: []byte("1"), Lease: 7}))
			if err := mvCompact(ks, 3); err != nil {
				t.Fatal(err)
			}
			before := mvCapture(t, ks)
			resp, evs, err := mvApplyTxn(ks, &tc.req, mvLeases(7))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if resp != nil || evs != nil {
				t.Errorf("failed txn returned %+v, %+v", resp, evs)
			}
			after := mvCapture(t, ks)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("failed txn left a trace:\nbefore %+v\nafter  %+v", before, after)
			}
			// The next successful write takes the very next revision.
			_, evs = mvMust(t, ks, mvPut("x", "ok"))
			if ks.Rev() != before.Rev+1 || evs[0].KV.CreateRevision != before.Rev+1 || evs[0].KV.Version != 1 {
				t.Errorf("after rollback: Rev() %d, event %+v; want revision %d, version 1", ks.Rev(), evs[0], before.Rev+1)
			}
		})
	}
}

func TestKeyspaceReadsAtRevisions(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("a", "a1"))                   // 2
	mvMust(t, ks, mvPut("b", "b1"), mvPut("a", "a2")) // 3
	mvMust(t, ks, mvDel("a", ""))                     // 4
	mvMust(t, ks, mvPut("a", "a3"))                   // 5
	mvMust(t, ks, mvDel("\x00", "\x00"))              // 6
	want := map[int64][]KeyValue{
		1: nil,
		2: {mvKV("a", "a1", 2, 2, 1, 0)},
		3: {mvKV("a", "a2", 2, 3, 2, 0), mvKV("b", "b1", 3, 3, 1, 0)},
		4: {mvKV("b", "b1", 3, 3, 1, 0)},
		5: {mvKV("a", "a3", 5, 5, 1, 0), mvKV("b", "b1", 3, 3, 1, 0)},
		6: nil,
	}
	for rev := int64(0); rev <= 6; rev++ {
		w := want[rev]
		if rev == 0 {
			w = want[6]
		}
		got := mvRange(t, ks, wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", Revision: rev})
		if !reflect.DeepEqual(got.KVs, w) || got.Count != int64(len(w)) || got.Revision != 6 {
			t.Errorf("at %d: %+v count %d revision %d; want %+v, revision 6", rev, got.KVs, got.Count, got.Revision, w)
		}
	}
	for _, rev := range []int64{7, 100, math.MaxInt64} {
		if _, err := ks.Range(&wire.RangeRequest{Key: "a", Revision: rev}); !errors.Is(err, ErrFutureRev) {
			t.Errorf("Range at %d: err = %v, want ErrFutureRev", rev, err)
		}
	}
}

func TestKeyspaceCompact(t *testing.T) {
	build := func(t *testing.T) *keyspace {
		ks := newTestKeyspace(t)
		mvMust(t, ks, mvPut("a", "a1"), mvPut("gone", "g1")) // 2
		mvMust(t, ks, mvPut("a", "a2"))                      // 3
		mvMust(t, ks, mvDel("gone", ""), mvPut("b", "b1"))   // 4
		mvMust(t, ks, mvPut("a", "a3"))                      // 5
		mvMust(t, ks, mvDel("b", ""))                        // 6
		mvMust(t, ks, mvPut("c", "c1"))                      // 7
		return ks
	}
	for rev := int64(1); rev <= 7; rev++ {
		t.Run(fmt.Sprint("at ", rev), func(t *testing.T) {
			ks := build(t)
			before := mvCapture(t, ks)
			if err := mvCompact(ks, rev); err != nil {
				t.Fatalf("compact(%d): %v", rev, err)
			}
			after := mvCapture(t, ks)
			if after.Rev != before.Rev || after.Compact != rev {
				t.Fatalf("Revs() = %d, %d; want %d, %d", after.Rev, after.Compact, before.Rev, rev)
			}
			// Every retained revision, including the compacted one itself,
			// reads exactly as before.
			for r := rev; r <= before.Rev; r++ {
				if !reflect.DeepEqual(after.Ranges[r], before.Ranges[r]) {
					t.Errorf("read at %d changed: %+v, was %+v", r, after.Ranges[r], before.Ranges[r])
				}
			}
			for r := int64(1); r < rev; r++ {
				if _, err := ks.Range(&wire.RangeRequest{Key: "a", Revision: r}); !errors.Is(err, ErrCompacted) {
					t.Errorf("Range at %d < %d: err = %v, want ErrCompacted", r, rev, err)
				}
				if _, _, err := ks.history(r, 0, 10, true); !errors.Is(err, ErrCompacted) {
					t.Errorf("history(%d) after compact(%d): err = %v, want ErrCompacted", r, rev, err)
				}
			}
			// history from the compacted revision on is unchanged, except
			// that events at the compacted revision itself lose PrevKV: the
			// versions before it are gone (etcd reads PrevKV at rev-1, which
			// is compacted, and omits it too), and a keyspace rebuilt from a
			// snapshot could not have it.
			var wantHist []revEvents
			for _, re := range before.History {
				if re.rev == rev {
					re.events = slices.Clone(re.events)
					for i := range re.events {
						re.events[i].PrevKV = nil
					}
				}
				if re.rev >= rev {
					wantHist = append(wantHist, re)
				}
			}
			if got := mvHistory(t, ks, rev); !reflect.DeepEqual(got, wantHist) {
				t.Errorf("history(%d) = %+v, want %+v", rev, got, wantHist)
			}
			// A key whose tombstone is below rev is gone entirely.
			ks.mu.RLock()
			goneKept := ks.get("gone") != nil
			bKept := ks.get("b") != nil
			ks.mu.RUnlock()
			if goneKept != (rev <= 4) {
				t.Errorf("key deleted at 4 kept = %v after compact(%d)", goneKept, rev)
			}
			if bKept != (rev <= 6) {
				t.Errorf("key deleted at 6 kept = %v after compact(%d)", bKept, rev)
			}
			// The file keeps exactly the versions the index still has.
			var want []revision
			ks.mu.RLock()
			ks.index.Ascend(func(k *keyIndex) bool {
				want = append(want, k.revs...)
				return true
			})
			ks.mu.RUnlock()
			slices.SortFunc(want, func(a, b revision) int {
				if a.less(b) {
					return -1
				}
				return 1
			})
			if got := fileRevisions(t, ks); !reflect.DeepEqual(got, want) {
				t.Errorf("kv.db holds %v after compact(%d), want %v", got, rev, want)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		ks := build(t)
		if err := mvCompact(ks, 8); !errors.Is(err, ErrFutureRev) {
			t.Errorf("compact(8) at revision 7: err = %v, want ErrFutureRev", err)
		}
		if err := mvCompact(ks, 4); err != nil {
			t.Fatal(err)
		}
		for _, rev := range []int64{4, 3, 0, -1} {
			if err := mvCompact(ks, rev); !errors.Is(err, ErrCompacted) {
				t.Errorf("compact(%d) after compact(4): err = %v, want ErrCompacted", rev, err)
			}
		}
		if err := mvCompact(ks, 7); err != nil {
			t.Errorf("compact(7) = %v", err)
		}
		// Compacting at the current revision keeps the current state.
		if got := mvKeys(mvRange(t, ks, wire.RangeRequest{Key: "\x00", RangeEnd: "\x00"}).KVs); !reflect.DeepEqual(got, []string{"a", "c"}) {
			t.Errorf("keys after compact(current) = %v", got)
		}
		if got := mvHistory(t, ks, 7); len(got) != 1 || got[0].rev != 7 {
			t.Errorf("history(7) after compact(7) = %+v", got)
		}
	})
}

// TestKeyspaceReopenRoundTrip checks that a keyspace whose index is rebuilt
// from kv.db (as Open does) answers every read at every retained revision
// and every history query exactly as the original, PrevKV included.
func TestKeyspaceReopenRoundTrip(t *testing.T) {
	build := func(t *testing.T) *keyspace {
		ks := newTestKeyspace(t)
		mvMust(t, ks, mvPut("a", "a1"), mvPut("b", "b1"), mvPut("c", "c1"))                               // 2
		mvMust(t, ks, mvPutReq(wire.PutRequest{Key: "a", Value: []byte("a2"), Lease: 7}), mvDel("b", "")) // 3
		mvMust(t, ks, mvPut("b", "b2"), mvDel("c", ""), mvPut("d", "d1"))                                 // 4
		mvMust(t, ks, mvDel("a", "c"))                                                                    // 5
		mvMust(t, ks, mvPut("a", "a3"), mvPut("\x00", "zero"), mvPut("\xff", "ff"))                       // 6
		mvMust(t, ks, mvPut("d", "d2"))                                                                   // 7
		mvMust(t, ks, mvPut("d", "d3"), mvPut("c", "c2"))                                                 // 8
		return ks
	}
	for compactAt := int64(0); compactAt <= 8; compactAt++ {
		t.Run(fmt.Sprint("compacted at ", compactAt), func(t *testing.T) {
			ks := build(t)
			if compactAt > 0 {
				if err := mvCompact(ks, compactAt); err != nil {
					t.Fatal(err)
				}
			}
			orig := mvCapture(t, ks)
			restored := reopenTestKeyspace(t, ks)
			got := mvCapture(t, restored)
			if !reflect.DeepEqual(got.Ranges, orig.Ranges) {
				t.Errorf("reads differ after round trip:\ngot  %+v\nwant %+v", got.Ranges, orig.Ranges)
			}
			if !reflect.DeepEqual(got.History, orig.History) {
				t.Errorf("history differs after round trip:\ngot  %s\nwant %s", mvFmtHist(got.History), mvFmtHist(orig.History))
			}
			if got.Rev != orig.Rev || got.Compact != orig.Compact {
				t.Errorf("rev/compact = %d/%d, want %d/%d", got.Rev, got.Compact, orig.Rev, orig.Compact)
			}
			if !reflect.DeepEqual(got.Index, orig.Index) {
				t.Errorf("index = %q, want %q", got.Index, orig.Index)
			}
			// The restored keyspace takes writes like the original.
			_, evs := mvMust(t, restored, mvPut("d", "d4"))
			if restored.Rev() != orig.Rev+1 || evs[0].KV.Version != 4 || evs[0].PrevKV == nil || string(evs[0].PrevKV.Value) != "d3" {
				t.Errorf("write after restore: rev %d, event %+v", restored.Rev(), evs[0])
			}
		})
	}
}

func mvFmtHist(h []revEvents) string {
	var b strings.Builder
	for _, re := range h {
		fmt.Fprintf(&b, "\n  rev %d:", re.rev)
		for _, e := range re.events {
			fmt.Fprintf(&b, " %s %q", e.Type, e.KV.Key)
			if e.PrevKV != nil {
				fmt.Fprintf(&b, "(prev %q@%d)", e.PrevKV.Value, e.PrevKV.ModRevision)
			}
		}
	}
	return b.String()
}

func TestKeyspaceHistoryLimits(t *testing.T) {
	ks := newTestKeyspace(t)
	for i := range 5 {
		mvMust(t, ks, mvPut("k", fmt.Sprint(i))) // revisions 2..6
	}
	mvMust(t, ks, mvDel("missing", "")) // no revision
	tests := []struct {
		from, upTo  int64
		max         int
		wantRevs    []int64
		wantCovered int64
	}{
		{1, 0, 100, []int64{2, 3, 4, 5, 6}, 6},
		{4, 0, 100, []int64{4, 5, 6}, 6},
		{2, 4, 100, []int64{2, 3, 4}, 4},
		{2, 0, 2, []int64{2, 3}, 3},
		{5, 0, 2, []int64{5, 6}, 6},
		{7, 0, 100, nil, 6},
		{2, 100, 100, []int64{2, 3, 4, 5, 6}, 6},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("from %d to %d max %d", tc.from, tc.upTo, tc.max), func(t *testing.T) {
			revs, covered, err := ks.history(tc.from, tc.upTo, tc.max, true)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, re := range revs {
				got = append(got, re.rev)
				if len(re.events) != 1 || re.events[0].KV.ModRevision != re.rev {
					t.Errorf("revision %d events = %+v", re.rev, re.events)
				}
			}
			if !reflect.DeepEqual(got, tc.wantRevs) || covered != tc.wantCovered {
				t.Errorf("history = %v covered %d, want %v covered %d", got, covered, tc.wantRevs, tc.wantCovered)
			}
		})
	}
}

// ---- Range ----

// mvRangeKeys are the keys of TestKeyspaceRange, written one per revision
// in this order (so key i has create and mod revision i+2).
var mvRangeKeys = []string{"a", "ab", "abc", "a\xff", "a\xff\xff", "b", "\x00", "\x00\x00", "\xff", "\xff\xff", "c\x00"}

func TestKeyspaceRange(t *testing.T) {
	ks := newTestKeyspace(t)
	for _, k := range mvRangeKeys {
		mvMust(t, ks, mvPut(k, "v:"+k))
	}
	all := slices.Clone(mvRangeKeys)
	sort.Strings(all)
	tests := []struct {
		name     string
		key, end string
		want     []string
	}{
		{"empty end is one key", "ab", "", []string{"ab"}},
		{"empty end, missing key", "aa", "", []string{}},
		{"empty end, key 0x00", "\x00", "", []string{"\x00"}},
		{"half-open range", "a", "b", []string{"a", "ab", "abc", "a\xff", "a\xff\xff"}},
		{"end is excluded", "a", "abc", []string{"a", "ab"}},
		{"end 0x00 means all keys >= key", "b", "\x00", []string{"b", "c\x00", "\xff", "\xff\xff"}},
		{"end 0x00 from 0xff", "\xff", "\x00", []string{"\xff", "\xff\xff"}},
		{"key 0x00 end 0x00 is everything", "\x00", "\x00", all},
		{"key 0x00 0x00 end 0x00", "\x00\x00", "\x00", all[1:]},
		{"prefix a", "a", PrefixEnd("a"), []string{"a", "ab", "abc", "a\xff", "a\xff\xff"}},
		{"prefix ab", "ab", PrefixEnd("ab"), []string{"ab", "abc"}},
		{"prefix with 0xff carries", "a\xff", PrefixEnd("a\xff"), []string{"a\xff", "a\xff\xff"}},
		{"prefix of all 0xff", "\xff", PrefixEnd("\xff"), []string{"\xff", "\xff\xff"}},
		{"prefix 0x00", "\x00", PrefixEnd("\x00"), []string{"\x00", "\x00\x00"}},
		{"prefix c", "c", PrefixEnd("c"), []string{"c\x00"}},
		{"end before key is empty", "b", "a", []string{}},
		{"end equal to key is empty", "b", "b", []string{}},
		{"range of missing keys", "abd", "a\xfe", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := mvRange(t, ks, wire.RangeRequest{Key: tc.key, RangeEnd: tc.end})
			if got := mvKeys(resp.KVs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("keys = %q, want %q (ascending by key)", got, tc.want)
			}
			if resp.Count != int64(len(tc.want)) || resp.More {
				t.Errorf("count %d more %v, want %d false", resp.Count, resp.More, len(tc.want))
			}
			for _, kv := range resp.KVs {
				if string(kv.Value) != "v:"+kv.Key || kv.Version != 1 || kv.CreateRevision != kv.ModRevision {
					t.Errorf("kv = %+v", kv)
				}
			}
			// Read at an old revision: only the keys written by then.
			old := mvRange(t, ks, wire.RangeRequest{Key: tc.key, RangeEnd: tc.end, Revision: 5}) // a, ab, abc, a\xff
			for _, kv := range old.KVs {
				if kv.ModRevision > 5 {
					t.Errorf("read at 5 returned %+v", kv)
				}
			}
			if old.Revision != ks.Rev() {
				t.Errorf("read at 5: header revision %d, want current %d", old.Revision, ks.Rev())
			}
		})
	}
}

// mvSortStore builds five keys whose versions, create revisions, mod
// revisions and values are each distinct, so that every sort target gives
// one unambiguous order, and no target sorts like the keys.
func mvSortStore(t *testing.T) *keyspace {
	ks := newTestKeyspace(t)
	vals := map[string]string{"k1": "v-c", "k2": "v-a", "k3": "v-e", "k4": "v-b", "k5": "v-d"}
	for _, k := range []string{"k3", "k1", "k5", "k2", "k4", "k5", "k3", "k4", "k5", "k1", "k3", "k4", "k5", "k3", "k5"} {
		mvMust(t, ks, mvPut(k, vals[k]))
	}
	return ks
}

func TestKeyspaceRangeSort(t *testing.T) {
	ks := mvSortStore(t)
	byKey := mvRange(t, ks, wire.RangeRequest{Key: "k", RangeEnd: "l"}).KVs
	if got := mvKeys(byKey); !reflect.DeepEqual(got, []string{"k1", "k2", "k3", "k4", "k5"}) {
		t.Fatalf("unsorted range = %v", got)
	}
	field := map[uint8]func(kv KeyValue) string{
		wire.SortByKey:     func(kv KeyValue) string { return kv.Key },
		wire.SortByVersion: func(kv KeyValue) string { return fmt.Sprintf("%020d", kv.Version) },
		wire.SortByCreate:  func(kv KeyValue) string { return fmt.Sprintf("%020d", kv.CreateRevision) },
		wire.SortByMod:     func(kv KeyValue) string { return fmt.Sprintf("%020d", kv.ModRevision) },
		wire.SortByValue:   func(kv KeyValue) string { return string(kv.Value) },
	}
	// Sanity: the fixture really has distinct values per target.
	for target, f := range field {
		seen := map[string]bool{}
		for _, kv := range byKey {
			seen[f(kv)] = true
		}
		if len(seen) != len(byKey) {
			t.Fatalf("fixture: target %d has ties", target)
		}
	}
	expect := func(target, order uint8) []string {
		kvs := slices.Clone(byKey)
		if target == wire.SortByKey && order == wire.SortNone {
			return mvKeys(kvs)
		}
		sort.Slice(kvs, func(i, j int) bool {
			if order == wire.SortDescend {
				return field[target](kvs[i]) > field[target](kvs[j])
			}
			return field[target](kvs[i]) < field[target](kvs[j]) // ASCEND, or NONE with a non-KEY target
		})
		return mvKeys(kvs)
	}
	// Hard-coded expectations for a few, so the test does not only agree
	// with its own sort.
	fixed := map[[2]uint8][]string{
		{wire.SortByKey, wire.SortDescend}:     {"k5", "k4", "k3", "k2", "k1"},
		{wire.SortByVersion, wire.SortNone}:    {"k2", "k1", "k4", "k3", "k5"},
		{wire.SortByValue, wire.SortDescend}:   {"k3", "k5", "k1", "k4", "k2"},
		{wire.SortByCreate, wire.SortAscend}:   {"k3", "k1", "k5", "k2", "k4"},
		{wire.SortByMod, wire.SortNone}:        {"k2", "k1", "k4", "k3", "k5"},
		{wire.SortByCreate, wire.SortDescend}:  {"k4", "k2", "k5", "k1", "k3"},
		{wire.SortByVersion, wire.SortDescend}: {"k5", "k3", "k4", "k1", "k2"},
	}
	for _, target := range []uint8{wire.SortByKey, wire.SortByVersion, wire.SortByCreate, wire.SortByMod, wire.SortByValue} {
		for _, order := range []uint8{wire.SortNone, wire.SortAscend, wire.SortDescend} {
			t.Run(fmt.Sprintf("target %d order %d", target, order), func(t *testing.T) {
				want := expect(target, order)
				if f, ok := fixed[[2]uint8{target, order}]; ok && !reflect.DeepEqual(f, want) {
					t.Fatalf("fixture: expected order %v, hard-coded %v", want, f)
				}
				resp := mvRange(t, ks, wire.RangeRequest{Key: "k", RangeEnd: "l", SortTarget: target, SortOrder: order})
				if got := mvKeys(resp.KVs); !reflect.DeepEqual(got, want) {
					t.Errorf("order = %v, want %v", got, want)
				}
				if resp.Count != 5 || resp.More {
					t.Errorf("count %d more %v", resp.Count, resp.More)
				}
				// keys_only drops the values after sorting (etcd sorts by
				// value first).
				ko := mvRange(t, ks, wire.RangeRequest{Key: "k", RangeEnd: "l", SortTarget: target, SortOrder: order, KeysOnly: true})
				if got := mvKeys(ko.KVs); !reflect.DeepEqual(got, want) {
					t.Errorf("keys_only order = %v, want %v", got, want)
				}
				for _, kv := range ko.KVs {
					if kv.Value != nil || kv.Version == 0 || kv.ModRevision == 0 {
						t.Errorf("keys_only kv = %+v", kv)
					}
				}
				// With a limit: sorted over the whole range, then cut; except
				// that etcd, for a non-KEY target with order NONE, applies
				// the limit (+1) in key order first and sorts only those
				// (server/etcdserver/txn/range.go, isDefaultOrdering).
				lim := mvRange(t, ks, wire.RangeRequest{Key: "k", RangeEnd: "l", SortTarget: target, SortOrder: order, Limit: 2})
				wantLim := want[:2]
				if order == wire.SortNone && target != wire.SortByKey {
					three := mvSortSubset(byKey[:3], target)
					wantLim = three[:2]
				}
				if got := mvKeys(lim.KVs); !reflect.DeepEqual(got, wantLim) || !lim.More || lim.Count != 5 {
					t.Errorf("limit 2: %v more %v count %d; want %v more true count 5", got, lim.More, lim.Count, wantLim)
				}
			})
		}
	}
}

// mvSortSubset sorts kvs ascending by target.
func mvSortSubset(kvs []KeyValue, target uint8) []string {
	kvs = slices.Clone(kvs)
	slices.SortFunc(kvs, func(a, b KeyValue) int {
		switch target {
		case wire.SortByVersion:
			return int(a.Version - b.Version)
		case wire.SortByCreate:
			return int(a.CreateRevision - b.CreateRevision)
		case wire.SortByMod:
			return int(a.ModRevision - b.ModRevision)
		case wire.SortByValue:
			return bytes.Compare(a.Value, b.Value)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return mvKeys(kvs)
}

func TestKeyspaceRangeLimitFiltersCount(t *testing.T) {
	// k1..k5: k_i created at revision i+1; k2 and k4 updated at 7 and 8.
	ks := newTestKeyspace(t)
	for i := 1; i <= 5; i++ {
		mvMust(t, ks, mvPut(fmt.Sprint("k", i), "v"))
	}
	mvMust(t, ks, mvPut("k2", "v2")) // 7
	mvMust(t, ks, mvPut("k4", "v2")) // 8
	mvMust(t, ks, mvPut("z", "other"))
	base := wire.RangeRequest{Key: "k", RangeEnd: PrefixEnd("k")}
	tests := []struct {
		name     string
		mod      func(r *wire.RangeRequest)
		want     []string
		more     bool
		count    int64
		noKVs    bool
		noValues bool
	}{
		{"no limit", func(r *wire.RangeRequest) {}, []string{"k1", "k2", "k3", "k4", "k5"}, false, 5, false, false},
		{"limit cuts", func(r *wire.RangeRequest) { r.Limit = 2 }, []string{"k1", "k2"}, true, 5, false, false},
		{"limit equal to size", func(r *wire.RangeRequest) { r.Limit = 5 }, []string{"k1", "k2", "k3", "k4", "k5"}, false, 5, false, false},
		{"limit above size", func(r *wire.RangeRequest) { r.Limit = 50 }, []string{"k1", "k2", "k3", "k4", "k5"}, false, 5, false, false},
		{"limit descending", func(r *wire.RangeRequest) { r.Limit = 2; r.SortOrder = wire.SortDescend }, []string{"k5", "k4"}, true, 5, false, false},
		// Count is computed before the min/max filters (as etcd does: its
		// count comes from the index, and the filters prune afterwards).
		{"min mod", func(r *wire.RangeRequest) { r.MinModRev = 7 }, []string{"k2", "k4"}, false, 5, false, false},
		{"max mod", func(r *wire.RangeRequest) { r.MaxModRev = 4 }, []string{"k1", "k3"}, false, 5, false, false},
		{"min create", func(r *wire.RangeRequest) { r.MinCreateRev = 4 }, []string{"k3", "k4", "k5"}, false, 5, false, false},
		{"max create", func(r *wire.RangeRequest) { r.MaxCreateRev = 3 }, []string{"k1", "k2"}, false, 5, false, false},
		{"min and max mod", func(r *wire.RangeRequest) { r.MinModRev = 3; r.MaxModRev = 7 }, []string{"k2", "k3", "k5"}, false, 5, false, false},
		{"filter before limit", func(r *wire.RangeRequest) { r.MinModRev = 4; r.Limit = 2 }, []string{"k2", "k3"}, true, 5, false, false},
		{"filter before limit, no more", func(r *wire.RangeRequest) { r.MinModRev = 7; r.Limit = 2 }, []string{"k2", "k4"}, false, 5, false, false},
		{"filter, sort and limit", func(r *wire.RangeRequest) {
			r.MaxCreateRev = 4
			r.SortTarget, r.SortOrder = wire.SortByMod, wire.SortDescend
			r.Limit = 2
		}, []string{"k2", "k3"}, true, 5, false, false},
		{"filter with non-key target and no order", func(r *wire.RangeRequest) {
			r.MinCreateRev = 3
			r.SortTarget = wire.SortByMod
			r.Limit = 2
		}, []string{"k3", "k5"}, true, 5, false, false},
		{"filter excludes all", func(r *wire.RangeRequest) { r.MinModRev = 100 }, []string{}, false, 5, false, false},
		{"count only", func(r *wire.RangeRequest) { r.CountOnly = true }, []string{}, false, 5, true, false},
		{"count only with limit", func(r *wire.RangeRequest) { r.CountOnly = true; r.Limit = 1 }, []string{}, false, 5, true, false},
		{"count only with filter", func(r *wire.RangeRequest) { r.CountOnly = true; r.MinModRev = 7 }, []string{}, false, 5, true, false},
		{"keys only", func(r *wire.RangeRequest) { r.KeysOnly = true; r.Limit = 3 }, []string{"k1", "k2", "k3"}, true, 5, false, true},
		{"old revision", func(r *wire.RangeRequest) { r.Revision = 3; r.Limit = 1 }, []string{"k1"}, true, 2, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			tc.mod(&r)
			resp := mvRange(t, ks, r)
			if got := mvKeys(resp.KVs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("keys = %v, want %v", got, tc.want)
			}
			if resp.More != tc.more || resp.Count != tc.count {
				t.Errorf("more %v count %d, want %v %d", resp.More, resp.Count, tc.more, tc.count)
			}
			if tc.noKVs && resp.KVs != nil {
				t.Errorf("count_only returned kvs %+v", resp.KVs)
			}
			for _, kv := range resp.KVs {
				if (kv.Value == nil) != tc.noValues {
					t.Errorf("kv %+v: value present = %v", kv, kv.Value != nil)
				}
				if kv.CreateRevision == 0 || kv.ModRevision == 0 || kv.Version == 0 {
					t.Errorf("kv %+v lacks metadata", kv)
				}
			}
		})
	}
}

// ---- Compares ----

func TestKeyspaceCompare(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("a", "v1"))                                                   // 2
	mvMust(t, ks, mvPutReq(wire.PutRequest{Key: "a", Value: []byte("v2"), Lease: 7})) // 3: a create 2 mod 3 ver 2 lease 7
	mvMust(t, ks, mvPut("ab", "x"))                                                   // 4: ab create 4 mod 4 ver 1
	mvMust(t, ks, mvPut("gone", "g"))                                                 // 5
	mvMust(t, ks, mvDel("gone", ""))                                                  // 6
	mvMust(t, ks, mvPut("e", ""))                                                     // 7: empty value
	num := func(target, result uint8, key string, n int64) wire.Compare {
		return wire.Compare{Target: target, Result: result, Key: key, Int: n}
	}
	val := func(result uint8, key, v string) wire.Compare {
		return wire.Compare{Target: wire.CmpValue, Result: result, Key: key, Value: []byte(v)}
	}
	rng := func(c wire.Compare, end string) wire.Compare { c.RangeEnd = end; return c }
	const (
		eq, ne, gt, lt = wire.CmpEqual, wire.CmpNotEqual, wire.CmpGreater, wire.CmpLess
	)
	tests := []struct {
		name string
		cmps []wire.Compare
		want bool
	}{
		{"version =", []wire.Compare{num(wire.CmpVersion, eq, "a", 2)}, true},
		{"version = wrong", []wire.Compare{num(wire.CmpVersion, eq, "a", 1)}, false},
		{"version !=", []wire.Compare{num(wire.CmpVersion, ne, "a", 1)}, true},
		{"version != same", []wire.Compare{num(wire.CmpVersion, ne, "a", 2)}, false},
		{"version >", []wire.Compare{num(wire.CmpVersion, gt, "a", 1)}, true},
		{"version > equal", []wire.Compare{num(wire.CmpVersion, gt, "a", 2)}, false},
		{"version <", []wire.Compare{num(wire.CmpVersion, lt, "a", 3)}, true},
		{"version < equal", []wire.Compare{num(wire.CmpVersion, lt, "a", 2)}, false},
		{"create =", []wire.Compare{num(wire.CmpCreate, eq, "a", 2)}, true},
		{"mod =", []wire.Compare{num(wire.CmpMod, eq, "a", 3)}, true},
		{"mod <", []wire.Compare{num(wire.CmpMod, lt, "a", 3)}, false},
		{"lease =", []wire.Compare{num(wire.CmpLease, eq, "a", 7)}, true},
		{"lease = 0 without lease", []wire.Compare{num(wire.CmpLease, eq, "ab", 0)}, true},
		{"value =", []wire.Compare{val(eq, "a", "v2")}, true},
		{"value = old", []wire.Compare{val(eq, "a", "v1")}, false},
		{"value !=", []wire.Compare{val(ne, "a", "v1")}, true},
		{"value >", []wire.Compare{val(gt, "a", "v1")}, true},
		{"value > longer", []wire.Compare{val(gt, "a", "v2\x00")}, false},
		{"value <", []wire.Compare{val(lt, "a", "v3")}, true},
		{"value < equal", []wire.Compare{val(lt, "a", "v2")}, false},
		{"empty value = empty", []wire.Compare{val(eq, "e", "")}, true},
		// A missing key compares as 0 for every numeric target...
		{"missing version = 0", []wire.Compare{num(wire.CmpVersion, eq, "zz", 0)}, true},
		{"missing create = 0", []wire.Compare{num(wire.CmpCreate, eq, "zz", 0)}, true},
		{"missing mod = 0", []wire.Compare{num(wire.CmpMod, eq, "zz", 0)}, true},
		{"missing lease = 0", []wire.Compare{num(wire.CmpLease, eq, "zz", 0)}, true},
		{"missing version > 0", []wire.Compare{num(wire.CmpVersion, gt, "zz", 0)}, false},
		{"missing mod < 1", []wire.Compare{num(wire.CmpMod, lt, "zz", 1)}, true},
		{"deleted key version = 0", []wire.Compare{num(wire.CmpVersion, eq, "gone", 0)}, true},
		{"deleted key create = 0", []wire.Compare{num(wire.CmpCreate, eq, "gone", 0)}, true},
		// ...but a value compare on a missing key is always false.
		{"missing value = empty", []wire.Compare{val(eq, "zz", "")}, false},
		{"missing value != x", []wire.Compare{val(ne, "zz", "x")}, false},
		{"missing value < x", []wire.Compare{val(lt, "zz", "x")}, false},
		{"missing value > empty", []wire.Compare{val(gt, "zz", "")}, false},
		{"deleted value = old", []wire.Compare{val(eq, "gone", "g")}, false},
		// A range compare must hold for every key in it (a and ab here).
		{"range version > 0", []wire.Compare{rng(num(wire.CmpVersion, gt, "a", 0), "b")}, true},
		{"range version = 2 fails for ab", []wire.Compare{rng(num(wire.CmpVersion, eq, "a", 2), "b")}, false},
		{"range version < 3", []wire.Compare{rng(num(wire.CmpVersion, lt, "a", 3), "b")}, true},
		{"range mod > 2", []wire.Compare{rng(num(wire.CmpMod, gt, "a", 2), "b")}, true},
		{"range mod > 3 fails for a", []wire.Compare{rng(num(wire.CmpMod, gt, "a", 3), "b")}, false},
		{"range value != other", []wire.Compare{rng(val(ne, "a", "zz"), "b")}, true},
		{"range value = v2 fails for ab", []wire.Compare{rng(val(eq, "a", "v2"), "b")}, false},
		{"range lease = 0 fails for a", []wire.Compare{rng(num(wire.CmpLease, eq, "a", 0), "b")}, false},
		{"from-key range", []wire.Compare{rng(num(wire.CmpCreate, gt, "ab", 3), "\x00")}, true},
		{"from-key range fails", []wire.Compare{rng(num(wire.CmpCreate, gt, "a", 3), "\x00")}, false},
		{"range skips deleted keys", []wire.Compare{rng(num(wire.CmpVersion, gt, "e", 0), "h")}, true},
		// An empty range behaves like a missing key.
		{"empty range version = 0", []wire.Compare{rng(num(wire.CmpVersion, eq, "m", 0), "n")}, true},
		{"empty range create != 0", []wire.Compare{rng(num(wire.CmpCreate, ne, "m", 0), "n")}, false},
		{"empty range value = empty", []wire.Compare{rng(val(eq, "m", ""), "n")}, false},
		{"inverted range is empty", []wire.Compare{rng(num(wire.CmpVersion, eq, "b", 0), "a")}, true},
		// Several compares: all must hold.
		{"all hold", []wire.Compare{num(wire.CmpVersion, eq, "a", 2), val(eq, "ab", "x"), num(wire.CmpVersion, eq, "zz", 0)}, true},
		{"last fails", []wire.Compare{num(wire.CmpVersion, eq, "a", 2), val(eq, "ab", "x"), num(wire.CmpVersion, eq, "zz", 1)}, false},
		{"first fails", []wire.Compare{num(wire.CmpVersion, eq, "a", 9), val(eq, "ab", "x")}, false},
		{"no compares", nil, true},
		{"unknown target is false", []wire.Compare{{Target: 9, Result: eq, Key: "a"}}, false},
		{"unknown result is false", []wire.Compare{{Target: wire.CmpVersion, Result: 9, Key: "a", Int: 2}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &wire.TxnRequest{
				Compare: tc.cmps,
				Success: []wire.RequestOp{mvGet(wire.RangeRequest{Key: "a"})},
				Failure: []wire.RequestOp{mvGet(wire.RangeRequest{Key: "ab"}), mvGet(wire.RangeRequest{Key: "e"})},
			}
			resp, evs, err := mvApplyTxn(ks, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantOps := 1
			if !tc.want {
				wantOps = 2
			}
			if resp.Succeeded != tc.want || len(resp.Responses) != wantOps || evs != nil {
				t.Errorf("succeeded = %v with %d responses, want %v with %d", resp.Succeeded, len(resp.Responses), tc.want, wantOps)
			}
			// Read-only transactions evaluate the same way.
			ro, err := ks.readTxn(req)
			if err != nil || ro.Succeeded != tc.want {
				t.Errorf("readTxn: succeeded %v err %v, want %v", ro != nil && ro.Succeeded, err, tc.want)
			}
		})
	}
	if ks.Rev() != 7 {
		t.Errorf("compares changed the revision to %d", ks.Rev())
	}
}

// TestKeyspaceNestedCompareSeesStateBeforeTxn: etcd evaluates the compares
// of every nested transaction against the state before the whole
// transaction (compareToPath in server/etcdserver/txn), not after the
// writes of earlier operations.
func TestKeyspaceNestedCompareSeesStateBeforeTxn(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("a", "old"))
	resp, _ := mvMust(t, ks,
		mvPut("a", "new"),
		mvPut("b", "b"),
		mvNested(wire.TxnRequest{
			Compare: []wire.Compare{{Target: wire.CmpValue, Result: wire.CmpEqual, Key: "a", Value: []byte("old")}, {Target: wire.CmpVersion, Result: wire.CmpEqual, Key: "b", Int: 0}},
			Success: []wire.RequestOp{mvPut("then", "1")},
			Failure: []wire.RequestOp{mvPut("else", "1")},
		}),
	)
	if !resp.Responses[2].Txn.Succeeded {
		t.Errorf("nested compare saw the txn's own writes; etcd evaluates it before them")
	}
	if got := mvKeys(mvRange(t, ks, wire.RangeRequest{Key: "\x00", RangeEnd: "\x00"}).KVs); !reflect.DeepEqual(got, []string{"a", "b", "then"}) {
		t.Errorf("keys = %v", got)
	}
}

// TestKeyspaceTxnRangeRevisionChecks: a read inside a transaction is
// checked against the revision before the transaction, as etcd's checkTxn
// does, so the transaction's own (not yet committed) revision is a future
// one.
func TestKeyspaceTxnRangeRevisionChecks(t *testing.T) {
	ks := newTestKeyspace(t)
	mvMust(t, ks, mvPut("a", "1")) // 2
	mvMust(t, ks, mvPut("a", "2")) // 3
	_, _, err := mvApplyTxn(ks, &wire.TxnRequest{Success: []wire.RequestOp{mvPut("b", "1"), mvGet(wire.RangeRequest{Key: "a", Revision: 4})}}, nil)
	if !errors.Is(err, ErrFutureRev) {
		t.Errorf("range at the txn's own revision: err = %v, want ErrFutureRev", err)
	}
	resp, _ := mvMust(t, ks, mvPut("b", "1"), mvGet(wire.RangeRequest{Key: "a", Revision: 2}))
	if kvs := resp.Responses[1].Get.KVs; len(kvs) != 1 || string(kvs[0].Value) != "1" || resp.Responses[1].Get.Revision != 4 {
		t.Errorf("range at 2 inside a txn = %+v", resp.Responses[1].Get)
	}
}

// ---- Fuzzing ----

// mvModel is the naive reference: every key's full history.
type mvModel struct {
	rev, compactRev int64
	hist            map[string][]mvModelVer
}

type mvModelVer struct {
	rev, create, ver int64
	value            string
	tomb             bool
}

func (m *mvModel) live(k string, rev int64) *mvModelVer {
	var cur *mvModelVer
	for i, v := range m.hist[k] {
		if v.rev <= rev {
			cur = &m.hist[k][i]
		}
	}
	if cur == nil || cur.tomb {
		return nil
	}
	return cur
}

func mvInRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

// mvFuzzReader hands out bytes of the fuzz input, zeros when exhausted.
type mvFuzzReader struct{ b []byte }

func (r *mvFuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *mvFuzzReader) key() string {
	alphabet := []byte{0x00, 'a', 'b', 0xff}
	c := r.byte()
	n := 1 + int(c%3)
	k := make([]byte, n)
	for i := range k {
		k[i] = alphabet[(c>>(2+2*i))%4]
	}
	return string(k)
}

// end returns a range end for key in one of the four conventions.
func (r *mvFuzzReader) end(key string) string {
	switch r.byte() % 4 {
	case 0:
		return ""
	case 1:
		return "\x00"
	case 2:
		return PrefixEnd(key)
	}
	return r.key()
}

func FuzzRange(f *testing.F) {
	f.Add([]byte{0, 5, 1, 0, 9, 2, 2, 5, 3, 1, 4, 0}, []byte{1, 1, 2, 3, 0})
	f.Add([]byte{0, 0xff, 0, 0xfe, 0, 0x01, 3, 0x00, 1, 0, 0x55, 1}, []byte{0, 0, 0, 0, 0, 0x80, 2, 7})
	f.Add([]byte{1, 0x10, 1, 0x20, 1, 0x30, 4, 2, 2, 0x10, 0, 0x10, 4, 9}, []byte{0x0, 1, 1, 2, 1, 0x40})
	f.Add([]byte("\x00\x03\x00\x07\x00\x0b\x03\x03\x02\x00\x0f\x04\x01"), []byte("\x03\x03\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, ops, queries []byte) {
		if len(ops) > 400 || len(queries) > 200 {
			return
		}
		ks := newTestKeyspace(t)
		m := &mvModel{rev: 1, hist: map[string][]mvModelVer{}}
		in := &mvFuzzReader{b: ops}
		for len(in.b) > 0 {
			switch in.byte() % 5 {
			case 0, 1: // put
				k := in.key()
				v := string([]byte{in.byte()})
				mvMust(t, ks, mvPut(k, v))
				m.rev++
				nv := mvModelVer{rev: m.rev, create: m.rev, ver: 1, value: v}
				if cur := m.live(k, m.rev); cur != nil {
					nv.create, nv.ver = cur.create, cur.ver+1
				}
				m.hist[k] = append(m.hist[k], nv)
			case 2, 3: // delete a key or a range
				k := in.key()
				end := in.end(k)
				resp, _ := mvMust(t, ks, mvDel(k, end))
				var hit []string
				for key := range m.hist {
					if mvInRange(key, k, end) && m.live(key, m.rev) != nil {
						hit = append(hit, key)
					}
				}
				if int64(len(hit)) != resp.Responses[0].Delete.Deleted {
					t.Fatalf("delete [%q, %q): deleted %d, model %d", k, end, resp.Responses[0].Delete.Deleted, len(hit))
				}
				if len(hit) > 0 {
					m.rev++
					for _, key := range hit {
						m.hist[key] = append(m.hist[key], mvModelVer{rev: m.rev, tomb: true})
					}
				}
			case 4: // compact
				if span := m.rev - m.compactRev; span > 0 {
					rev := m.compactRev + 1 + int64(in.byte())%span
					if err := mvCompact(ks, rev); err != nil {
						t.Fatalf("compact(%d) at %d (compacted %d): %v", rev, m.rev, m.compactRev, err)
					}
					m.compactRev = rev
				}
			}
			if ks.Rev() != m.rev {
				t.Fatalf("revision %d, model %d", ks.Rev(), m.rev)
			}
		}
		restored := reopenTestKeyspace(t, ks)
		ks = restored
		check := func(key, end string, limit, rev int64, order uint8) {
			req := wire.RangeRequest{Key: key, RangeEnd: end, Limit: limit, Revision: rev, SortOrder: order}
			for _, k := range []*keyspace{ks, restored} {
				got, err := k.Range(&req)
				mvCheckRange(t, m, &req, got, err)
			}
		}
		// Everything, at every revision (including compacted and future).
		for rev := int64(0); rev <= m.rev+1; rev++ {
			check("\x00", "\x00", 0, rev, wire.SortNone)
		}
		q := &mvFuzzReader{b: queries}
		for len(q.b) > 0 {
			key := q.key()
			end := q.end(key)
			limit := int64(q.byte() % 4)
			rev := int64(q.byte()) % (m.rev + 2)
			order := q.byte() % 3
			check(key, end, limit, rev, order)
		}
	})
}

// mvCheckRange compares a Range result with the model.
func mvCheckRange(t *testing.T, m *mvModel, req *wire.RangeRequest, got *GetResponse, err error) {
	t.Helper()
	rev := req.Revision
	if rev == 0 {
		rev = m.rev
	}
	switch {
	case rev > m.rev:
		if !errors.Is(err, ErrFutureRev) {
			t.Fatalf("Range %+v at current %d: err %v, want ErrFutureRev", req, m.rev, err)
		}
		return
	case rev < m.compactRev:
		if !errors.Is(err, ErrCompacted) {
			t.Fatalf("Range %+v compacted at %d: err %v, want ErrCompacted", req, m.compactRev, err)
		}
		return
	case err != nil:
		t.Fatalf("Range %+v: %v", req, err)
	}
	keys := slices.Sorted(maps.Keys(m.hist))
	var want []KeyValue
	for _, k := range keys {
		if !mvInRange(k, req.Key, req.RangeEnd) {
			continue
		}
		if v := m.live(k, rev); v != nil {
			want = append(want, KeyValue{Key: k, Value: []byte(v.value), CreateRevision: v.create, ModRevision: v.rev, Version: v.ver})
		}
	}
	count := int64(len(want))
	if req.SortOrder == wire.SortDescend {
		slices.Reverse(want)
	}
	more := false
	if req.Limit > 0 && int64(len(want)) > req.Limit {
		want, more = want[:req.Limit], true
	}
	if got.Count != count || got.More != more || got.Revision != m.rev {
		t.Fatalf("Range %+v: count %d more %v revision %d; model %d %v %d", req, got.Count, got.More, got.Revision, count, more, m.rev)
	}
	if len(got.KVs) != len(want) {
		t.Fatalf("Range %+v: %d kvs %q, model %d %q", req, len(got.KVs), mvKeys(got.KVs), len(want), mvKeys(want))
	}
	for i := range want {
		if !mvSameKV(got.KVs[i], want[i]) {
			t.Fatalf("Range %+v: kv %d = %+v, model %+v", req, i, got.KVs[i], want[i])
		}
	}
}

// FuzzPrefixEnd checks PrefixEnd against its definition: [p, PrefixEnd(p))
// (with "\x00" meaning "no upper bound") holds exactly the strings that
// start with p. It is tested on strings near p and near the end.
func FuzzPrefixEnd(f *testing.F) {
	for _, s := range []string{"", "a", "abc", "a\xff", "\xff", "\xff\xff", "a\xff\xff", "\x00", "\xfe\xff", "a\x00\xff", "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, pb []byte) {
		if len(pb) > 64 {
			return
		}
		p := string(pb)
		end := PrefixEnd(p)
		allFF := true
		for i := 0; i < len(p); i++ {
			allFF = allFF && p[i] == 0xff
		}
		if allFF != (end == "\x00") {
			t.Fatalf("PrefixEnd(%q) = %q; all 0xff (or empty): %v", p, end, allFF)
		}
		if end != "\x00" && (end <= p || strings.HasPrefix(end, p)) {
			t.Fatalf("PrefixEnd(%q) = %q is not above every string with the prefix", p, end)
		}
		if len(end) > len(p) && end != "\x00" {
			t.Fatalf("PrefixEnd(%q) = %q is longer than the prefix", p, end)
		}
		var cands []string
		add := func(s string) { cands = append(cands, s, s+"\x00", s+"\x01", s+"\xff", s+"\xff\xff\xff") }
		add(p)
		add(end)
		for i := 0; i <= len(p); i++ {
			add(p[:i])
			if i < len(p) {
				for _, d := range []int{-1, 1} {
					if c := int(p[i]) + d; c >= 0 && c <= 0xff {
						add(p[:i] + string([]byte{byte(c)}))
						add(p[:i] + string([]byte{byte(c)}) + p[i+1:])
					}
				}
				add(p[:i] + "\x00")
				add(p[:i] + "\xff")
			}
		}
		if end != "\x00" && len(end) > 0 {
			last := end[len(end)-1]
			add(end[:len(end)-1] + string([]byte{last - 1}))
		}
		for _, s := range cands {
			if in, has := mvInRange(s, p, end), strings.HasPrefix(s, p); in != has {
				t.Fatalf("PrefixEnd(%q) = %q: %q in range %v, has prefix %v", p, end, s, in, has)
			}
			// keyRange (op.go, used for watches and duplicate checks) agrees.
			if kr := (keyRange{p, end}).contains(s); kr != strings.HasPrefix(s, p) {
				t.Fatalf("keyRange{%q, %q}.contains(%q) = %v", p, end, s, kr)
			}
		}
	})
}
