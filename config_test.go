package accord

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Typed configuration (config.go): a Var follows its key or prefix, keeps
// the last good value across undecodable versions, reads its own writes,
// detects lost updates with CompareAndSet, survives compaction of the
// history its watch needs, and stops cleanly.

type testFlags struct {
	Checkout bool   `json:"checkout"`
	Banner   string `json:"banner,omitempty"`
}

// bindTestVar binds a Var and closes it when the test ends (before the
// store, which was opened earlier and so is closed later).
func bindTestVar[T any](t *testing.T, s *Store, key string, opts *VarOptions) *Var[T] {
	t.Helper()
	v, err := BindVar[T](t.Context(), s, key, opts)
	if err != nil {
		t.Fatalf("BindVar(%q): %v", key, err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// waitVar waits until cond holds for v's snapshot, failing the test after
// a deadline.
func waitVar[T any](t *testing.T, v *Var[T], what string, cond func(VarSnapshot[T]) bool) VarSnapshot[T] {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	snap, err := v.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("%s: %v (last snapshot: %+v, rev %d, err %v)", what, err, snap.Value, snap.Rev, snap.Err)
	}
	return snap
}

func TestVarFollowsKey(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	v := bindTestVar[testFlags](t, s, "cfg/flags", nil)

	if snap := v.Snapshot(); snap.Value != (testFlags{}) || snap.Rev != 0 || snap.Err != nil {
		t.Fatalf("missing key: got %+v rev %d err %v, want zero value, rev 0, no error", snap.Value, snap.Rev, snap.Err)
	}

	// Read your own writes: Set returns once the Var reflects the write.
	rev, err := v.Set(ctx, testFlags{Checkout: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); !got.Checkout {
		t.Fatalf("Load right after Set: %+v", got)
	}
	if snap := v.Snapshot(); snap.Rev != rev {
		t.Fatalf("Rev after Set = %d, want the write's revision %d", snap.Rev, rev)
	}
	got, err := s.Get(ctx, "cfg/flags")
	if err != nil || string(got.KVs[0].Value) != `{"checkout":true}` {
		t.Fatalf("stored value: %v %v", got, err)
	}

	// A write by someone else, straight through the Store.
	put, err := s.Put(ctx, "cfg/flags", []byte(`{"checkout":false,"banner":"sale"}`))
	if err != nil {
		t.Fatal(err)
	}
	snap := waitVar(t, v, "external put visible", func(s VarSnapshot[testFlags]) bool { return s.Rev == put.Revision })
	if snap.Value != (testFlags{Banner: "sale"}) || snap.Err != nil {
		t.Fatalf("after external put: %+v, err %v", snap.Value, snap.Err)
	}

	// Other keys do not disturb it.
	if _, err := s.Put(ctx, "cfg/flags2", []byte(`garbage`)); err != nil {
		t.Fatal(err)
	}

	del, err := s.Delete(ctx, "cfg/flags")
	if err != nil {
		t.Fatal(err)
	}
	snap = waitVar(t, v, "delete visible", func(s VarSnapshot[testFlags]) bool { return s.Rev == 0 })
	if snap.Value != (testFlags{}) || snap.Err != nil {
		t.Fatalf("after delete at %d: %+v err %v, want zero value", del.Revision, snap.Value, snap.Err)
	}
}

func TestVarDecodeErrorKeepsLastGood(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	if _, err := s.Put(ctx, "cfg/limit", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	// A first version that does not decode is not a bind error.
	v := bindTestVar[int](t, s, "cfg/limit", nil)
	var de *DecodeError
	if snap := v.Snapshot(); !errors.As(snap.Err, &de) || snap.Value != 0 || snap.Rev != 0 {
		t.Fatalf("bad first version: value %d rev %d err %v, want 0, 0, a *DecodeError", snap.Value, snap.Rev, snap.Err)
	}

	good, err := v.Set(ctx, 42)
	if err != nil {
		t.Fatal(err)
	}
	if snap := v.Snapshot(); snap.Value != 42 || snap.Err != nil {
		t.Fatalf("after good Set: %d err %v", snap.Value, snap.Err)
	}

	bad, err := s.Put(ctx, "cfg/limit", []byte(`"forty-three"`))
	if err != nil {
		t.Fatal(err)
	}
	snap := waitVar(t, v, "decode error reported", func(s VarSnapshot[int]) bool { return s.Err != nil })
	if !errors.As(snap.Err, &de) {
		t.Fatalf("Err = %v, want a *DecodeError", snap.Err)
	}
	if de.Key != "cfg/limit" || de.Rev != bad.Revision || de.Err == nil {
		t.Errorf("DecodeError = %+v, want key cfg/limit at revision %d with the codec's error", de, bad.Revision)
	}
	if snap.Value != 42 || snap.Rev != good || v.Load() != 42 || v.Err() == nil {
		t.Errorf("after a bad version: value %d rev %d, want the last good one (42 at %d)", snap.Value, snap.Rev, good)
	}

	// CompareAndSet at the last good revision conflicts (the bad version is
	// newer); at DecodeError.Rev it replaces the bad version.
	if _, err := v.CompareAndSet(ctx, good, 44); !errors.Is(err, ErrConflict) {
		t.Fatalf("CompareAndSet at the stale revision: %v, want ErrConflict", err)
	}
	if _, err := v.CompareAndSet(ctx, de.Rev, 44); err != nil {
		t.Fatal(err)
	}
	if snap := v.Snapshot(); snap.Value != 44 || snap.Err != nil {
		t.Fatalf("after repair: %d err %v", snap.Value, snap.Err)
	}
}

func TestVarCompareAndSet(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	v := bindTestVar[int](t, s, "counter", nil)

	// Revision 0: only if the key does not exist.
	r1, err := v.CompareAndSet(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.CompareAndSet(ctx, 0, 100); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	r2, err := v.CompareAndSet(ctx, r1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.CompareAndSet(ctx, r1, 3); !errors.Is(err, ErrConflict) {
		t.Fatalf("CompareAndSet at an old revision: %v, want ErrConflict", err)
	}
	if snap := v.Snapshot(); snap.Value != 2 || snap.Rev != r2 {
		t.Fatalf("after CAS: %d at %d, want 2 at %d", snap.Value, snap.Rev, r2)
	}

	// Concurrent read-modify-write loops lose nothing.
	const workers, each = 4, 10
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < each; {
				snap := v.Snapshot()
				_, err := v.CompareAndSet(ctx, snap.Rev, snap.Value+1)
				switch {
				case err == nil:
					done++
				case errors.Is(err, ErrConflict):
					conflicts.Add(1)
					// Our snapshot is behind: wait for the Var to move on
					// (bounded: the test's ctx).
					select {
					case <-snap.Changed():
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	resp, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(2 + workers*each); string(resp.KVs[0].Value) != want {
		t.Fatalf("counter = %s, want %s (lost updates)", resp.KVs[0].Value, want)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
}

func TestVarChanged(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	v := bindTestVar[string](t, s, "motd", nil)

	snap := v.Snapshot()
	select {
	case <-snap.Changed():
		t.Fatal("Changed closed before any change")
	default:
	}
	// Several changes while nobody listens: the waiter wakes once and sees
	// the latest (changes coalesce; the Var never waits for a reader).
	for _, m := range []string{"a", "b", "c"} {
		if _, err := s.Put(ctx, "motd", []byte(strconv.Quote(m))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-snap.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed after a change")
	}
	last := waitVar(t, v, "latest value", func(s VarSnapshot[string]) bool { return s.Value == "c" })
	select {
	case <-last.Changed():
		t.Fatal("the latest snapshot's Changed closed without a change")
	case <-v.Changed():
		t.Fatal("Var.Changed closed without a change")
	default:
	}
	if _, err := v.Set(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-last.Changed():
	default:
		t.Fatal("Changed still open after Set returned")
	}
}

// gatedCodec is JSON whose Unmarshal blocks, once armed, until released:
// it stalls a Var's goroutine so that its watch falls behind.
type gatedCodec struct {
	armed   atomic.Bool
	entered chan struct{} // receives once when a call blocks
	release chan struct{} // closed to let calls through
	once    sync.Once
}

func (c *gatedCodec) Marshal(v any) ([]byte, error) { return JSONCodec{}.Marshal(v) }

func (c *gatedCodec) Unmarshal(data []byte, v any) error {
	if c.armed.Load() {
		c.once.Do(func() { c.entered <- struct{}{} })
		<-c.release
	}
	return JSONCodec{}.Unmarshal(data, v)
}

// A Var whose watch fell so far behind that the history it needed was
// compacted reads the key again and follows on from there.
func TestVarResumesAfterCompaction(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	codec := &gatedCodec{entered: make(chan struct{}, 1), release: make(chan struct{})}
	v := bindTestVar[int](t, s, "n", &VarOptions{Codec: codec})
	defer func() {
		select {
		case <-codec.release:
		default:
			close(codec.release)
		}
	}()

	codec.armed.Store(true)
	if _, err := s.Put(ctx, "n", []byte("0")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-codec.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the Var never decoded the first put")
	}
	// The Var is stuck decoding revision 2. Fill its watch's buffer until
	// the watch must catch up from history, then compact that history.
	var last *PutResponse
	for i := 1; i <= 2*watchBuffer+10; i++ {
		var err error
		if last, err = s.Put(ctx, "n", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(ctx, last.Revision); err != nil {
		t.Fatal(err)
	}
	close(codec.release)

	snap := waitVar(t, v, "latest value after compaction", func(s VarSnapshot[int]) bool { return s.Rev == last.Revision })
	if snap.Value != 2*watchBuffer+10 || snap.Err != nil {
		t.Fatalf("after compaction: %d err %v", snap.Value, snap.Err)
	}
	// And it keeps following.
	put, err := s.Put(ctx, "n", []byte("-1"))
	if err != nil {
		t.Fatal(err)
	}
	waitVar(t, v, "a write after the reload", func(s VarSnapshot[int]) bool { return s.Rev == put.Revision && s.Value == -1 })
}

func TestPrefixVar(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	for k, val := range map[string]string{"limits/a": "1", "limits/b": "2", "limitsX": "9", "other": "7"} {
		if _, err := s.Put(ctx, k, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := BindPrefixVar[int](ctx, s, "limits/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })

	wantMap := func(what string, want map[string]int) VarSnapshot[map[string]int] {
		t.Helper()
		return waitVar(t, v, what, func(s VarSnapshot[map[string]int]) bool { return maps.Equal(s.Value, want) })
	}
	wantMap("initial", map[string]int{"a": 1, "b": 2})

	put, err := s.Put(ctx, "limits/c", []byte("3"))
	if err != nil {
		t.Fatal(err)
	}
	snap := wantMap("after put", map[string]int{"a": 1, "b": 2, "c": 3})
	if snap.Rev < put.Revision {
		t.Errorf("Rev %d below the put's revision %d", snap.Rev, put.Revision)
	}

	// A bad entry keeps its last good value; the others carry on.
	bad, err := s.Put(ctx, "limits/a", []byte("oops"))
	if err != nil {
		t.Fatal(err)
	}
	snap = waitVar(t, v, "decode error", func(s VarSnapshot[map[string]int]) bool { return s.Err != nil })
	var de *DecodeError
	if !errors.As(snap.Err, &de) || de.Key != "limits/a" || de.Rev != bad.Revision {
		t.Fatalf("Err = %v, want a *DecodeError for limits/a at %d", snap.Err, bad.Revision)
	}
	if !maps.Equal(snap.Value, map[string]int{"a": 1, "b": 2, "c": 3}) {
		t.Fatalf("value with a bad entry: %v", snap.Value)
	}
	if _, err := s.Delete(ctx, "limits/a"); err != nil {
		t.Fatal(err)
	}
	snap = wantMap("bad entry deleted", map[string]int{"b": 2, "c": 3})
	if snap.Err != nil {
		t.Fatalf("Err after the bad entry was deleted: %v", snap.Err)
	}

	// Set writes the whole map: puts what changed, deletes what is gone,
	// in one revision, and leaves other keys alone.
	before := v.Snapshot()
	rev, err := v.Set(ctx, map[string]int{"b": 2, "d": 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); !maps.Equal(got, map[string]int{"b": 2, "d": 4}) {
		t.Fatalf("Load after Set: %v", got)
	}
	resp, err := s.Get(ctx, "limits/b")
	if err != nil || resp.KVs[0].ModRevision >= rev {
		t.Fatalf("unchanged entry was rewritten: %v %v", resp, err)
	}
	for _, k := range []string{"limitsX", "other"} {
		if resp, err := s.Get(ctx, k); err != nil || resp.Count != 1 {
			t.Fatalf("%s touched by a prefix Set: %v %v", k, resp, err)
		}
	}
	// Setting what is already there writes nothing.
	if _, err := v.Set(ctx, map[string]int{"b": 2, "d": 4}); err != nil {
		t.Fatal(err)
	}
	if now, err := s.Get(ctx, "limits/", WithPrefix(), WithCountOnly()); err != nil || now.Revision != rev {
		t.Fatalf("a Set without changes moved the revision from %d: %v %v", rev, now, err)
	}

	// CompareAndSet detects each kind of change after the revision.
	if _, err := v.CompareAndSet(ctx, before.Rev, map[string]int{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("CAS at a revision before Set: %v, want ErrConflict", err)
	}
	cur := v.Snapshot()
	for _, tc := range []struct {
		name   string
		change func() error
	}{
		{"create", func() error { _, err := s.Put(ctx, "limits/e", []byte("5")); return err }},
		{"update", func() error { _, err := s.Put(ctx, "limits/b", []byte("20")); return err }},
		{"delete", func() error { _, err := s.Delete(ctx, "limits/d"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := v.Snapshot()
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			if _, err := v.CompareAndSet(ctx, at.Rev, map[string]int{"z": 26}); !errors.Is(err, ErrConflict) {
				t.Fatalf("CAS after a %s: %v, want ErrConflict", tc.name, err)
			}
			if resp, err := s.Get(ctx, "limits/z"); err != nil || resp.Count != 0 {
				t.Fatalf("a failed CAS wrote: %v %v", resp, err)
			}
		})
	}
	at := waitVar(t, v, "all changes seen", func(s VarSnapshot[map[string]int]) bool {
		return maps.Equal(s.Value, map[string]int{"b": 20, "e": 5})
	})
	if at.Rev <= cur.Rev {
		t.Fatalf("Rev did not grow: %d then %d", cur.Rev, at.Rev)
	}
	if _, err := v.CompareAndSet(ctx, at.Rev, map[string]int{"z": 26}); err != nil {
		t.Fatalf("CAS at the current revision: %v", err)
	}
	if got := v.Load(); !maps.Equal(got, map[string]int{"z": 26}) {
		t.Fatalf("after CAS: %v", got)
	}

	// Revisions out of reach.
	now, err := s.Get(ctx, "x", WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.CompareAndSet(ctx, now.Revision+100, nil); !errors.Is(err, ErrFutureRev) {
		t.Errorf("CAS at a future revision: %v, want ErrFutureRev", err)
	}
	if err := s.Compact(ctx, now.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := v.CompareAndSet(ctx, now.Revision-1, nil); !errors.Is(err, ErrConflict) || !errors.Is(err, ErrCompacted) {
		t.Errorf("CAS at a compacted revision: %v, want ErrConflict and ErrCompacted", err)
	}
}

func TestVarStops(t *testing.T) {
	t.Run("Close", func(t *testing.T) {
		s := openTestStore(t, "", nil)
		v := bindTestVar[int](t, s, "k", nil)
		if _, err := v.Set(t.Context(), 7); err != nil {
			t.Fatal(err)
		}
		snap := v.Snapshot()
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		if err := v.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		checkStopped(t, v, snap, ErrClosed)
		if _, err := v.Set(t.Context(), 8); !errors.Is(err, ErrClosed) {
			t.Errorf("Set after Close: %v, want ErrClosed", err)
		}
		if _, err := v.CompareAndSet(t.Context(), 0, 8); !errors.Is(err, ErrClosed) {
			t.Errorf("CompareAndSet after Close: %v, want ErrClosed", err)
		}
	})
	t.Run("ctx", func(t *testing.T) {
		s := openTestStore(t, "", nil)
		ctx, cancel := context.WithCancel(t.Context())
		v, err := BindVar[int](ctx, s, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		snap := v.Snapshot()
		cancel()
		checkStopped(t, v, snap, context.Canceled)
	})
	t.Run("store closed", func(t *testing.T) {
		s, err := Open(t.TempDir(), testOptions())
		if err != nil {
			t.Fatal(err)
		}
		v, err := BindVar[int](t.Context(), s, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		snap := v.Snapshot()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Store.Close waited for the Var's goroutine: it has stopped.
		if st := v.cur.Load(); !st.stopped {
			t.Fatal("Var still running after Store.Close returned")
		}
		checkStopped(t, v, snap, ErrClosed)
		v.Close()
		if _, err := BindVar[int](t.Context(), s, "k", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("BindVar on a closed store: %v, want ErrClosed", err)
		}
	})
}

// checkStopped checks that v has stopped after snap, for the reason want.
func checkStopped[T comparable](t *testing.T, v *Var[T], snap VarSnapshot[T], want error) {
	t.Helper()
	select {
	case <-snap.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("the last snapshot's Changed did not close when the Var stopped")
	}
	final, err := v.Wait(t.Context(), func(s VarSnapshot[T]) bool { return s.Err != nil })
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(final.Err, ErrClosed) || !errors.Is(final.Err, want) {
		t.Errorf("Err = %v, want ErrClosed and %v", final.Err, want)
	}
	if final.Value != snap.Value || final.Rev != snap.Rev || v.Load() != snap.Value {
		t.Errorf("stopped Var changed its value: %v at %d, was %v at %d", final.Value, final.Rev, snap.Value, snap.Rev)
	}
	select {
	case <-final.Changed():
	default:
		t.Error("the final snapshot's Changed is open: waiters would hang")
	}
	if _, err := v.Wait(t.Context(), func(VarSnapshot[T]) bool { return false }); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait on a stopped Var: %v, want ErrClosed", err)
	}
}

func TestBindVarErrors(t *testing.T) {
	s := openTestStore(t, "", nil)
	if _, err := BindVar[int](t.Context(), s, "", nil); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("empty key: %v, want ErrEmptyKey", err)
	}
	if _, err := BindPrefixVar[int](t.Context(), s, "", nil); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("empty prefix: %v, want ErrEmptyKey", err)
	}
	if _, err := BindVar[int](t.Context(), nil, "k", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil store: %v, want ErrInvalidArgument", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := BindVar[int](ctx, s, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v, want context.Canceled", err)
	}
	// A value the codec cannot encode is the codec's error, and nothing is
	// written.
	v := bindTestVar[func()](t, s, "fn", nil)
	if _, err := v.Set(t.Context(), func() {}); err == nil {
		t.Error("Set of an unencodable value succeeded")
	}
}

// A Var on a follower sees writes made through the leader, and its own
// writes (forwarded to the leader) are visible to it when Set returns.
func TestVarFollowsCluster(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := t.Context()
	leader, follower := c.leader().store(), c.follower().store()
	v := bindTestVar[testFlags](t, follower, "cfg/flags", nil)
	lv := bindTestVar[testFlags](t, leader, "cfg/flags", nil)

	put, err := leader.Put(ctx, "cfg/flags", []byte(`{"checkout":true}`))
	if err != nil {
		t.Fatal(err)
	}
	waitVar(t, v, "leader's write on the follower", func(s VarSnapshot[testFlags]) bool {
		return s.Rev == put.Revision && s.Value.Checkout
	})

	rev, err := v.CompareAndSet(ctx, put.Revision, testFlags{Banner: "from follower"})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Snapshot(); got.Rev != rev || got.Value.Banner != "from follower" {
		t.Fatalf("follower's own write: %+v at %d, want at %d", got.Value, got.Rev, rev)
	}
	waitVar(t, lv, "follower's write on the leader", func(s VarSnapshot[testFlags]) bool { return s.Rev == rev })
}
