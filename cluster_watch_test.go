package accord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Watches across member failures: every revision reaches a watch exactly
// once, in order, without gaps, whether the watch is served by a follower
// while the leader dies, or resumed by revision on another member after
// the member serving it dies. The reference is the history replayed from
// revision 1 on the leader at the end.

const watchPrefix = "w/"

// TestClusterWatchFollowerLeaderChange watches on a follower while 4
// writers write through every member and the leader is killed.
func TestClusterWatchFollowerLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	f := c.follower()
	base := watchRev(t, ctx, f.store())
	col := startWatchCollector(t, ctx, c, f, base, false)
	w := startWatchWriters(c, 4)

	w.waitWrites(t, 200)
	l := c.leader()
	if l == f {
		t.Fatal("the watched follower became leader before the kill")
	}
	l.kill()
	if nl := c.leader(); nl == f {
		t.Logf("the watched node %d is the new leader", f.idx)
	}
	w.waitWrites(t, w.count()+200)
	w.stop()

	final := watchBarrier(t, ctx, c)
	col.waitRev(t, final)
	col.stop()
	got := col.result(t)
	want := watchHistory(t, ctx, c.leader().store(), base+1, final)
	compareWatch(t, got, want, base, final)
	t.Logf("watch on follower %d: %d revisions (%d..%d), %d writes acknowledged, %d failed, leader %d killed",
		f.idx, len(got), base+1, final, w.count(), w.failed.Load(), l.idx)
}

// TestClusterWatchResume kills the member serving a watch and resumes the
// watch by revision on another member.
func TestClusterWatchResume(t *testing.T) {
	for _, serving := range []string{"leader", "follower"} {
		t.Run("serving="+serving, func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()

			nd := c.leader()
			if serving == "follower" {
				nd = c.follower()
			}
			base := watchRev(t, ctx, nd.store())
			col := startWatchCollector(t, ctx, c, nd, base, true)
			w := startWatchWriters(c, 4)

			col.waitEvents(t, 150)
			nd.kill()
			c.leader()
			w.waitWrites(t, w.count()+200)
			w.stop()

			final := watchBarrier(t, ctx, c)
			col.waitRev(t, final)
			col.stop()
			got := col.result(t)
			if col.resumed.Load() == 0 {
				t.Fatal("the watch was never resumed: the kill did not end it")
			}
			want := watchHistory(t, ctx, c.leader().store(), base+1, final)
			compareWatch(t, got, want, base, final)
			t.Logf("watch served by the %s (node %d), resumed at revision %d: %d revisions (%d..%d), %d writes acknowledged, %d failed",
				serving, nd.idx, col.resumedAt.Load(), len(got), base+1, final, w.count(), w.failed.Load())
		})
	}
}

// watchRev is the revision s has applied.
func watchRev(t *testing.T, ctx context.Context, s *Store) int64 {
	t.Helper()
	g, err := s.Get(ctx, watchPrefix, WithPrefix(), WithSerializable(), WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return g.Revision
}

// watchBarrier writes one last key under the prefix through the leader
// once the writers have stopped, waits for every member to apply it, and
// returns its revision: no write of the test can land after it.
func watchBarrier(t *testing.T, ctx context.Context, c *testCluster) int64 {
	t.Helper()
	r, err := c.leader().store().Put(ctx, watchPrefix+"barrier", []byte("end"))
	if err != nil {
		t.Fatalf("barrier: %v", err)
	}
	c.waitConverged()
	return r.Revision
}

// ---- writers ----

type watchWriters struct {
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64
}

// startWatchWriters starts n writers that put under the prefix through a
// random running member each time, until stop (at the latest when the
// test ends).
func startWatchWriters(c *testCluster, n int) *watchWriters {
	w := &watchWriters{done: make(chan struct{})}
	c.t.Cleanup(w.stop)
	for id := range n {
		w.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			for seq := 0; ; seq++ {
				select {
				case <-w.done:
					return
				default:
				}
				nodes := c.running()
				if len(nodes) == 0 {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				s := nodes[rng.IntN(len(nodes))].store()
				if s == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := s.Put(ctx, fmt.Sprintf("%s%d/%d", watchPrefix, id, seq%5), fmt.Appendf(nil, "%d-%d", id, seq))
				cancel()
				if err != nil {
					w.failed.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				w.ok.Add(1)
			}
		})
	}
	return w
}

func (w *watchWriters) count() int64 { return w.ok.Load() }

func (w *watchWriters) waitWrites(t *testing.T, n int64) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%d acknowledged writes", n), func() error {
		if got := w.count(); got < n {
			return fmt.Errorf("%d", got)
		}
		return nil
	})
}

func (w *watchWriters) stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// ---- the watch under test ----

// watchCollector consumes a watch on the prefix. With resume, when the
// member serving it is killed (its channel closes), it resumes on another
// running member from the revision after the last one it received.
type watchCollector struct {
	cancel    context.CancelFunc
	done      chan struct{}
	last      atomic.Int64 // highest revision received
	nevents   atomic.Int64
	resumed   atomic.Int64 // how many times the watch was resumed
	resumedAt atomic.Int64 // the revision the last resume started from

	mu     sync.Mutex // guards events, err
	events []Event
	err    error
}

func startWatchCollector(t *testing.T, ctx context.Context, c *testCluster, nd *testNode, base int64, resume bool) *watchCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	col := &watchCollector{cancel: cancel, done: make(chan struct{})}
	col.last.Store(base)
	t.Cleanup(col.stop)
	// Started before any write, so that it begins right after base.
	ch := nd.store().Watch(ctx, watchPrefix, WithPrefix())
	go func() {
		defer close(col.done)
		serving := nd
		for {
			for resp := range ch {
				if err := col.take(resp); err != nil {
					col.fail(err)
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			if !resume {
				col.fail(fmt.Errorf("watch on node %d closed unexpectedly", serving.idx))
				return
			}
			// The serving member was killed: resume elsewhere. kill
			// clears the node before closing the store, so running()
			// no longer lists it.
			var s *Store
			for s == nil {
				for _, other := range c.running() {
					if other != serving {
						if s = other.store(); s != nil {
							serving = other
							break
						}
					}
				}
				if s == nil {
					select {
					case <-ctx.Done():
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
			from := col.last.Load() + 1
			col.resumed.Add(1)
			col.resumedAt.Store(from)
			ch = s.Watch(ctx, watchPrefix, WithPrefix(), WithRev(from))
		}
	}()
	return col
}

// take records one response, checking that it moves forward.
func (col *watchCollector) take(resp WatchResponse) error {
	if resp.Err != nil {
		return fmt.Errorf("watch error: %w", resp.Err)
	}
	if len(resp.Events) == 0 {
		return nil
	}
	col.mu.Lock()
	col.events = append(col.events, resp.Events...)
	col.mu.Unlock()
	for _, ev := range resp.Events {
		if ev.KV.ModRevision > resp.Revision {
			return fmt.Errorf("event at revision %d in a response at revision %d", ev.KV.ModRevision, resp.Revision)
		}
	}
	col.nevents.Add(int64(len(resp.Events)))
	col.last.Store(max(col.last.Load(), resp.Events[len(resp.Events)-1].KV.ModRevision))
	return nil
}

func (col *watchCollector) fail(err error) {
	col.mu.Lock()
	col.err = err
	col.mu.Unlock()
}

func (col *watchCollector) waitEvents(t *testing.T, n int64) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%d watch events", n), func() error {
		if got := col.nevents.Load(); got < n {
			return fmt.Errorf("%d", got)
		}
		return nil
	})
}

func (col *watchCollector) waitRev(t *testing.T, rev int64) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("the watch reaches revision %d", rev), func() error {
		col.mu.Lock()
		err := col.err
		col.mu.Unlock()
		if err != nil {
			return err
		}
		if got := col.last.Load(); got < rev {
			return fmt.Errorf("at %d", got)
		}
		return nil
	})
}

func (col *watchCollector) stop() {
	col.cancel()
	<-col.done
}

func (col *watchCollector) result(t *testing.T) []Event {
	t.Helper()
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.err != nil {
		t.Fatal(col.err)
	}
	return col.events
}

// watchHistory replays the prefix's events in [from, to] from s.
func watchHistory(t *testing.T, ctx context.Context, s *Store, from, to int64) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out []Event
	for resp := range s.Watch(ctx, watchPrefix, WithPrefix(), WithRev(from)) {
		if resp.Err != nil {
			t.Fatalf("history watch: %v", resp.Err)
		}
		for _, ev := range resp.Events {
			if ev.KV.ModRevision <= to {
				out = append(out, ev)
			}
		}
		if len(out) > 0 && out[len(out)-1].KV.ModRevision >= to {
			return out
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("history watch from %d did not reach %d", from, to)
	}
	t.Fatalf("history watch from %d closed before %d", from, to)
	return nil
}

func describeEvent(ev Event) string {
	return fmt.Sprintf("rev %d %s %s=%q version %d created %d", ev.KV.ModRevision, ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.Version, ev.KV.CreateRevision)
}

// compareWatch checks that got has exactly the events of want, and that,
// since every write of the test is one put under the prefix, it holds one
// event for every revision in (base, final], in order.
func compareWatch(t *testing.T, got, want []Event, base, final int64) {
	t.Helper()
	next := base + 1
	for i, ev := range got {
		switch r := ev.KV.ModRevision; {
		case r < next:
			t.Fatalf("event %d repeats or goes back: revision %d after %d (%s)", i, r, next-1, describeEvent(ev))
		case r > next:
			t.Fatalf("event %d skips revisions %d..%d (%s)", i, next, r-1, describeEvent(ev))
		}
		next++
	}
	if next-1 != final {
		t.Fatalf("watch ended at revision %d, want %d", next-1, final)
	}
	if len(got) != len(want) {
		t.Fatalf("watch delivered %d events, the history has %d", len(got), len(want))
	}
	for i := range got {
		if g, w := describeEvent(got[i]), describeEvent(want[i]); g != w {
			t.Fatalf("event %d: watch delivered %s, the history has %s", i, g, w)
		}
	}
}
