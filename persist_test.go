package accord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Persistence tests: a restart (with and without raft snapshots), snapshot
// plus log replay against plain log replay, Backup and Restore, and a
// second Open of a directory that is in use. fsync stays on: these tests
// are about what survives a restart.

const persistLeaseTTL = time.Hour // long enough never to expire during a test

func persistOpts() *Options { return &Options{ElectionTimeout: 50 * time.Millisecond} }

func persistCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// persistReopen closes s and opens dir again.
func persistReopen(t *testing.T, s *Store, dir string, o *Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openTestStore(t, dir, o)
}

// persistW runs writes against a store and fails the test on any error.
type persistW struct {
	t   *testing.T
	ctx context.Context
	s   *Store
}

func (w persistW) put(key, val string, opts ...OpOption) int64 {
	w.t.Helper()
	r, err := w.s.Put(w.ctx, key, []byte(val), opts...)
	if err != nil {
		w.t.Fatalf("put %q: %v", key, err)
	}
	return r.Revision
}

func (w persistW) del(key string, opts ...OpOption) int64 {
	w.t.Helper()
	r, err := w.s.Delete(w.ctx, key, opts...)
	if err != nil {
		w.t.Fatalf("delete %q: %v", key, err)
	}
	return r.Revision
}

func (w persistW) grant(id LeaseID) {
	w.t.Helper()
	got, err := w.s.Grant(w.ctx, persistLeaseTTL, WithLeaseID(id))
	if err != nil || got != id {
		w.t.Fatalf("grant %d: %v, %v", id, got, err)
	}
}

func (w persistW) revoke(id LeaseID) {
	w.t.Helper()
	if err := w.s.Revoke(w.ctx, id); err != nil {
		w.t.Fatalf("revoke %d: %v", id, err)
	}
}

func (w persistW) txn(want bool, cmps []Cmp, thenOps, elseOps []Op) {
	w.t.Helper()
	r, err := w.s.Txn(w.ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
	if err != nil {
		w.t.Fatalf("txn: %v", err)
	}
	if r.Succeeded != want {
		w.t.Fatalf("txn succeeded = %v, want %v", r.Succeeded, want)
	}
}

func (w persistW) compact(rev int64) {
	w.t.Helper()
	if err := w.s.Compact(w.ctx, rev); err != nil {
		w.t.Fatalf("compact %d: %v", rev, err)
	}
}

// persistWritesA is the first half of a deterministic workload: puts,
// overwrites, a delete, a range delete, transactions taking either branch,
// keys on leases, and a compaction in the middle of the history.
func persistWritesA(w persistW) {
	w.t.Helper()
	w.grant(100)
	w.grant(200)
	w.grant(400) // never used by a key
	w.put("a", "a1")
	w.put("b", "b1")
	w.put("c", "c1", WithLease(100))
	w.put("d", "d1", WithLease(200))
	w.put("a", "a2")
	w.put("a", "a3")
	w.del("b")
	w.txn(true, []Cmp{Compare(Value("a"), "=", "a3")},
		[]Op{OpPut("e", []byte("e1")), OpDelete("c")},
		[]Op{OpPut("never", []byte("x"))})
	w.txn(false, []Cmp{Compare(Version("a"), ">", 100)},
		[]Op{OpPut("never", []byte("x"))},
		[]Op{OpPut("f", []byte("f1")), OpPut("c", []byte("c2"), WithLease(100)), OpPut("a", []byte("a4"))})
	for i := range 5 {
		w.put(fmt.Sprintf("p/%d", i), fmt.Sprintf("p%d", i))
	}
	w.del("p/", WithRange("p/3")) // p/0, p/1, p/2 at one revision
	// The compaction point is an overwrite: its event's previous version
	// is itself compacted away.
	mid := w.put("p/3", "p3b")
	w.put("b", "b2") // recreated after its delete
	w.compact(mid)
	w.put("a", "a5", WithPrevKV())
}

// persistWritesB is the second half: more of everything, a revoke that
// deletes its keys, and a nested transaction.
func persistWritesB(w persistW) {
	w.t.Helper()
	w.put("g", "g1", WithLease(200))
	w.revoke(100) // deletes c
	w.grant(300)
	w.put("h", "h1", WithLease(300))
	w.put("h", "h2", WithIgnoreLease())
	w.put("d", "", WithIgnoreValue(), WithLease(300)) // moves d from lease 200 to 300
	w.txn(true, []Cmp{Compare(CreateRevision("zz"), "=", 0)},
		[]Op{OpTxn([]Cmp{Compare(Value("h"), "=", "h2")},
			[]Op{OpPut("zz", []byte("nested")), OpDelete("p/", WithPrefix())},
			nil)},
		nil)
	w.put("big", strings.Repeat("x", 10000))
	w.del("f")
	w.put("a", "a6")
}

// persistDump renders the whole observable state of s: revision,
// compaction point, every key at every retained revision, the change
// history from the compaction point (with previous values), and the leases
// with their attached keys. Two stores with equal dumps answer every read
// the same way.
func persistDump(t *testing.T, ctx context.Context, s *Store) string {
	t.Helper()
	var b strings.Builder
	cur, err := s.Get(ctx, "\x00", WithFromKey())
	if err != nil {
		t.Fatalf("dump: get: %v", err)
	}
	rev := cur.Revision
	_, compacted := s.ks.Revs()
	fmt.Fprintf(&b, "revision %d compacted %d\n", rev, compacted)
	if compacted > 1 {
		if _, err := s.Get(ctx, "a", WithRev(compacted-1)); !errors.Is(err, ErrCompacted) {
			t.Errorf("dump: get below the compaction point %d: err = %v, want ErrCompacted", compacted, err)
		}
	}
	from := max(compacted, 1)
	for r := from; r <= rev; r++ {
		g, err := s.Get(ctx, "\x00", WithFromKey(), WithRev(r))
		if err != nil {
			t.Fatalf("dump: get at %d: %v", r, err)
		}
		fmt.Fprintf(&b, "@%d:", r)
		for _, kv := range g.KVs {
			fmt.Fprintf(&b, " %s", persistKV(&kv))
		}
		b.WriteByte('\n')
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.Watch(wctx, "\x00", WithFromKey(), WithRev(from), WithPrevKV())
	for seen := from; seen < rev; {
		select {
		case wr, ok := <-ch:
			if !ok || wr.Err != nil {
				t.Fatalf("dump: watch from %d ended at %d: %v", from, seen, wr.Err)
			}
			for _, ev := range wr.Events {
				fmt.Fprintf(&b, "event %s %s", ev.Type, persistKV(&ev.KV))
				if ev.PrevKV != nil {
					fmt.Fprintf(&b, " prev %s", persistKV(ev.PrevKV))
				}
				b.WriteByte('\n')
				seen = ev.KV.ModRevision
			}
		case <-ctx.Done():
			t.Fatalf("dump: watch from %d stuck at %d", from, seen)
		}
	}

	ids, err := s.Leases(ctx)
	if err != nil {
		t.Fatalf("dump: leases: %v", err)
	}
	for _, id := range ids {
		st, err := s.TimeToLive(ctx, id, WithAttachedKeys())
		if err != nil {
			t.Fatalf("dump: lease %d: %v", id, err)
		}
		fmt.Fprintf(&b, "lease %d granted %v keys %v\n", id, st.GrantedTTL, st.Keys)
	}
	return b.String()
}

func persistKV(kv *KeyValue) string {
	v := string(kv.Value)
	if len(v) > 20 {
		v = fmt.Sprintf("%.10s...(%d bytes)", v, len(v))
	}
	return fmt.Sprintf("%s=%q[c%d m%d v%d l%d]", kv.Key, v, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

// persistDiff fails the test with the first differing line of two dumps.
func persistDiff(t *testing.T, what, want, got string) {
	t.Helper()
	if want == got {
		return
	}
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("%s: state differs at line %d:\nwant: %s\ngot:  %s\n\nwhole want:\n%s\nwhole got:\n%s", what, i+1, w, g, want, got)
		}
	}
}

// persistSnapshots lists the completed raft snapshots in dir.
func persistSnapshots(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, snapshotsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

func persistSnapshot(t *testing.T, s *Store) {
	t.Helper()
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
}

// persistCheckRestarted checks what a restarted store must do beyond
// matching its dump: reads at old revisions, ErrCompacted below the
// compaction point, and new writes at the next revision.
func persistCheckRestarted(t *testing.T, ctx context.Context, s *Store, rev int64) {
	t.Helper()
	w := persistW{t, ctx, s}
	g, err := s.Get(ctx, "a", WithRev(rev))
	if err != nil || len(g.KVs) != 1 || string(g.KVs[0].Value) != "a6" {
		t.Fatalf("get a at %d after restart: %+v, %v", rev, g, err)
	}
	_, compacted := s.ks.Revs()
	if _, err := s.Get(ctx, "a", WithRev(compacted-1)); !errors.Is(err, ErrCompacted) {
		t.Fatalf("get below the compaction point %d after restart: %v, want ErrCompacted", compacted, err)
	}
	if err := s.Compact(ctx, compacted); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compact at the old compaction point after restart: %v, want ErrCompacted", err)
	}
	if got := w.put("after", "restart"); got != rev+1 {
		t.Fatalf("first write after restart at revision %d, want %d", got, rev+1)
	}
	st, err := s.TimeToLive(ctx, 200, WithAttachedKeys())
	if err != nil || strings.Join(st.Keys, ",") != "g" {
		t.Fatalf("lease 200 after restart: %+v, %v", st, err)
	}
	if _, err := s.TimeToLive(ctx, 100); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("revoked lease 100 after restart: %v, want ErrLeaseNotFound", err)
	}
}

func TestPersistRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// snapMid and snapEnd force raft snapshots after the first half
		// and after everything.
		snapMid, snapEnd bool
	}{
		{name: "LogOnly"},
		{name: "SnapshotThenLog", snapMid: true},
		{name: "SnapshotLast", snapMid: true, snapEnd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := persistCtx(t)
			dir := t.TempDir()
			o := persistOpts()
			o.TrailingLogs = 1 // a snapshot really truncates the log
			s := openTestStore(t, dir, o)
			persistWritesA(persistW{t, ctx, s})
			if tc.snapMid {
				persistSnapshot(t, s)
			}
			persistWritesB(persistW{t, ctx, s})
			if tc.snapEnd {
				persistSnapshot(t, s)
			}
			before := persistDump(t, ctx, s)
			rev := s.ks.Rev()

			s = persistReopen(t, s, dir, o)
			if n := len(persistSnapshots(t, dir)); (n > 0) != tc.snapMid {
				t.Fatalf("%d snapshots on disk", n)
			}
			persistDiff(t, "after restart", before, persistDump(t, ctx, s))
			persistCheckRestarted(t, ctx, s, rev)

			// And once more, now that the restarted store has written.
			before = persistDump(t, ctx, s)
			s = persistReopen(t, s, dir, o)
			persistDiff(t, "after second restart", before, persistDump(t, ctx, s))
		})
	}
}

// TestPersistSnapshotReplayEqualsPlainReplay: two stores get the same
// writes; one is snapshotted midway with a truncated log, the other
// replays its whole log. After restarts both have the same state.
func TestPersistSnapshotReplayEqualsPlainReplay(t *testing.T) {
	ctx := persistCtx(t)
	dirSnap, dirPlain := t.TempDir(), t.TempDir()
	oSnap := persistOpts()
	oSnap.TrailingLogs = 1
	oPlain := persistOpts()
	snap, plain := openTestStore(t, dirSnap, oSnap), openTestStore(t, dirPlain, oPlain)

	persistWritesA(persistW{t, ctx, snap})
	persistWritesA(persistW{t, ctx, plain})
	persistSnapshot(t, snap)
	persistWritesB(persistW{t, ctx, snap})
	persistWritesB(persistW{t, ctx, plain})

	live := persistDump(t, ctx, plain)
	persistDiff(t, "before restart", live, persistDump(t, ctx, snap))

	first, err := snap.logs.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("snapshotted store's log starts at %d (%v): not truncated", first, err)
	}
	if n := len(persistSnapshots(t, dirPlain)); n != 0 {
		t.Fatalf("plain store has %d snapshots", n)
	}

	snap = persistReopen(t, snap, dirSnap, oSnap)
	plain = persistReopen(t, plain, dirPlain, oPlain)
	persistDiff(t, "plain replay", live, persistDump(t, ctx, plain))
	persistDiff(t, "snapshot + log replay", live, persistDump(t, ctx, snap))
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := persistCtx(t)
	o := persistOpts()
	src := openTestStore(t, t.TempDir(), o)
	persistWritesA(persistW{t, ctx, src})
	persistSnapshot(t, src) // Backup must not depend on raft snapshots either way
	persistWritesB(persistW{t, ctx, src})
	want := persistDump(t, ctx, src)
	rev := src.ks.Rev()

	var buf bytes.Buffer
	if err := src.Backup(ctx, &buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	backup := buf.Bytes()

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(bytes.NewReader(backup), dir, o); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	dst := openTestStore(t, dir, o)
	if dst.NodeID() == src.NodeID() {
		t.Fatalf("restored store reuses the source's node ID %q", dst.NodeID())
	}
	persistDiff(t, "restored", want, persistDump(t, ctx, dst))
	persistCheckRestarted(t, ctx, dst, rev)

	// The restored store is an ordinary data directory: it survives a
	// restart, with its writes.
	want = persistDump(t, ctx, dst)
	dst = persistReopen(t, dst, dir, o)
	persistDiff(t, "restored and restarted", want, persistDump(t, ctx, dst))

	// Restore with an explicit node ID uses it.
	dir2 := filepath.Join(t.TempDir(), "restored2")
	o2 := persistOpts()
	o2.NodeID = "restored-node"
	if err := Restore(bytes.NewReader(backup), dir2, o2); err != nil {
		t.Fatalf("Restore with NodeID: %v", err)
	}
	if s := openTestStore(t, dir2, o2); s.NodeID() != "restored-node" {
		t.Fatalf("NodeID = %q", s.NodeID())
	}
}

func TestRestoreRefusesNonEmptyDir(t *testing.T) {
	ctx := persistCtx(t)
	o := persistOpts()
	o.UnsafeNoFsync = true
	src := openTestStore(t, t.TempDir(), o)
	persistW{t, ctx, src}.put("k", "v")
	var buf bytes.Buffer
	if err := src.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}

	// A directory holding an unrelated file.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := corruptHashTree(t, dir)
	if err := Restore(bytes.NewReader(buf.Bytes()), dir, o); err == nil {
		t.Fatal("Restore into a non-empty directory succeeded")
	}
	if after := corruptHashTree(t, dir); after != before {
		t.Fatalf("Restore into a non-empty directory changed it:\nbefore %s\nafter  %s", before, after)
	}

	// A live data directory (closed first, so nothing but Restore touches it).
	live := t.TempDir()
	s := openTestStore(t, live, o)
	persistW{t, ctx, s}.put("mine", "1")
	s.Close()
	before = corruptHashTree(t, live)
	if err := Restore(bytes.NewReader(buf.Bytes()), live, o); err == nil {
		t.Fatal("Restore over a data directory succeeded")
	}
	if after := corruptHashTree(t, live); after != before {
		t.Fatalf("Restore over a data directory changed it")
	}
	s = openTestStore(t, live, o)
	if g, err := s.Get(ctx, "mine"); err != nil || len(g.KVs) != 1 {
		t.Fatalf("data directory after refused Restore: %+v, %v", g, err)
	}
}

func TestRestoreRefusesDamagedBackup(t *testing.T) {
	ctx := persistCtx(t)
	o := persistOpts()
	o.UnsafeNoFsync = true
	src := openTestStore(t, t.TempDir(), o)
	w := persistW{t, ctx, src}
	persistWritesA(w)
	var buf bytes.Buffer
	if err := src.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	n := len(good)

	type damage struct {
		name string
		data []byte
	}
	var cases []damage
	for _, cut := range []int{0, 1, len(snapMagic), len(snapMagic) + 1, n / 3, n / 2, n - 33, n - 32, n - 1} {
		cases = append(cases, damage{fmt.Sprintf("TruncatedTo%d", cut), good[:cut:cut]})
	}
	for _, pos := range []int{0, len(snapMagic) - 1, len(snapMagic), len(snapMagic) + 1, len(snapMagic) + 3, n / 4, n / 3, n / 2, 2 * n / 3, n - 40, n - 33, n - 32, n - 1} {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			d := bytes.Clone(good)
			d[pos] ^= mask
			cases = append(cases, damage{fmt.Sprintf("Flip%02xAt%d", mask, pos), d})
		}
	}
	cases = append(cases,
		damage{"TrailingByte", append(bytes.Clone(good), 0)},
		damage{"Doubled", append(bytes.Clone(good), good...)},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			// Once into a directory that does not exist, once into an
			// existing empty one.
			for _, dir := range []string{filepath.Join(parent, "new"), parent} {
				err := Restore(bytes.NewReader(tc.data), dir, o)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Restore(%s) = %v, want ErrCorrupt", dir, err)
				}
				if dir != parent {
					if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
						t.Fatalf("refused Restore left %s behind (%v)", dir, serr)
					}
					continue
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Fatalf("refused Restore left %d entries in %s", len(entries), dir)
				}
			}
		})
	}

	// The undamaged backup still restores: the cases above failed for
	// their damage, not for something else.
	dir := filepath.Join(t.TempDir(), "ok")
	if err := Restore(bytes.NewReader(good), dir, o); err != nil {
		t.Fatalf("Restore of the undamaged backup: %v", err)
	}
}

// TestBackupConsistentUnderWrites: a backup taken while four writers run
// holds, at its revision R, exactly the writes with revisions <= R, and
// every write acknowledged before Backup was called.
func TestBackupConsistentUnderWrites(t *testing.T) {
	ctx := persistCtx(t)
	o := persistOpts()
	src := openTestStore(t, t.TempDir(), o)

	type ack struct {
		key string
		rev int64
	}
	var (
		mu     sync.Mutex
		acks   []ack
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		start  = make(chan struct{}, 4)
		target atomic.Int64 // once this many writes are acknowledged, close enough
		enough = make(chan struct{})
		once   sync.Once
	)
	target.Store(math.MaxInt64)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w/%d/%05d", g, i)
				r, err := src.Put(ctx, key, []byte(key))
				if err != nil {
					t.Errorf("put %s: %v", key, err)
					once.Do(func() { close(enough) })
					return
				}
				mu.Lock()
				acks = append(acks, ack{key, r.Revision})
				n := len(acks)
				mu.Unlock()
				if int64(n) >= target.Load() {
					once.Do(func() { close(enough) })
				}
				if i == 20 {
					start <- struct{}{}
				}
			}
		})
	}
	for range 4 {
		select {
		case <-start:
		case <-ctx.Done():
			t.Fatal("writers did not start")
		}
	}
	mu.Lock()
	var ackedBefore int64
	for _, a := range acks {
		ackedBefore = max(ackedBefore, a.rev)
	}
	mu.Unlock()

	var buf bytes.Buffer
	err := src.Backup(ctx, &buf)
	// Let the writers go on past the backup before stopping them.
	mu.Lock()
	target.Store(int64(len(acks) + 40))
	mu.Unlock()
	select {
	case <-enough:
	case <-ctx.Done():
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(&buf, dir, o); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	dst := openTestStore(t, dir, o)
	g, err := dst.Get(ctx, "w/", WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	r := g.Revision
	if r < ackedBefore {
		t.Fatalf("backup at revision %d misses writes acknowledged before Backup (up to %d)", r, ackedBefore)
	}
	got := make(map[string]int64)
	for _, kv := range g.KVs {
		got[kv.Key] = kv.ModRevision
	}
	var in, out int
	for _, a := range acks {
		mod, ok := got[a.key]
		switch {
		case a.rev <= r && (!ok || mod != a.rev):
			t.Errorf("write %s at %d <= backup revision %d: restored %v at %d", a.key, a.rev, r, ok, mod)
		case a.rev > r && ok:
			t.Errorf("write %s at %d > backup revision %d is in the backup", a.key, a.rev, r)
		case a.rev <= r:
			in++
		default:
			out++
		}
		delete(got, a.key)
	}
	if len(got) != 0 {
		t.Errorf("backup holds %d keys nobody wrote: %v", len(got), got)
	}
	// Every revision up to R was one of these writes: the backup's revision
	// is a real point in the history, not a mixture.
	if want := int64(in) + 1; r != want {
		t.Errorf("backup revision %d, but %d writes are <= it (want revision %d)", r, in, want)
	}
	if out == 0 {
		t.Logf("no write landed after the backup's revision; the test did not exercise concurrency")
	}
	t.Logf("backup at revision %d: %d writes in, %d after", r, in, out)
}

// TestPersistSecondOpenRefused: a directory in use by a Store cannot be
// opened again; the second Open fails quickly with a clear error and the
// first store is unaffected.
func TestPersistSecondOpenRefused(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	o := persistOpts()
	s := openTestStore(t, dir, o)
	w := persistW{t, ctx, s}
	w.put("k", "v1")
	manifest, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	s2, err := Open(dir, o)
	took := time.Since(begin)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a directory in use succeeded")
	}
	if !errors.Is(err, ErrInUse) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("second Open: %v; want ErrInUse, not ErrCorrupt", err)
	}
	if took > 5*time.Second {
		t.Fatalf("second Open took %v", took)
	}
	t.Logf("second Open failed after %v: %v", took.Round(time.Millisecond), err)

	if got, _ := os.ReadFile(filepath.Join(dir, manifestName)); !bytes.Equal(got, manifest) {
		t.Fatal("second Open changed the manifest")
	}
	if rev := w.put("k", "v2"); rev != 3 {
		t.Fatalf("first store after the refused Open: write at %d, want 3", rev)
	}
	s = persistReopen(t, s, dir, o)
	if g, err := s.Get(ctx, "k"); err != nil || string(g.KVs[0].Value) != "v2" {
		t.Fatalf("after reopen: %+v, %v", g, err)
	}
}

// TestOpenRemovesIncompleteSnapshots: a crash while a snapshot was being
// written (taken, or received from a leader: a whole kv.db) leaves
// snapshots/<id>.tmp, which raft ignores and never reaps. Open removes it,
// and keeps the completed snapshots and every write.
func TestOpenRemovesIncompleteSnapshots(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	o := persistOpts()
	s := openTestStore(t, dir, o)
	persistWritesA(persistW{t, ctx, s})
	persistSnapshot(t, s)
	before := persistDump(t, ctx, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done := persistSnapshots(t, dir)
	if len(done) == 0 {
		t.Fatal("no snapshot on disk")
	}
	kv, err := os.ReadFile(filepath.Join(dir, kvDBName))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, snapshotsDir, "9-999999-1.tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "state.bin"), kv[:len(kv)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir, o)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the incomplete snapshot %s is still there after Open (stat: %v)", tmp, err)
	}
	if got := persistSnapshots(t, dir); !slices.Equal(got, done) {
		t.Fatalf("snapshots after Open: %v, want %v", got, done)
	}
	persistDiff(t, "after Open", before, persistDump(t, ctx, s))
}
