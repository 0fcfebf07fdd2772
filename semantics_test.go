package accord_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/accordkv/accord"
)

// End-to-end checks of etcd's KV semantics (etcd-semantics.md) through the
// public API of a single-node Store with real raft. Helpers carry a "sem"
// prefix so they cannot collide with other test files of the package.

func semOpen(t *testing.T) (*accord.Store, context.Context) {
	t.Helper()
	s := accord.OpenTestStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return s, ctx
}

func semPut(t *testing.T, ctx context.Context, s *accord.Store, key, val string, opts ...accord.OpOption) *accord.PutResponse {
	t.Helper()
	resp, err := s.Put(ctx, key, []byte(val), opts...)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return resp
}

func semGet(t *testing.T, ctx context.Context, s *accord.Store, key string, opts ...accord.OpOption) *accord.GetResponse {
	t.Helper()
	resp, err := s.Get(ctx, key, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return resp
}

func semRev(t *testing.T, ctx context.Context, s *accord.Store) int64 {
	t.Helper()
	return semGet(t, ctx, s, "\x00", accord.WithSerializable()).Revision
}

func semWantKV(t *testing.T, what string, got *accord.KeyValue, key, val string, create, mod, ver int64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no kv, want %q=%q", what, key, val)
		return
	}
	if got.Key != key || string(got.Value) != val || got.CreateRevision != create || got.ModRevision != mod || got.Version != ver {
		t.Errorf("%s = {%q %q create %d mod %d ver %d}, want {%q %q create %d mod %d ver %d}",
			what, got.Key, got.Value, got.CreateRevision, got.ModRevision, got.Version, key, val, create, mod, ver)
	}
}

func TestSemanticsRevisionsAndPrevKV(t *testing.T) {
	s, ctx := semOpen(t)

	if r := semGet(t, ctx, s, "a"); r.Revision != 1 || r.Count != 0 || len(r.KVs) != 0 {
		t.Fatalf("empty store: %+v, want revision 1", r)
	}
	if r := semPut(t, ctx, s, "a", "1", accord.WithPrevKV()); r.Revision != 2 || r.PrevKV != nil {
		t.Errorf("first put: %+v, want revision 2 and no PrevKV", r)
	}
	r := semPut(t, ctx, s, "a", "2", accord.WithPrevKV())
	if r.Revision != 3 {
		t.Errorf("second put: revision %d, want 3", r.Revision)
	}
	semWantKV(t, "PrevKV", r.PrevKV, "a", "1", 2, 2, 1)
	if r := semPut(t, ctx, s, "a", "3"); r.PrevKV != nil {
		t.Errorf("put without WithPrevKV returned PrevKV %+v", r.PrevKV)
	}
	g := semGet(t, ctx, s, "a")
	if g.Revision != 4 || g.Count != 1 || len(g.KVs) != 1 {
		t.Fatalf("get: %+v", g)
	}
	semWantKV(t, "get", &g.KVs[0], "a", "3", 2, 4, 3)

	// Deleting nothing is not an error and adds no revision.
	d, err := s.Delete(ctx, "missing", accord.WithPrevKV())
	if err != nil || d.Deleted != 0 || d.Revision != 4 || len(d.PrevKVs) != 0 {
		t.Errorf("delete missing: %+v, %v; want 0 deleted at revision 4", d, err)
	}
	if rev := semRev(t, ctx, s); rev != 4 {
		t.Errorf("revision after deleting nothing = %d, want 4", rev)
	}

	semPut(t, ctx, s, "b", "1") // 5
	semPut(t, ctx, s, "c", "1") // 6
	d, err = s.Delete(ctx, "a", accord.WithRange("c"), accord.WithPrevKV())
	if err != nil || d.Deleted != 2 || d.Revision != 7 || len(d.PrevKVs) != 2 {
		t.Fatalf("delete [a, c): %+v, %v", d, err)
	}
	semWantKV(t, "PrevKVs[0]", &d.PrevKVs[0], "a", "3", 2, 4, 3)
	semWantKV(t, "PrevKVs[1]", &d.PrevKVs[1], "b", "1", 5, 5, 1)
	d, err = s.Delete(ctx, "c")
	if err != nil || d.Deleted != 1 || d.Revision != 8 || d.PrevKVs != nil {
		t.Errorf("delete without WithPrevKV: %+v, %v", d, err)
	}

	// Re-creating a key starts a new life: new create revision, version 1.
	r = semPut(t, ctx, s, "a", "new", accord.WithPrevKV()) // 9
	if r.PrevKV != nil {
		t.Errorf("put after delete returned PrevKV %+v", r.PrevKV)
	}
	g = semGet(t, ctx, s, "a")
	semWantKV(t, "re-created", &g.KVs[0], "a", "new", 9, 9, 1)

	// A write transaction adds exactly one revision, shared by all writes.
	tr, err := s.Txn(ctx).Then(accord.OpPut("x", []byte("x")), accord.OpPut("y", []byte("y")), accord.OpDelete("a"), accord.OpGet("x")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if tr.Revision != 10 || !tr.Succeeded || len(tr.Responses) != 4 {
		t.Fatalf("txn: %+v", tr)
	}
	if tr.Responses[0].Put.Revision != 10 || tr.Responses[2].Delete.Deleted != 1 || tr.Responses[3].Get.Count != 1 {
		t.Errorf("txn responses: %+v %+v %+v", tr.Responses[0].Put, tr.Responses[2].Delete, tr.Responses[3].Get)
	}
	semWantKV(t, "get inside the txn", &tr.Responses[3].Get.KVs[0], "x", "x", 10, 10, 1)
	all := semGet(t, ctx, s, "", accord.WithPrefix())
	if all.Count != 2 || all.KVs[0].ModRevision != 10 || all.KVs[1].ModRevision != 10 {
		t.Errorf("after txn: %+v", all)
	}

	// Read-only transactions and failed compares into a read-only branch
	// add nothing.
	for _, tc := range []struct {
		name      string
		txn       *accord.Txn
		succeeded bool
	}{
		{"read-only", s.Txn(ctx).If(accord.Compare(accord.Version("x"), "=", 1)).Then(accord.OpGet("x")).Else(accord.OpGet("y")), true},
		{"read-only serializable", s.Txn(ctx).Then(accord.OpGet("x", accord.WithSerializable())), true},
		{"failed compare into reads", s.Txn(ctx).If(accord.Compare(accord.Version("x"), "=", 5)).Then(accord.OpPut("z", nil)).Else(accord.OpGet("x")), false},
		{"failed compare into nothing", s.Txn(ctx).If(accord.Compare(accord.Value("x"), "=", "no")).Then(accord.OpDelete("x")), false},
		{"delete of nothing", s.Txn(ctx).Then(accord.OpDelete("nothing", accord.WithPrefix())), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.txn.Commit()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Revision != 10 || resp.Succeeded != tc.succeeded {
				t.Errorf("revision %d succeeded %v, want 10 %v", resp.Revision, resp.Succeeded, tc.succeeded)
			}
			if rev := semRev(t, ctx, s); rev != 10 {
				t.Errorf("store revision %d, want 10", rev)
			}
		})
	}
	if g := semGet(t, ctx, s, "z"); g.Count != 0 {
		t.Errorf("failed branch wrote z: %+v", g)
	}

	// Reads at old revisions; the header revision is still the current one.
	for _, tc := range []struct {
		rev  int64
		want string // "" = missing
	}{{2, "1"}, {3, "2"}, {6, "3"}, {7, ""}, {9, "new"}, {10, ""}, {1, ""}} {
		t.Run(fmt.Sprint("a at ", tc.rev), func(t *testing.T) {
			for _, opts := range [][]accord.OpOption{{accord.WithRev(tc.rev)}, {accord.WithRev(tc.rev), accord.WithSerializable()}} {
				g := semGet(t, ctx, s, "a", opts...)
				got := ""
				if len(g.KVs) == 1 {
					got = string(g.KVs[0].Value)
				}
				if got != tc.want || g.Revision != 10 {
					t.Errorf("a at %d = %q (header %d), want %q (header 10)", tc.rev, got, g.Revision, tc.want)
				}
			}
		})
	}
	if _, err := s.Get(ctx, "a", accord.WithRev(11)); !errors.Is(err, accord.ErrFutureRev) {
		t.Errorf("Get at a future revision: %v, want ErrFutureRev", err)
	}
	if _, err := s.Txn(ctx).Then(accord.OpGet("a", accord.WithRev(11))).Commit(); !errors.Is(err, accord.ErrFutureRev) {
		t.Errorf("txn Get at a future revision: %v, want ErrFutureRev", err)
	}
	// Serializable reads on a leader see its own applied writes.
	if g := semGet(t, ctx, s, "x", accord.WithSerializable()); len(g.KVs) != 1 || string(g.KVs[0].Value) != "x" || g.Revision != 10 {
		t.Errorf("serializable get: %+v", g)
	}
}

func TestSemanticsCompact(t *testing.T) {
	s, ctx := semOpen(t)
	for i := range 5 {
		semPut(t, ctx, s, "k", fmt.Sprint(i)) // revisions 2..6
	}
	steps := []struct {
		name string
		rev  int64
		want error
	}{
		{"future revision", 7, accord.ErrFutureRev},
		{"compact to 4", 4, nil},
		{"same revision again", 4, accord.ErrCompacted},
		{"below the compacted revision", 2, accord.ErrCompacted},
		{"zero", 0, accord.ErrCompacted},
		{"compact to current", 6, nil},
		{"future after compaction", 100, accord.ErrFutureRev},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := s.Compact(ctx, st.rev)
			if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
				t.Fatalf("Compact(%d) = %v, want %v", st.rev, err, st.want)
			}
			if st.rev == 4 && st.want == nil {
				if _, err := s.Get(ctx, "k", accord.WithRev(3)); !errors.Is(err, accord.ErrCompacted) {
					t.Errorf("Get at 3 after Compact(4): %v, want ErrCompacted", err)
				}
				if _, err := s.Get(ctx, "k", accord.WithRev(3), accord.WithSerializable()); !errors.Is(err, accord.ErrCompacted) {
					t.Errorf("serializable Get at 3 after Compact(4): %v, want ErrCompacted", err)
				}
				if _, err := s.Txn(ctx).Then(accord.OpGet("k", accord.WithRev(3))).Commit(); !errors.Is(err, accord.ErrCompacted) {
					t.Errorf("txn Get at 3 after Compact(4): %v, want ErrCompacted", err)
				}
				// Reading at the compacted revision itself works.
				g := semGet(t, ctx, s, "k", accord.WithRev(4))
				if len(g.KVs) != 1 || string(g.KVs[0].Value) != "2" || g.Revision != 6 {
					t.Errorf("Get at 4 after Compact(4): %+v", g)
				}
			}
		})
	}
	if _, err := s.Get(ctx, "k", accord.WithRev(5)); !errors.Is(err, accord.ErrCompacted) {
		t.Errorf("Get at 5 after Compact(6): %v, want ErrCompacted", err)
	}
	if g := semGet(t, ctx, s, "k"); len(g.KVs) != 1 || string(g.KVs[0].Value) != "4" || g.KVs[0].Version != 5 || g.KVs[0].CreateRevision != 2 {
		t.Errorf("current value after compaction: %+v", g)
	}
	// Compaction does not change the revision.
	if rev := semRev(t, ctx, s); rev != 6 {
		t.Errorf("revision after compactions = %d, want 6", rev)
	}
	// A watch from a compacted revision fails with ErrCompacted instead of
	// skipping history.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case wr, ok := <-s.Watch(wctx, "k", accord.WithRev(3)):
		if !ok || !errors.Is(wr.Err, accord.ErrCompacted) {
			t.Errorf("watch from compacted revision: %+v (open %v), want ErrCompacted", wr, ok)
		}
	case <-ctx.Done():
		t.Fatal("watch from compacted revision: no response")
	}
}

func TestSemanticsRequestLimits(t *testing.T) {
	s, ctx := semOpen(t)
	const maxBytes = 3 << 19 // 1.5 MiB, the default Options.MaxRequestBytes
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"put of 1.5 MiB", func() error {
			_, err := s.Put(ctx, "big", make([]byte, maxBytes))
			return err
		}, accord.ErrRequestTooLarge},
		{"put of 2 MiB", func() error {
			_, err := s.Put(ctx, "big", make([]byte, 2<<20))
			return err
		}, accord.ErrRequestTooLarge},
		{"txn of two 800 KiB values", func() error {
			_, err := s.Txn(ctx).Then(accord.OpPut("b1", make([]byte, 800<<10)), accord.OpPut("b2", make([]byte, 800<<10))).Commit()
			return err
		}, accord.ErrRequestTooLarge},
		{"put just under the limit", func() error {
			v := bytes.Repeat([]byte("v"), maxBytes-256)
			if _, err := s.Put(ctx, "big", v); err != nil {
				return err
			}
			g, err := s.Get(ctx, "big")
			if err != nil {
				return err
			}
			if len(g.KVs) != 1 || !bytes.Equal(g.KVs[0].Value, v) {
				return fmt.Errorf("read back %d bytes", len(g.KVs[0].Value))
			}
			return nil
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := semRev(t, ctx, s)
			err := tc.do()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if after := semRev(t, ctx, s); after != before {
					t.Errorf("rejected request changed the revision %d -> %d", before, after)
				}
			}
		})
	}
}

func TestSemanticsEmptyKey(t *testing.T) {
	s, ctx := semOpen(t)
	tests := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "", []byte("v")); return err }},
		{"Get", func() error { _, err := s.Get(ctx, ""); return err }},
		{"Get serializable", func() error { _, err := s.Get(ctx, "", accord.WithSerializable()); return err }},
		{"Get with range", func() error { _, err := s.Get(ctx, "", accord.WithRange("z")); return err }},
		{"Delete", func() error { _, err := s.Delete(ctx, ""); return err }},
		{"Watch", func() error {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			select {
			case wr := <-s.Watch(wctx, ""):
				return wr.Err
			case <-ctx.Done():
				return ctx.Err()
			}
		}},
		{"txn put", func() error { _, err := s.Txn(ctx).Then(accord.OpPut("", nil)).Commit(); return err }},
		{"txn get", func() error { _, err := s.Txn(ctx).Then(accord.OpGet("")).Commit(); return err }},
		{"txn delete in else", func() error { _, err := s.Txn(ctx).Else(accord.OpDelete("")).Commit(); return err }},
		{"txn compare", func() error {
			_, err := s.Txn(ctx).If(accord.Compare(accord.Value(""), "=", "x")).Commit()
			return err
		}},
		{"nested txn put", func() error {
			_, err := s.Txn(ctx).Then(accord.OpTxn(nil, []accord.Op{accord.OpPut("", nil)}, nil)).Commit()
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, accord.ErrEmptyKey) {
				t.Errorf("err = %v, want ErrEmptyKey", err)
			}
		})
	}
	if rev := semRev(t, ctx, s); rev != 1 {
		t.Errorf("revision = %d after rejected requests, want 1", rev)
	}
}

func semPuts(prefix string, n int) []accord.Op {
	ops := make([]accord.Op, n)
	for i := range ops {
		ops[i] = accord.OpPut(fmt.Sprintf("%s%03d", prefix, i), []byte("v"))
	}
	return ops
}

func semCmps(n int) []accord.Cmp {
	cmps := make([]accord.Cmp, n)
	for i := range cmps {
		cmps[i] = accord.Compare(accord.Version(fmt.Sprintf("c%03d", i)), "=", 0)
	}
	return cmps
}

func TestSemanticsTooManyOps(t *testing.T) {
	s, ctx := semOpen(t)
	nested := func(then []accord.Op) accord.Op { return accord.OpTxn(nil, then, nil) }
	tests := []struct {
		name  string
		build func() *accord.Txn
		want  error
	}{
		{"128 puts", func() *accord.Txn { return s.Txn(ctx).Then(semPuts("a", 128)...) }, nil},
		{"129 puts", func() *accord.Txn { return s.Txn(ctx).Then(semPuts("a", 129)...) }, accord.ErrTooManyOps},
		{"129 else ops", func() *accord.Txn { return s.Txn(ctx).Else(semPuts("a", 129)...) }, accord.ErrTooManyOps},
		{"129 compares", func() *accord.Txn { return s.Txn(ctx).If(semCmps(129)...) }, accord.ErrTooManyOps},
		{"128 compares and 128 ops per branch", func() *accord.Txn {
			return s.Txn(ctx).If(semCmps(128)...).Then(semPuts("b", 128)...).Else(semPuts("c", 128)...)
		}, nil},
		// etcd's checkTxnRequest gives a nested txn the limit minus its
		// parent level's count (max of compares, then, else).
		{"nested 127 under 1", func() *accord.Txn { return s.Txn(ctx).Then(nested(semPuts("d", 127))) }, nil},
		{"nested 128 under 1", func() *accord.Txn { return s.Txn(ctx).Then(nested(semPuts("d", 128))) }, accord.ErrTooManyOps},
		{"nested 126 under 2", func() *accord.Txn {
			return s.Txn(ctx).Then(accord.OpPut("e", nil), nested(semPuts("e", 126)))
		}, nil},
		{"nested 127 under 2", func() *accord.Txn {
			return s.Txn(ctx).Then(accord.OpPut("e", nil), nested(semPuts("e", 127)))
		}, accord.ErrTooManyOps},
		{"nested under compares", func() *accord.Txn {
			return s.Txn(ctx).If(semCmps(10)...).Then(nested(semPuts("f", 119)))
		}, accord.ErrTooManyOps},
		{"nested in else", func() *accord.Txn {
			return s.Txn(ctx).If(semCmps(1)...).Else(nested(semPuts("f", 128)))
		}, accord.ErrTooManyOps},
		{"two levels deep", func() *accord.Txn {
			return s.Txn(ctx).Then(nested([]accord.Op{nested(semPuts("g", 126))}))
		}, nil},
		{"two levels deep, over", func() *accord.Txn {
			return s.Txn(ctx).Then(nested([]accord.Op{nested(semPuts("g", 127))}))
		}, accord.ErrTooManyOps},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := semRev(t, ctx, s)
			_, err := tc.build().Commit()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			after := semRev(t, ctx, s)
			switch {
			case tc.want != nil && after != before:
				t.Errorf("rejected txn changed the revision %d -> %d", before, after)
			case tc.want == nil && after > before+1:
				t.Errorf("txn added %d revisions, want at most 1", after-before)
			}
		})
	}
}

func TestSemanticsDuplicateKeys(t *testing.T) {
	s, ctx := semOpen(t)
	semPut(t, ctx, s, "k", "v")
	put := func(k string) accord.Op { return accord.OpPut(k, []byte("new")) }
	del := func(k string, opts ...accord.OpOption) accord.Op { return accord.OpDelete(k, opts...) }
	nested := func(then, els []accord.Op) accord.Op { return accord.OpTxn(nil, then, els) }
	tests := []struct {
		name string
		then []accord.Op
		els  []accord.Op
		want error
	}{
		{"two puts", []accord.Op{put("k"), put("k")}, nil, accord.ErrDuplicateKey},
		{"two puts in else", nil, []accord.Op{put("k"), put("x"), put("k")}, accord.ErrDuplicateKey},
		{"put and delete", []accord.Op{put("k"), del("k")}, nil, accord.ErrDuplicateKey},
		{"delete then put", []accord.Op{del("k"), put("k")}, nil, accord.ErrDuplicateKey},
		{"put inside deleted range", []accord.Op{put("k"), del("a", accord.WithRange("z"))}, nil, accord.ErrDuplicateKey},
		{"put inside deleted prefix", []accord.Op{put("key"), del("k", accord.WithPrefix())}, nil, accord.ErrDuplicateKey},
		// Stricter than etcd: its interval check reads a "\x00" end as a
		// literal key, so it misses this overlap and then writes z twice in
		// one revision.
		{"put inside deleted from-key", []accord.Op{put("z"), del("k", accord.WithFromKey())}, nil, accord.ErrDuplicateKey},
		{"put in nested, put outside", []accord.Op{put("k"), nested([]accord.Op{put("k")}, nil)}, nil, accord.ErrDuplicateKey},
		{"put in nested, delete outside", []accord.Op{del("k"), nested(nil, []accord.Op{put("k")})}, nil, accord.ErrDuplicateKey},
		{"delete in nested, put outside", []accord.Op{put("k"), nested([]accord.Op{del("k")}, nil)}, nil, accord.ErrDuplicateKey},
		{"put in two nested", []accord.Op{nested([]accord.Op{put("k")}, nil), nested(nil, []accord.Op{put("k")})}, nil, accord.ErrDuplicateKey},
		{"put deep in nested, put outside", []accord.Op{put("k"), nested([]accord.Op{nested([]accord.Op{put("k")}, nil)}, nil)}, nil, accord.ErrDuplicateKey},
		// Allowed: branches exclude each other, ranges that miss, deletes.
		{"same put in then and else", []accord.Op{put("k")}, []accord.Op{put("k")}, nil},
		{"same put in nested then and else", []accord.Op{nested([]accord.Op{put("k")}, []accord.Op{put("k")})}, nil, nil},
		{"put in nested then, delete in nested else", []accord.Op{nested([]accord.Op{put("k")}, []accord.Op{del("k")})}, nil, nil},
		{"delete in nested then, put in nested else", []accord.Op{nested([]accord.Op{del("k", accord.WithPrefix())}, []accord.Op{put("k")})}, nil, nil},
		// Stricter than etcd (which accepts it and writes k twice in one
		// revision): siblings that put and delete the same key.
		{"put in one nested, delete in a later one", []accord.Op{nested([]accord.Op{put("k")}, nil), nested([]accord.Op{del("k")}, nil)}, nil, accord.ErrDuplicateKey},
		{"delete in one nested, put in a later one", []accord.Op{nested([]accord.Op{del("k")}, nil), nested([]accord.Op{put("k")}, nil)}, nil, accord.ErrDuplicateKey},
		{"put outside deleted range", []accord.Op{put("k"), del("a", accord.WithRange("k"))}, nil, nil},
		{"two deletes", []accord.Op{del("k"), del("k", accord.WithPrefix())}, nil, nil},
		{"put and get", []accord.Op{put("k"), accord.OpGet("k")}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := semRev(t, ctx, s)
			_, err := s.Txn(ctx).If(accord.Compare(accord.Version("k"), ">", -1)).Then(tc.then...).Else(tc.els...).Commit()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if after := semRev(t, ctx, s); after != before {
					t.Errorf("rejected txn changed the revision %d -> %d", before, after)
				}
			}
		})
	}
}

func TestSemanticsPutOptions(t *testing.T) {
	s, ctx := semOpen(t)
	semPut(t, ctx, s, "k", "v")
	id, err := s.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  string
		val  string
		opts []accord.OpOption
		want error
	}{
		{"ignore value on missing key", "missing", "", []accord.OpOption{accord.WithIgnoreValue()}, accord.ErrKeyNotFound},
		{"ignore lease on missing key", "missing", "x", []accord.OpOption{accord.WithIgnoreLease()}, accord.ErrKeyNotFound},
		{"ignore value with a value", "k", "x", []accord.OpOption{accord.WithIgnoreValue()}, accord.ErrValueProvided},
		{"ignore lease with a lease", "k", "x", []accord.OpOption{accord.WithIgnoreLease(), accord.WithLease(id)}, accord.ErrLeaseProvided},
		{"unknown lease", "k", "x", []accord.OpOption{accord.WithLease(id + 1)}, accord.ErrLeaseNotFound},
		{"unknown lease on new key", "new", "x", []accord.OpOption{accord.WithLease(id + 1)}, accord.ErrLeaseNotFound},
		{"known lease", "k", "x", []accord.OpOption{accord.WithLease(id)}, nil},
		{"ignore value keeps the value, sets no lease", "k", "", []accord.OpOption{accord.WithIgnoreValue()}, nil},
		{"ignore lease keeps the lease", "k", "y", []accord.OpOption{accord.WithIgnoreLease()}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := semRev(t, ctx, s)
			_, err := s.Put(ctx, tc.key, []byte(tc.val), tc.opts...)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if after := semRev(t, ctx, s); after != before {
					t.Errorf("rejected put changed the revision %d -> %d", before, after)
				}
			}
		})
	}
	g := semGet(t, ctx, s, "k")
	if len(g.KVs) != 1 || string(g.KVs[0].Value) != "y" || g.KVs[0].Lease != accord.NoLease || g.KVs[0].Version != 4 {
		// "known lease" set id, "ignore value" replaced it with none, "ignore lease" kept none.
		t.Errorf("k = %+v, want value y, no lease, version 4", g.KVs)
	}
}

func TestSemanticsValuesAreCopies(t *testing.T) {
	s, ctx := semOpen(t)
	buf := []byte("hello")
	semPut(t, ctx, s, "k", string(buf))
	in := []byte("input")
	if _, err := s.Put(ctx, "in", in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	putRev := semPut(t, ctx, s, "d", "dd").Revision

	mutate := func(b []byte) {
		for i := range b {
			b[i] = 'X'
		}
	}
	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"Get", func(t *testing.T) { mutate(semGet(t, ctx, s, "k").KVs[0].Value) }},
		{"serializable Get", func(t *testing.T) { mutate(semGet(t, ctx, s, "k", accord.WithSerializable()).KVs[0].Value) }},
		{"Get at a revision", func(t *testing.T) { mutate(semGet(t, ctx, s, "d", accord.WithRev(putRev)).KVs[0].Value) }},
		{"Put PrevKV", func(t *testing.T) {
			r := semPut(t, ctx, s, "k", "hello", accord.WithPrevKV())
			mutate(r.PrevKV.Value)
		}},
		{"Delete PrevKVs", func(t *testing.T) {
			d, err := s.Delete(ctx, "d", accord.WithPrevKV())
			if err != nil || len(d.PrevKVs) != 1 {
				t.Fatalf("%+v %v", d, err)
			}
			mutate(d.PrevKVs[0].Value)
		}},
		{"read-only Txn", func(t *testing.T) {
			r, err := s.Txn(ctx).Then(accord.OpGet("k")).Commit()
			if err != nil {
				t.Fatal(err)
			}
			mutate(r.Responses[0].Get.KVs[0].Value)
		}},
		{"write Txn", func(t *testing.T) {
			r, err := s.Txn(ctx).Then(accord.OpPut("other", []byte("o"), accord.WithPrevKV()), accord.OpGet("k"),
				accord.OpTxn(nil, []accord.Op{accord.OpGet("k")}, nil)).Commit()
			if err != nil {
				t.Fatal(err)
			}
			mutate(r.Responses[1].Get.KVs[0].Value)
			mutate(r.Responses[2].Txn.Responses[0].Get.KVs[0].Value)
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			if g := semGet(t, ctx, s, "k"); string(g.KVs[0].Value) != "hello" {
				t.Errorf("k = %q after mutating a returned value", g.KVs[0].Value)
			}
			if g := semGet(t, ctx, s, "d", accord.WithRev(putRev)); string(g.KVs[0].Value) != "dd" {
				t.Errorf("d at %d = %q after mutating a returned value", putRev, g.KVs[0].Value)
			}
		})
	}
	if g := semGet(t, ctx, s, "in"); string(g.KVs[0].Value) != "input" {
		t.Errorf("changing the slice passed to Put changed the store: %q", g.KVs[0].Value)
	}
}

func TestSemanticsAfterClose(t *testing.T) {
	s, err := accord.Open(t.TempDir(), &accord.Options{ElectionTimeout: 50 * time.Millisecond, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := s.Put(ctx, "k", []byte("v")); err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	tests := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "k", []byte("v")); return err }},
		{"Get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"Get serializable", func() error { _, err := s.Get(ctx, "k", accord.WithSerializable()); return err }},
		{"Delete", func() error { _, err := s.Delete(ctx, "k"); return err }},
		{"Compact", func() error { return s.Compact(ctx, 2) }},
		{"write Txn", func() error { _, err := s.Txn(ctx).Then(accord.OpPut("k", nil)).Commit(); return err }},
		{"read-only Txn", func() error { _, err := s.Txn(ctx).Then(accord.OpGet("k")).Commit(); return err }},
		{"serializable Txn", func() error {
			_, err := s.Txn(ctx).Then(accord.OpGet("k", accord.WithSerializable())).Commit()
			return err
		}},
		{"Watch", func() error {
			wr, ok := <-s.Watch(ctx, "k")
			if !ok {
				return errors.New("watch channel closed without an error")
			}
			return wr.Err
		}},
		{"Grant", func() error { _, err := s.Grant(ctx, time.Minute); return err }},
		{"Revoke", func() error { return s.Revoke(ctx, 1) }},
		{"KeepAliveOnce", func() error { _, err := s.KeepAliveOnce(ctx, 1); return err }},
		{"TimeToLive", func() error { _, err := s.TimeToLive(ctx, 1); return err }},
		{"Leases", func() error { _, err := s.Leases(ctx); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, accord.ErrClosed) {
				t.Errorf("err = %v, want ErrClosed", err)
			}
		})
	}
}
