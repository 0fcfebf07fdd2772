package accord

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWatchProgressRequests: a progress answer comes after every event up
// to its revision, whether the watcher is idle, synced with a backlog, or
// catching up from history.
func TestWatchProgressRequests(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req := make(chan struct{}, 1)
	wch := s.Watch(ctx, "k/", WithPrefix(), WithProgressRequests(req))

	// Idle, only unrelated writes: the answer is the current revision.
	for i := range 3 {
		if _, err := s.Put(ctx, fmt.Sprintf("other%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	req <- struct{}{}
	r := <-wch
	if !r.IsProgressNotify() || r.Revision != s.ks.Rev() {
		t.Fatalf("idle progress: %+v, want revision %d", r, s.ks.Rev())
	}

	// A backlog far beyond the watcher's buffer, unread: it falls back to
	// catch-up. The answer must follow every event.
	const n = 3 * watchBuffer
	var last int64
	for i := range n {
		p, err := s.Put(ctx, fmt.Sprintf("k/%d", i), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		last = p.Revision
	}
	req <- struct{}{}
	seen := 0
	for {
		var r WatchResponse
		select {
		case r = <-wch:
		case <-ctx.Done():
			t.Fatalf("no progress answer; %d of %d events seen", seen, n)
		}
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.IsProgressNotify() {
			if seen != n || r.Revision < last {
				t.Fatalf("progress at %d after %d of %d events (last revision %d)", r.Revision, seen, n, last)
			}
			break
		}
		seen += len(r.Events)
	}
}

// TestWatchResumedOnLaggingMemberNoEarlyProgress: a watch resumed at
// revision R (its client has seen R-1, from another member) on a member
// that has not applied R-1 yet gets no progress notification, periodic or
// requested, at the member's own lower revision; once the member has
// caught up, both arrive at R-1 or later (etcd issue 20221; issue 17,
// item 3).
func TestWatchResumedOnLaggingMemberNoEarlyProgress(t *testing.T) {
	const interval = 20 * time.Millisecond
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.WatchProgressNotifyInterval = interval })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	lagging := c.follower()
	ls := lagging.store()
	lagging.partition()
	var leader *testNode
	eventually(t, 20*time.Second, "a leader among the others", func() error {
		for _, nd := range c.running() {
			if nd != lagging && nd.store().isReady() {
				leader = nd
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	var last int64
	for i := range 20 {
		p, err := putSettled(ctx, leader.store(), fmt.Sprintf("k/%d", i), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		last = p.Revision
	}
	behind := ls.Revision()
	if behind >= last {
		t.Fatalf("the partitioned member is at revision %d, not behind %d", behind, last)
	}

	// Resume after `last`, as clientv3 does after receiving it elsewhere.
	req := make(chan struct{}, 1)
	wch := ls.Watch(ctx, "k/", WithPrefix(), WithRev(last+1), WithProgressNotify(), WithProgressRequests(req))
	req <- struct{}{}
	// Many ticks: every one of them would have carried the member's own
	// revision before the fix.
	quiet := time.NewTimer(25 * interval)
	defer quiet.Stop()
	for waiting := true; waiting; {
		select {
		case r := <-wch:
			t.Fatalf("while the member is at revision %d (behind %d): got %+v", ls.Revision(), last, r)
		case <-quiet.C:
			waiting = false
		}
	}

	lagging.heal()
	// Caught up: progress comes at `last` or later (both the periodic one
	// and the answer to the pending request), never below.
	got := 0
	for got < 2 {
		select {
		case r := <-wch:
			if r.Err != nil || len(r.Events) > 0 {
				t.Fatalf("unexpected response %+v", r)
			}
			if r.Revision < last {
				t.Fatalf("progress at revision %d after the watch resumed at %d", r.Revision, last+1)
			}
			got++
		case <-ctx.Done():
			t.Fatalf("no progress after healing (member at revision %d, want %d)", ls.Revision(), last)
		}
	}
}
