package accord

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// Lease tests use wlOptions (ElectionTimeout 50ms): the minimum TTL is 75ms.
// time.Sleep appears only where a test is about time passing.

func ltGrant(t *testing.T, s *Store, ttl time.Duration, opts ...OpOption) LeaseID {
	t.Helper()
	id, err := s.Grant(t.Context(), ttl, opts...)
	if err != nil {
		t.Fatalf("grant %v: %v", ttl, err)
	}
	return id
}

// ltGrantWithKeys grants a lease and attaches keys to it in one txn, and
// returns the lease and the txn's revision. With a short TTL on a loaded
// machine the lease can expire between the two calls; that is retried, but
// only if the TTL really had passed.
func ltGrantWithKeys(t *testing.T, s *Store, ttl time.Duration, keys ...string) (LeaseID, int64) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		id := ltGrant(t, s, ttl)
		ops := make([]Op, len(keys))
		for i, k := range keys {
			ops[i] = OpPut(k, []byte("v-"+k), WithLease(id))
		}
		r, err := s.Txn(t.Context()).Then(ops...).Commit()
		if err == nil {
			return id, r.Revision
		}
		if d := time.Since(start); errors.Is(err, ErrLeaseNotFound) && d >= ttl && attempt < 5 {
			t.Logf("lease %d expired before its keys were attached (%v after Grant); retrying", id, d)
			continue
		}
		t.Fatalf("attach %q to lease %d: %v", keys, id, err)
	}
}

func ltKeys(t *testing.T, s *Store, id LeaseID) []string {
	t.Helper()
	st, err := s.TimeToLive(t.Context(), id, WithAttachedKeys())
	if err != nil {
		t.Fatalf("time-to-live %d: %v", id, err)
	}
	return st.Keys
}

func ltWantKeys(t *testing.T, s *Store, id LeaseID, want ...string) {
	t.Helper()
	got := ltKeys(t, s, id)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("lease %d has keys %q, want %q", id, got, want)
	}
}

func ltLeases(t *testing.T, s *Store) []LeaseID {
	t.Helper()
	ids, err := s.Leases(t.Context())
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	return ids
}

// ltGet returns key's current version, or nil.
func ltGet(t *testing.T, s *Store, key string) *KeyValue {
	t.Helper()
	r, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if len(r.KVs) == 0 {
		return nil
	}
	return &r.KVs[0]
}

// ltWantGone checks that lease id no longer exists in any way a caller
// can see.
func ltWantGone(t *testing.T, s *Store, id LeaseID) {
	t.Helper()
	if slices.Contains(ltLeases(t, s), id) {
		t.Errorf("lease %d still listed by Leases", id)
	}
	if _, err := s.TimeToLive(t.Context(), id); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("TimeToLive of lease %d: err %v, want ErrLeaseNotFound", id, err)
	}
	if _, err := s.KeepAliveOnce(t.Context(), id); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("KeepAliveOnce of lease %d: err %v, want ErrLeaseNotFound", id, err)
	}
	if _, err := s.Put(t.Context(), "lt/after-gone", nil, WithLease(id)); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("Put with lease %d: err %v, want ErrLeaseNotFound", id, err)
	}
}

// ltWantOneDeleteRevision reads one response from ch and checks that it
// deletes exactly keys (ascending), all at revision rev.
func ltWantOneDeleteRevision(t *testing.T, ch <-chan WatchResponse, rev int64, keys ...string) {
	t.Helper()
	r := wlRecv(t, ch)
	if r.Err != nil {
		t.Fatalf("watch: %v", r.Err)
	}
	var got []string
	for _, ev := range r.Events {
		if ev.Type != EventDelete || ev.KV.ModRevision != rev {
			t.Errorf("event %s, want a delete at revision %d", wlFmtEvent(ev), rev)
		}
		got = append(got, ev.KV.Key)
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("one response deleted %q, want %q in one revision", got, keys)
	}
}

func TestLeaseGrant(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()

	t.Run("ids and TTLs", func(t *testing.T) {
		a := ltGrant(t, s, 10*time.Second)
		b := ltGrant(t, s, 10*time.Second)
		if a <= 0 || b <= 0 || a == b {
			t.Fatalf("grant returned IDs %d and %d, want two distinct positive IDs", a, b)
		}
		for _, tc := range []struct {
			ask, want time.Duration
		}{
			{0, 75 * time.Millisecond},
			{time.Millisecond, 75 * time.Millisecond},
			{74 * time.Millisecond, 75 * time.Millisecond},
			{100 * time.Millisecond, 100 * time.Millisecond},
			{time.Hour, time.Hour},
			{MaxLeaseTTL, MaxLeaseTTL},
		} {
			for attempt := 1; ; attempt++ {
				start := time.Now()
				id := ltGrant(t, s, tc.ask)
				st, err := s.TimeToLive(ctx, id)
				d := time.Since(start)
				if errors.Is(err, ErrLeaseNotFound) && d >= tc.want && attempt < 5 {
					continue // stalled past the TTL on a loaded machine
				}
				if err != nil {
					t.Fatalf("Grant(%v): time-to-live: %v", tc.ask, err)
				}
				// The TTL started no earlier than Grant was called.
				if st.ID != id || st.GrantedTTL != tc.want || st.TTL > tc.want || st.TTL < tc.want-d {
					t.Errorf("Grant(%v): status %+v after %v, want granted TTL %v and TTL in [%v, %v]", tc.ask, st, d, tc.want, tc.want-d, tc.want)
				}
				break
			}
		}
	})

	t.Run("too large", func(t *testing.T) {
		rev := wlRev(t, s)
		before := ltLeases(t, s)
		if _, err := s.Grant(ctx, MaxLeaseTTL+time.Second); !errors.Is(err, ErrLeaseTTLTooLarge) {
			t.Fatalf("err %v, want ErrLeaseTTLTooLarge", err)
		}
		if after := ltLeases(t, s); !slices.Equal(before, after) || wlRev(t, s) != rev {
			t.Fatalf("a refused grant changed state: leases %v -> %v", before, after)
		}
	})

	t.Run("WithLeaseID", func(t *testing.T) {
		id, err := s.Grant(ctx, time.Minute, WithLeaseID(4242))
		if err != nil || id != 4242 {
			t.Fatalf("got %d, %v; want lease 4242", id, err)
		}
		if _, err := s.Grant(ctx, 2*time.Minute, WithLeaseID(4242)); !errors.Is(err, ErrLeaseExists) {
			t.Fatalf("duplicate ID: err %v, want ErrLeaseExists", err)
		}
		if st, err := s.TimeToLive(ctx, 4242); err != nil || st.GrantedTTL != time.Minute {
			t.Fatalf("after a refused duplicate: %+v, %v; want the original 1m lease", st, err)
		}
		if _, err := s.Grant(ctx, time.Minute, WithLeaseID(-1)); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("negative ID: err %v, want ErrInvalidArgument", err)
		}
		ids := ltLeases(t, s)
		if !slices.Contains(ids, 4242) || !slices.IsSorted(ids) {
			t.Fatalf("Leases() = %v, want an ascending list containing 4242", ids)
		}
	})
}

// TestLeaseAttach: keys attach to leases through Put, move between leases,
// and detach when moved off a lease or deleted.
func TestLeaseAttach(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	l1 := ltGrant(t, s, time.Minute)
	l2 := ltGrant(t, s, time.Minute)

	t.Run("unknown lease", func(t *testing.T) {
		rev := wlRev(t, s)
		if _, err := s.Put(ctx, "m/x", []byte("v"), WithLease(987654321)); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("put with an unknown lease: err %v, want ErrLeaseNotFound", err)
		}
		_, err := s.Txn(ctx).Then(OpPut("m/y", []byte("v")), OpPut("m/x", []byte("v"), WithLease(987654321))).Commit()
		if !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("txn with an unknown lease: err %v, want ErrLeaseNotFound", err)
		}
		if ltGet(t, s, "m/x") != nil || ltGet(t, s, "m/y") != nil || wlRev(t, s) != rev {
			t.Fatal("a write with an unknown lease changed the store")
		}
	})

	for _, k := range []string{"m/d", "m/a", "m/c", "m/b"} {
		wlPut(t, s, k, "v", WithLease(l1))
	}
	ltWantKeys(t, s, l1, "m/a", "m/b", "m/c", "m/d")
	ltWantKeys(t, s, l2)
	if st, err := s.TimeToLive(ctx, l1); err != nil || st.Keys != nil {
		t.Fatalf("TimeToLive without WithAttachedKeys: %+v, %v; want no keys", st, err)
	}
	if kv := ltGet(t, s, "m/a"); kv == nil || kv.Lease != l1 {
		t.Fatalf("m/a = %+v, want lease %d", kv, l1)
	}

	wlPut(t, s, "m/a", "v2", WithLease(l2)) // moved to another lease
	ltWantKeys(t, s, l1, "m/b", "m/c", "m/d")
	ltWantKeys(t, s, l2, "m/a")
	wlPut(t, s, "m/b", "v2") // moved off any lease
	ltWantKeys(t, s, l1, "m/c", "m/d")
	wlDelete(t, s, "m/c") // deleted
	ltWantKeys(t, s, l1, "m/d")
	wlPut(t, s, "m/d", "v2", WithIgnoreLease()) // keeps its lease
	ltWantKeys(t, s, l1, "m/d")
	if kv := ltGet(t, s, "m/d"); kv == nil || kv.Lease != l1 || string(kv.Value) != "v2" {
		t.Fatalf("m/d = %+v, want v2 on lease %d", kv, l1)
	}
	wlPut(t, s, "m/c", "v3", WithLease(l1)) // re-created on the lease
	ltWantKeys(t, s, l1, "m/c", "m/d")

	// Revoking l1 deletes only what is still attached to it.
	if err := s.Revoke(ctx, l1); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]LeaseID{"m/a": l2, "m/b": NoLease} {
		if kv := ltGet(t, s, key); kv == nil || kv.Lease != want {
			t.Errorf("%s = %+v after revoking the lease it left; want it on lease %d", key, kv, want)
		}
	}
	for _, key := range []string{"m/c", "m/d"} {
		if kv := ltGet(t, s, key); kv != nil {
			t.Errorf("%s = %+v survived the revoke of its lease", key, kv)
		}
	}
	ltWantKeys(t, s, l2, "m/a")
}

// TestLeaseExpiry: a lease that is not kept alive expires after its TTL and
// deletes its keys in one revision; the lease is gone.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, "", nil)
	ctx, _ := wlWatchCtx(t)
	const ttl = 100 * time.Millisecond
	wlPut(t, s, "e/keep", "v")
	granted := time.Now()
	id, rev := ltGrantWithKeys(t, s, ttl, "e/c", "e/a", "e/b")
	// From the next revision: the expiry may already have happened.
	ch := s.Watch(ctx, "e/", WithPrefix(), WithRev(rev+1))

	ltWantOneDeleteRevision(t, ch, rev+1, "e/a", "e/b", "e/c")
	if d := time.Since(granted); d < ttl {
		t.Errorf("lease expired after %v, before its TTL %v", d, ttl)
	}
	ltWantGone(t, s, id)
	if kv := ltGet(t, s, "e/keep"); kv == nil {
		t.Error("a key without the lease was deleted")
	}
	if r := wlRev(t, s); r != rev+1 {
		t.Errorf("revision %d after expiry, want %d", r, rev+1)
	}
}

// TestLeaseKeepAlive: KeepAliveOnce extends a lease; KeepAlive keeps a lease
// alive for several TTLs, stops when its ctx ends, and the lease then
// expires. The TTLs are 1s, not the 75ms minimum: on a loaded machine a
// goroutine can be descheduled for a few hundred milliseconds, which a
// renewal every TTL/3 of a 100ms lease does not survive. Time is only
// asserted as lower bounds (a lease never expires before renewal + TTL).
func TestLeaseKeepAlive(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	const ttl = time.Second

	t.Run("unknown", func(t *testing.T) {
		if _, err := s.KeepAliveOnce(ctx, 123456789); !errors.Is(err, ErrLeaseNotFound) {
			t.Errorf("KeepAliveOnce: err %v, want ErrLeaseNotFound", err)
		}
		ch, err := s.KeepAlive(ctx, 123456789)
		if !errors.Is(err, ErrLeaseNotFound) || ch != nil {
			t.Errorf("KeepAlive: %v, %v; want nil, ErrLeaseNotFound", ch, err)
		}
	})

	t.Run("once", func(t *testing.T) {
		t.Parallel()
		id, rev := ltGrantWithKeys(t, s, ttl, "ka/once")
		wctx, _ := wlWatchCtx(t)
		ch := s.Watch(wctx, "ka/once", WithRev(rev+1))
		time.Sleep(ttl / 4)
		before, err := s.TimeToLive(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if before.TTL > ttl*3/4 {
			t.Fatalf("TTL left %v after %v of a %v lease", before.TTL, ttl/4, ttl)
		}
		renewed := time.Now()
		st, err := s.KeepAliveOnce(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != id || st.TTL != ttl || st.GrantedTTL != ttl {
			t.Errorf("KeepAliveOnce status %+v, want ID %d and TTL %v", st, id, ttl)
		}
		after, err := s.TimeToLive(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if min := ttl - time.Since(renewed); after.TTL < min {
			t.Errorf("TTL left %v after the keep-alive, want at least %v (it was %v before)", after.TTL, min, before.TTL)
		}
		// Not renewed again, it expires, but a full TTL after the renewal.
		r := wlRecv(t, ch)
		if d := time.Since(renewed); d < ttl {
			t.Errorf("lease expired %v after KeepAliveOnce, before its TTL %v", d, ttl)
		}
		if len(r.Events) != 1 || r.Events[0].Type != EventDelete {
			t.Fatalf("got %+v, want the key's deletion", r)
		}
		ltWantGone(t, s, id)
	})

	t.Run("stream", func(t *testing.T) {
		t.Parallel()
		id, _ := ltGrantWithKeys(t, s, ttl, "ka/stream")
		kctx, cancel := wlWatchCtx(t)
		ch, err := s.KeepAlive(kctx, id)
		if err != nil {
			t.Fatal(err)
		}
		statuses := 0
		until := time.After(3 * ttl)
	alive:
		for {
			select {
			case st, ok := <-ch:
				if !ok {
					t.Fatal("keep-alive channel closed while its ctx is live")
				}
				if st.ID != id || st.GrantedTTL != ttl {
					t.Fatalf("status %+v, want lease %d with TTL %v", st, id, ttl)
				}
				statuses++
			case <-until:
				break alive
			}
		}
		if statuses < 3 {
			t.Errorf("%d keep-alive statuses over %v with a %v TTL, want at least 3", statuses, 3*ttl, ttl)
		}
		if _, err := s.TimeToLive(ctx, id); err != nil {
			t.Fatalf("lease kept alive for 3 TTLs expired: %v", err)
		}
		if ltGet(t, s, "ka/stream") == nil {
			t.Fatal("key of a lease kept alive was deleted")
		}

		cancel()
		stopped := time.Now()
		deadline := time.After(wlWait)
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatal("keep-alive channel not closed after its ctx was cancelled")
			}
		}
		for {
			_, err := s.TimeToLive(ctx, id)
			if errors.Is(err, ErrLeaseNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-deadline:
				t.Fatalf("lease did not expire %v after its keep-alive stopped", time.Since(stopped))
			case <-time.After(10 * time.Millisecond):
			}
		}
		if ltGet(t, s, "ka/stream") != nil {
			t.Fatal("key of the expired lease survived")
		}
	})
}

// TestLeaseRevoke: Revoke deletes the attached keys in one revision and the
// lease; revoking an unknown lease fails; a lease without keys is revoked
// without a new revision.
func TestLeaseRevoke(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx, _ := wlWatchCtx(t)
	id := ltGrant(t, s, time.Minute)
	for _, k := range []string{"r/b", "r/c", "r/a"} {
		wlPut(t, s, k, "v", WithLease(id))
	}
	ch := s.Watch(ctx, "r/", WithPrefix())
	rev := wlRev(t, s)
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	ltWantOneDeleteRevision(t, ch, rev+1, "r/a", "r/b", "r/c")
	if r := wlRev(t, s); r != rev+1 {
		t.Errorf("revision %d after revoke, want %d", r, rev+1)
	}
	ltWantGone(t, s, id)
	if err := s.Revoke(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("second revoke: err %v, want ErrLeaseNotFound", err)
	}
	if err := s.Revoke(ctx, 55555); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("revoke of an unknown lease: err %v, want ErrLeaseNotFound", err)
	}

	empty := ltGrant(t, s, time.Minute)
	rev = wlRev(t, s)
	if err := s.Revoke(ctx, empty); err != nil {
		t.Fatal(err)
	}
	if r := wlRev(t, s); r != rev {
		t.Errorf("revoking a lease without keys moved the revision %d -> %d", rev, r)
	}
	ltWantGone(t, s, empty)
}

// TestLeaseRestart: leases survive Close and Open of the same directory
// with their full TTL restarted (the new leader extends them, even past the
// time they would have expired under the old one), their keys intact; they
// then expire after the TTL, and stay expired after another restart. Both
// with the log replayed and with the state restored from a snapshot.
func TestLeaseRestart(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "log", true: "snapshot"}[snapshot], func(t *testing.T) {
			t.Parallel()
			ltRestart(t, snapshot)
		})
	}
}

func ltRestart(t *testing.T, snapshot bool) {
	dir := t.TempDir()
	const ttl = time.Second
	s1 := openTestStore(t, dir, nil)
	long := ltGrant(t, s1, time.Hour)
	wlPut(t, s1, "rs/c", "3", WithLease(long))
	wlPut(t, s1, "rs/d", "4")
	granted := time.Now()
	id, rev := ltGrantWithKeys(t, s1, ttl, "rs/a", "rs/b")
	if snapshot {
		if err := s1.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// Stay down past the lease's original expiry.
	time.Sleep(time.Until(granted.Add(ttl + ttl/4)))

	reopened := time.Now()
	s2 := openTestStore(t, dir, nil)
	st, err := s2.TimeToLive(t.Context(), id, WithAttachedKeys())
	if err != nil {
		t.Fatalf("lease lost across a restart: %v", err)
	}
	// The new leader started the full TTL no earlier than Open was called.
	if st.GrantedTTL != ttl || st.TTL < ttl-time.Since(reopened) || !slices.Equal(st.Keys, []string{"rs/a", "rs/b"}) {
		t.Fatalf("after restart: %+v; want granted %v, a TTL restarted at Open, keys rs/a rs/b", st, ttl)
	}
	if ids := ltLeases(t, s2); !slices.Contains(ids, id) || !slices.Contains(ids, long) {
		t.Fatalf("Leases() = %v after restart, want %d and %d", ids, id, long)
	}
	if r := wlRev(t, s2); r != rev {
		t.Fatalf("revision %d after restart, want %d", r, rev)
	}
	for key, want := range map[string]LeaseID{"rs/a": id, "rs/b": id, "rs/c": long, "rs/d": NoLease} {
		if kv := ltGet(t, s2, key); kv == nil || kv.Lease != want {
			t.Fatalf("%s = %+v after restart, want it on lease %d", key, kv, want)
		}
	}

	// Not kept alive, it expires: both keys in one revision.
	ctx, _ := wlWatchCtx(t)
	ch := s2.Watch(ctx, "rs/", WithPrefix(), WithRev(rev+1))
	ltWantOneDeleteRevision(t, ch, rev+1, "rs/a", "rs/b")
	if d := time.Since(reopened); d < ttl {
		t.Errorf("lease expired %v after the restart, before its TTL %v", d, ttl)
	}
	ltWantGone(t, s2, id)
	rev = wlRev(t, s2)
	if snapshot {
		if err := s2.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// The expiry is in the log: another restart replays it.
	s3 := openTestStore(t, dir, nil)
	if r := wlRev(t, s3); r != rev {
		t.Fatalf("revision %d after the second restart, want %d", r, rev)
	}
	ltWantGone(t, s3, id)
	r, err := s3.Get(t.Context(), "rs/", WithPrefix(), WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range r.KVs {
		got = append(got, kv.Key)
	}
	if !slices.Equal(got, []string{"rs/c", "rs/d"}) {
		t.Fatalf("keys %q after the second restart, want rs/c rs/d", got)
	}
	ltWantKeys(t, s3, long, "rs/c")
}
