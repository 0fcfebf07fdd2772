package accord

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers shared by watch_test.go and lease_test.go carry a "wl" prefix so
// that they do not collide with helpers in other test files of the package.

const wlWait = 10 * time.Second // generous upper bound for anything awaited

// wlOptions are fast settings for tests: the minimum lease TTL is 75ms.

// wlWatchCtx returns a ctx for a watch that is cancelled when the test ends.
func wlWatchCtx(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

func wlRev(t *testing.T, s *Store) int64 {
	t.Helper()
	r, err := s.Get(t.Context(), "\x00", WithFromKey(), WithCountOnly())
	if err != nil {
		t.Fatalf("get revision: %v", err)
	}
	return r.Revision
}

func wlPut(t *testing.T, s *Store, key, val string, opts ...OpOption) int64 {
	t.Helper()
	r, err := s.Put(t.Context(), key, []byte(val), opts...)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return r.Revision
}

func wlDelete(t *testing.T, s *Store, key string, opts ...OpOption) int64 {
	t.Helper()
	r, err := s.Delete(t.Context(), key, opts...)
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return r.Revision
}

// wlRecv returns the next response, failing if none comes in time or the
// channel closes.
func wlRecv(t *testing.T, ch <-chan WatchResponse) WatchResponse {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed unexpectedly")
		}
		return r
	case <-time.After(wlWait):
		t.Fatal("timed out waiting for a watch response")
	}
	panic("unreachable")
}

// wlDrainClosed reads ch until it closes and returns what it read.
func wlDrainClosed(t *testing.T, ch <-chan WatchResponse) []WatchResponse {
	t.Helper()
	var out []WatchResponse
	deadline := time.After(wlWait)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, r)
		case <-deadline:
			t.Fatalf("watch channel not closed in time (read %d responses)", len(out))
		}
	}
}

// wlCollect reads events from ch until a progress notification says the
// watch has seen every revision up to rev (the watch needs
// WithProgressNotify and a store with a short progress interval). It checks
// the ordering invariants every watch response must keep.
func wlCollect(t *testing.T, ch <-chan WatchResponse, rev int64) []Event {
	t.Helper()
	var c wlChecker
	deadline := time.After(wlWait)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while collecting (events so far: %s)", wlFmt(c.events))
			}
			if r.Err != nil {
				t.Fatalf("watch error while collecting: %v", r.Err)
			}
			if r.IsProgressNotify() {
				if r.Revision >= rev {
					return c.events
				}
				continue
			}
			c.add(t, r)
		case <-deadline:
			t.Fatalf("no progress notification up to revision %d (events so far: %s)", rev, wlFmt(c.events))
		}
	}
}

// wlChecker accumulates watch responses and checks that revisions arrive in
// order, once, and never split across two responses, and that a response's
// Revision covers its events.
type wlChecker struct {
	events    []Event
	responses int
	lastRev   int64 // ModRevision of the last event seen
	lastResp  int64 // Revision of the last response
}

func (c *wlChecker) add(t *testing.T, r WatchResponse) {
	t.Helper()
	c.responses++
	if r.Revision < c.lastResp {
		t.Errorf("response revision went backwards: %d after %d", r.Revision, c.lastResp)
	}
	c.lastResp = r.Revision
	if len(r.Events) == 0 {
		t.Errorf("response %d has no events and is not a progress notification: %+v", c.responses, r)
	}
	first := true
	for _, ev := range r.Events {
		rev := ev.KV.ModRevision
		switch {
		case first && rev <= c.lastRev:
			// A revision seen in an earlier response: repeated, or split.
			t.Errorf("response %d starts at revision %d, not after %d (repeated or split revision)", c.responses, rev, c.lastRev)
		case rev < c.lastRev:
			t.Errorf("response %d: revision %d after %d", c.responses, rev, c.lastRev)
		}
		if rev > r.Revision {
			t.Errorf("response %d: event at revision %d beyond the response revision %d", c.responses, rev, r.Revision)
		}
		first = false
		c.lastRev = rev
		c.events = append(c.events, ev)
	}
}

// wlOp is one write of a model transaction.
type wlOp struct {
	del   bool
	key   string
	val   string
	lease LeaseID
}

// wlModel is an independent model of the keyspace: it replays writes at the
// revisions the store reported and derives the events (with PrevKV,
// CreateRevision, Version) a watcher must see.
type wlModel struct {
	rev  int64
	kvs  map[string]KeyValue
	hist []Event
}

func newWLModel(rev int64) *wlModel { return &wlModel{rev: rev, kvs: make(map[string]KeyValue)} }

// apply applies ops as one transaction committed at rev. A transaction that
// changes nothing must not have moved the revision.
func (m *wlModel) apply(t *testing.T, rev int64, ops ...wlOp) {
	t.Helper()
	var evs []Event
	for _, op := range ops {
		prev, existed := m.kvs[op.key]
		var prevp *KeyValue
		if existed {
			p := prev
			prevp = &p
		}
		if op.del {
			if !existed {
				continue
			}
			delete(m.kvs, op.key)
			evs = append(evs, Event{Type: EventDelete, KV: KeyValue{Key: op.key, ModRevision: rev}, PrevKV: prevp})
			continue
		}
		kv := KeyValue{Key: op.key, Value: []byte(op.val), CreateRevision: rev, ModRevision: rev, Version: 1, Lease: op.lease}
		if existed {
			kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		}
		m.kvs[op.key] = kv
		evs = append(evs, Event{Type: EventPut, KV: kv, PrevKV: prevp})
	}
	if len(evs) == 0 {
		if rev != m.rev {
			t.Fatalf("model: a transaction that changed nothing moved the revision from %d to %d", m.rev, rev)
		}
		return
	}
	if rev != m.rev+1 {
		t.Fatalf("model: committed revision %d does not follow %d", rev, m.rev)
	}
	m.rev = rev
	m.hist = append(m.hist, evs...)
}

// since returns the history from revision from on.
func (m *wlModel) since(from int64) []Event {
	for i, ev := range m.hist {
		if ev.KV.ModRevision >= from {
			return m.hist[i:]
		}
	}
	return nil
}

// wlSelect returns the events of evs a watch with the given range and
// options must deliver.
func wlSelect(evs []Event, r keyRange, prevKV, noPut, noDelete bool) []Event {
	out := []Event{}
	for _, ev := range evs {
		if !r.contains(ev.KV.Key) || ev.Type == EventPut && noPut || ev.Type == EventDelete && noDelete {
			continue
		}
		if !prevKV {
			ev.PrevKV = nil
		}
		out = append(out, ev)
	}
	return out
}

func wlFmtEvent(ev Event) string {
	s := fmt.Sprintf("%s %s=%q@%d(c%d v%d l%d)", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision, ev.KV.CreateRevision, ev.KV.Version, ev.KV.Lease)
	if ev.PrevKV != nil {
		s += fmt.Sprintf(" prev=%q@%d(c%d v%d l%d)", ev.PrevKV.Value, ev.PrevKV.ModRevision, ev.PrevKV.CreateRevision, ev.PrevKV.Version, ev.PrevKV.Lease)
	}
	return s
}

func wlFmt(evs []Event) string {
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = wlFmtEvent(ev)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// wlSameEvents fails the test, showing the first difference, unless got
// and want are equal event by event.
func wlSameEvents(t *testing.T, what string, got, want []Event) {
	t.Helper()
	if got == nil {
		got = []Event{}
	}
	if want == nil {
		want = []Event{}
	}
	if reflect.DeepEqual(got, want) {
		return
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			t.Fatalf("%s: %d events, want %d; first missing: %s", what, len(got), len(want), wlFmtEvent(want[i]))
		case i >= len(want):
			t.Fatalf("%s: %d events, want %d; first extra: %s", what, len(got), len(want), wlFmtEvent(got[i]))
		case !reflect.DeepEqual(got[i], want[i]):
			t.Fatalf("%s: event %d is %s, want %s", what, i, wlFmtEvent(got[i]), wlFmtEvent(want[i]))
		}
	}
}

// wlProgressStore opens a store whose progress notifications come every
// 50ms, so that wlCollect can use them as a barrier.
func wlProgressStore(t *testing.T) *Store {
	o := testOptions()
	o.WatchProgressNotifyInterval = 50 * time.Millisecond
	return openTestStore(t, "", o)
}

// TestWatchRanges: a watch on one key, a prefix, a range and from a key
// each see exactly the events of their keys.
func TestWatchRanges(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	cases := []struct {
		name string
		key  string
		opts []OpOption
		r    keyRange
	}{
		{"key", "k/b", nil, keyRange{"k/b", ""}},
		{"prefix", "k/", []OpOption{WithPrefix()}, keyRange{"k/", "k0"}},
		{"range", "k/b", []OpOption{WithRange("k/d")}, keyRange{"k/b", "k/d"}},
		{"from-key", "k/c", []OpOption{WithFromKey()}, keyRange{"k/c", "\x00"}},
		{"all", "", []OpOption{WithPrefix()}, keyRange{"\x00", "\x00"}},
	}
	chans := make([]<-chan WatchResponse, len(cases))
	for i, c := range cases {
		chans[i] = s.Watch(ctx, c.key, append(c.opts, WithProgressNotify())...)
	}
	m := newWLModel(wlRev(t, s))
	for _, k := range []string{"j", "k/", "k/a", "k/b", "k/b/x", "k/c", "k/d", "k0", "ka", "k/b"} {
		m.apply(t, wlPut(t, s, k, "v-"+k), wlOp{key: k, val: "v-" + k})
	}
	for _, k := range []string{"k/b", "k/d", "j", "ka"} {
		m.apply(t, wlDelete(t, s, k), wlOp{del: true, key: k})
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := wlCollect(t, chans[i], m.rev)
			want := wlSelect(m.hist, c.r, false, false, false)
			if len(want) == 0 {
				t.Fatal("bad test: no events expected")
			}
			wlSameEvents(t, c.name, got, want)
		})
	}
}

// TestWatchPrevKV: PrevKV is set only when asked for, and never for a
// create; a delete event carries only the key and its mod revision.
func TestWatchPrevKV(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	withPrev := s.Watch(ctx, "p", WithPrevKV(), WithProgressNotify())
	without := s.Watch(ctx, "p", WithProgressNotify())

	r1 := wlPut(t, s, "p", "v1")
	r2 := wlPut(t, s, "p", "v2")
	r3 := wlDelete(t, s, "p")
	r4 := wlPut(t, s, "p", "v3")

	v1 := KeyValue{Key: "p", Value: []byte("v1"), CreateRevision: r1, ModRevision: r1, Version: 1}
	v2 := KeyValue{Key: "p", Value: []byte("v2"), CreateRevision: r1, ModRevision: r2, Version: 2}
	del := KeyValue{Key: "p", ModRevision: r3}
	v3 := KeyValue{Key: "p", Value: []byte("v3"), CreateRevision: r4, ModRevision: r4, Version: 1}
	wlSameEvents(t, "WithPrevKV", wlCollect(t, withPrev, r4), []Event{
		{Type: EventPut, KV: v1},
		{Type: EventPut, KV: v2, PrevKV: &v1},
		{Type: EventDelete, KV: del, PrevKV: &v2},
		{Type: EventPut, KV: v3}, // re-created: a create has no PrevKV
	})
	wlSameEvents(t, "without WithPrevKV", wlCollect(t, without, r4), []Event{
		{Type: EventPut, KV: v1},
		{Type: EventPut, KV: v2},
		{Type: EventDelete, KV: del},
		{Type: EventPut, KV: v3},
	})
}

// TestWatchFilters: WithFilterPut drops puts, WithFilterDelete drops
// deletes, both drop everything.
func TestWatchFilters(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	noPut := s.Watch(ctx, "f/", WithPrefix(), WithFilterPut(), WithProgressNotify())
	noDel := s.Watch(ctx, "f/", WithPrefix(), WithFilterDelete(), WithProgressNotify())
	none := s.Watch(ctx, "f/", WithPrefix(), WithFilterPut(), WithFilterDelete(), WithProgressNotify())

	m := newWLModel(wlRev(t, s))
	m.apply(t, wlPut(t, s, "f/a", "1"), wlOp{key: "f/a", val: "1"})
	m.apply(t, wlPut(t, s, "f/b", "1"), wlOp{key: "f/b", val: "1"})
	m.apply(t, wlDelete(t, s, "f/a"), wlOp{del: true, key: "f/a"})
	m.apply(t, wlPut(t, s, "f/a", "2"), wlOp{key: "f/a", val: "2"})
	m.apply(t, wlDelete(t, s, "f/", WithPrefix()), wlOp{del: true, key: "f/a"}, wlOp{del: true, key: "f/b"})
	m.apply(t, wlPut(t, s, "f/c", "1"), wlOp{key: "f/c", val: "1"})

	all := keyRange{"f/", "f0"}
	wlSameEvents(t, "WithFilterPut", wlCollect(t, noPut, m.rev), wlSelect(m.hist, all, false, true, false))
	wlSameEvents(t, "WithFilterDelete", wlCollect(t, noDel, m.rev), wlSelect(m.hist, all, false, false, true))
	wlSameEvents(t, "both filters", wlCollect(t, none, m.rev), nil)
}

// TestWatchStartRevision: WithRev in the past replays history exactly;
// WithRev in the future starts at that revision; without WithRev a watch
// starts after the current revision.
func TestWatchStartRevision(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	start := wlRev(t, s)
	m := newWLModel(start)
	for i := range 30 {
		k := fmt.Sprintf("h/%d", i%4)
		switch {
		case i%7 == 6:
			m.apply(t, wlDelete(t, s, k), wlOp{del: true, key: k})
		case i%10 == 9:
			r, err := s.Txn(t.Context()).Then(OpPut("h/x", []byte(fmt.Sprint(i))), OpPut("h/y", []byte(fmt.Sprint(i))), OpDelete(k)).Commit()
			if err != nil {
				t.Fatal(err)
			}
			m.apply(t, r.Revision, wlOp{key: "h/x", val: fmt.Sprint(i)}, wlOp{key: "h/y", val: fmt.Sprint(i)}, wlOp{del: true, key: k})
		default:
			m.apply(t, wlPut(t, s, k, fmt.Sprint(i)), wlOp{key: k, val: fmt.Sprint(i)})
		}
	}
	past := m.rev
	all := keyRange{"h/", "h0"}

	t.Run("past", func(t *testing.T) {
		for _, from := range []int64{1, start + 1, start + 10, past} {
			ch := s.Watch(ctx, "h/", WithPrefix(), WithPrevKV(), WithRev(from), WithProgressNotify())
			wlSameEvents(t, fmt.Sprintf("from %d", from), wlCollect(t, ch, past), wlSelect(m.since(from), all, true, false, false))
		}
	})

	t.Run("now", func(t *testing.T) {
		ch := s.Watch(ctx, "h/", WithPrefix(), WithProgressNotify())
		r := wlPut(t, s, "h/0", "now")
		m.apply(t, r, wlOp{key: "h/0", val: "now"})
		wlSameEvents(t, "no WithRev", wlCollect(t, ch, r), wlSelect(m.since(r), all, false, false, false))
	})

	t.Run("future", func(t *testing.T) {
		from := m.rev + 5
		ch := s.Watch(ctx, "h/", WithPrefix(), WithRev(from), WithProgressNotify())
		for i := range 10 {
			m.apply(t, wlPut(t, s, "h/f", fmt.Sprint(i)), wlOp{key: "h/f", val: fmt.Sprint(i)})
		}
		got := wlCollect(t, ch, m.rev)
		wlSameEvents(t, fmt.Sprintf("from future %d", from), got, wlSelect(m.since(from), all, false, false, false))
	})
}

// TestWatchConcurrentWriters: 8 writers race puts and multi-key txns while
// three watchers (one deliberately slow, so its buffer overflows and it
// catches up from history) each see every revision of their range exactly
// once, in order, whole, with the right PrevKV, versions and revisions.
func TestWatchConcurrentWriters(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx, _ := wlWatchCtx(t)
	const (
		writers   = 8
		perWriter = 200
		sentinel  = "c/w2/zz-end" // in every watcher's range; written last
	)
	start := wlRev(t, s)

	type watchSpec struct {
		name   string
		r      keyRange
		prevKV bool
		ch     <-chan WatchResponse
	}
	specs := []*watchSpec{
		{name: "fast from-key with prev", r: keyRange{"c/", "\x00"}, prevKV: true,
			ch: s.Watch(ctx, "c/", WithFromKey(), WithPrevKV())},
		{name: "slow prefix", r: keyRange{"c/", "c0"},
			ch: s.Watch(ctx, "c/", WithPrefix())},
		{name: "range w2-w4", r: keyRange{"c/w2/", "c/w5/"},
			ch: s.Watch(ctx, "c/w2/", WithRange("c/w5/"))},
		// Created mid-stream from the start: it catches up from history
		// while the writers go on, then joins the published stream.
		{name: "late WithRev", r: keyRange{"c/", "c0"}},
	}
	const slow = 1

	// The slow watcher does not read until its buffer has overflowed (the
	// hub then stops feeding it and it must catch up from history) and it
	// is more than one catch-up read (watchCatchupRevs) behind, and then
	// reads with pauses while the writers go on.
	overflowed := make(chan struct{})
	writersDone := make(chan struct{})
	var sawOverflow atomic.Bool
	go func() {
		defer close(overflowed)
		for {
			s.hub.mu.Lock()
			for w := range s.hub.watchers {
				if w.end == "c0" && !w.synced {
					sawOverflow.Store(true)
				}
			}
			s.hub.mu.Unlock()
			if sawOverflow.Load() && s.ks.Rev() > start+watchCatchupRevs+200 {
				return
			}
			select {
			case <-writersDone:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	results := make([]wlChecker, len(specs))
	var readers sync.WaitGroup
	for i, sp := range specs {
		readers.Go(func() {
			if i == slow {
				<-overflowed
			}
			if sp.ch == nil {
			wait:
				for s.ks.Rev() < start+writers*perWriter/3 {
					select {
					case <-writersDone:
						break wait
					case <-time.After(time.Millisecond):
					}
				}
				sp.ch = s.Watch(ctx, "c/", WithPrefix(), WithRev(start+1))
			}
			c := &results[i]
			deadline := time.After(30 * time.Second)
			for {
				select {
				case r, ok := <-sp.ch:
					if !ok {
						t.Errorf("%s: channel closed early", sp.name)
						return
					}
					if r.Err != nil {
						t.Errorf("%s: %v", sp.name, r.Err)
						return
					}
					c.add(t, r)
					if n := len(r.Events); n > 0 && r.Events[n-1].KV.Key == sentinel {
						return
					}
					if i == slow && c.responses%8 == 0 {
						time.Sleep(time.Millisecond) // a deliberately slow consumer
					}
				case <-deadline:
					t.Errorf("%s: sentinel not seen (%d events)", sp.name, len(c.events))
					return
				}
			}
		})
	}

	// Writers record every committed transaction with its revision.
	type commit struct {
		rev int64
		ops []wlOp
	}
	var (
		mu      sync.Mutex
		commits []commit
	)
	record := func(rev int64, ops ...wlOp) {
		mu.Lock()
		commits = append(commits, commit{rev, ops})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("c/w%d/k%d", w, i%5)
				if i%7 == 3 {
					key = "c/shared" // contended by every writer
				}
				val := fmt.Sprintf("%d-%d", w, i)
				r, err := s.Put(ctx, key, []byte(val))
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				record(r.Revision, wlOp{key: key, val: val})
				if i%10 == 9 {
					// A multi-key txn: its events share one revision and
					// must arrive in one response, in this order.
					ops := []wlOp{
						{key: fmt.Sprintf("c/w%d/t2", w), val: val},
						{key: fmt.Sprintf("c/w%d/t0", w), val: val},
						{key: fmt.Sprintf("c/w%d/t1", w), val: val},
						{del: true, key: fmt.Sprintf("c/w%d/k0", w)},
					}
					tr, err := s.Txn(ctx).Then(
						OpPut(ops[0].key, []byte(val)), OpPut(ops[1].key, []byte(val)),
						OpPut(ops[2].key, []byte(val)), OpDelete(ops[3].key),
					).Commit()
					if err != nil {
						t.Errorf("txn: %v", err)
						return
					}
					record(tr.Revision, ops...)
				}
			}
		})
	}
	wg.Wait()
	close(writersDone)
	record(wlPut(t, s, sentinel, "end"), wlOp{key: sentinel, val: "end"})
	readers.Wait()
	if t.Failed() {
		return
	}
	if !sawOverflow.Load() {
		t.Error("the slow watcher never overflowed; the catch-up path was not exercised")
	}

	// The committed history, in revision order, must be gap-free: the
	// model checks that revisions follow one another.
	m := newWLModel(start)
	slices.SortFunc(commits, func(a, b commit) int { return cmpInt(a.rev, b.rev) })
	for _, c := range commits {
		m.apply(t, c.rev, c.ops...)
	}
	if want := int64(writers*perWriter + writers*perWriter/10 + 1); m.rev-start != want {
		t.Fatalf("%d revisions committed, want %d", m.rev-start, want)
	}
	for i, sp := range specs {
		wlSameEvents(t, sp.name, results[i].events, wlSelect(m.hist, sp.r, sp.prevKV, false, false))
		t.Logf("%s: %d events in %d responses", sp.name, len(results[i].events), results[i].responses)
	}
}

// TestWatchCompactedStart: a watch from a compacted revision gets one
// response with ErrCompacted and the compacted revision, then the channel
// closes; a watch from the compacted revision itself works.
func TestWatchCompactedStart(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	m := newWLModel(wlRev(t, s))
	for i := range 10 {
		m.apply(t, wlPut(t, s, "z", fmt.Sprint(i)), wlOp{key: "z", val: fmt.Sprint(i)})
	}
	compactAt := m.rev - 3
	if err := s.Compact(t.Context(), compactAt); err != nil {
		t.Fatal(err)
	}

	rs := wlDrainClosed(t, s.Watch(ctx, "z", WithRev(compactAt-1)))
	if len(rs) != 1 {
		t.Fatalf("got %d responses, want exactly 1: %+v", len(rs), rs)
	}
	if !errors.Is(rs[0].Err, ErrCompacted) || rs[0].CompactRevision != compactAt || len(rs[0].Events) != 0 {
		t.Fatalf("got %+v, want Err ErrCompacted with CompactRevision %d and no events", rs[0], compactAt)
	}

	ch := s.Watch(ctx, "z", WithRev(compactAt), WithProgressNotify())
	wlSameEvents(t, "from the compacted revision", wlCollect(t, ch, m.rev), wlSelect(m.since(compactAt), keyRange{"z", ""}, false, false, false))
}

// TestWatchSlowCompacted: a watcher that lags while the history it still
// needs is compacted gets every revision it can, in order and gap-free,
// then ErrCompacted with the revision to resume from; a new watch from
// there continues.
func TestWatchSlowCompacted(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	ch := s.Watch(ctx, "s/", WithPrefix())
	m := newWLModel(wlRev(t, s))
	// Sequential puts: one published batch each, so the watcher's buffer
	// (which nobody reads) overflows.
	for i := range watchBuffer + 72 {
		k := fmt.Sprintf("s/%d", i%3)
		m.apply(t, wlPut(t, s, k, fmt.Sprint(i)), wlOp{key: k, val: fmt.Sprint(i)})
	}
	compactAt := m.rev - 5
	if err := s.Compact(t.Context(), compactAt); err != nil {
		t.Fatal(err)
	}
	rs := wlDrainClosed(t, ch)
	if len(rs) == 0 {
		t.Fatal("no responses")
	}
	last := rs[len(rs)-1]
	if !errors.Is(last.Err, ErrCompacted) || last.CompactRevision != compactAt {
		t.Fatalf("last response %+v, want Err ErrCompacted with CompactRevision %d", last, compactAt)
	}
	var c wlChecker
	for _, r := range rs[:len(rs)-1] {
		if r.Err != nil {
			t.Fatalf("error before the last response: %v", r.Err)
		}
		c.add(t, r)
	}
	all := keyRange{"s/", "s0"}
	want := wlSelect(m.hist, all, false, false, false)
	if len(c.events) == 0 || len(c.events) >= len(want) {
		t.Fatalf("got %d events before ErrCompacted; want some but fewer than %d", len(c.events), len(want))
	}
	wlSameEvents(t, "before ErrCompacted", c.events, want[:len(c.events)])
	if next := c.lastRev + 1; next >= compactAt {
		t.Fatalf("watch ended with ErrCompacted although its next revision %d was not compacted (compacted %d)", next, compactAt)
	}

	resumed := s.Watch(ctx, "s/", WithPrefix(), WithRev(last.CompactRevision), WithProgressNotify())
	m.apply(t, wlPut(t, s, "s/after", "x"), wlOp{key: "s/after", val: "x"})
	wlSameEvents(t, "resumed", wlCollect(t, resumed, m.rev), wlSelect(m.since(compactAt), all, false, false, false))
}

// TestWatchEnd: cancelling the ctx closes the channel; Close closes every
// watch channel; Watch after Close and Watch of an empty key answer with an
// error response and a closed channel.
func TestWatchEnd(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		s := openTestStore(t, "", nil)
		ctx, cancel := wlWatchCtx(t)
		ch := s.Watch(ctx, "a", WithPrefix())
		other := s.Watch(t.Context(), "a", WithPrefix())
		wlPut(t, s, "a", "1")
		if r := wlRecv(t, ch); len(r.Events) != 1 {
			t.Fatalf("got %+v, want one event", r)
		}
		cancel()
		for _, r := range wlDrainClosed(t, ch) {
			if r.Err != nil {
				t.Fatalf("cancelled watch got an error response: %v", r.Err)
			}
		}
		// Another watch on the same store is unaffected.
		wlPut(t, s, "a", "2")
		if r := wlRecv(t, other); len(r.Events) != 1 || string(r.Events[0].KV.Value) != "1" {
			t.Fatalf("other watch: got %+v, want the first put", r)
		}
		if r := wlRecv(t, other); len(r.Events) != 1 || string(r.Events[0].KV.Value) != "2" {
			t.Fatalf("other watch: got %+v, want the second put", r)
		}
	})

	t.Run("close", func(t *testing.T) {
		s := openTestStore(t, "", nil)
		wlPut(t, s, "a", "0")
		ctx, _ := wlWatchCtx(t)
		chans := []<-chan WatchResponse{
			s.Watch(ctx, "a"),
			s.Watch(ctx, "a", WithPrefix(), WithRev(1)), // catching up, never read
			s.Watch(ctx, "b", WithProgressNotify()),
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for i, ch := range chans {
			rs := wlDrainClosed(t, ch)
			for _, r := range rs[:max(len(rs)-1, 0)] {
				if r.Err != nil {
					t.Errorf("watch %d: error response %v before the last one", i, r.Err)
				}
			}
			if n := len(rs); n > 0 && rs[n-1].Err != nil && !errors.Is(rs[n-1].Err, ErrClosed) {
				t.Errorf("watch %d: last response has error %v, want none or ErrClosed", i, rs[n-1].Err)
			}
		}
		rs := wlDrainClosed(t, s.Watch(ctx, "a"))
		if len(rs) != 1 || !errors.Is(rs[0].Err, ErrClosed) {
			t.Fatalf("Watch after Close: got %+v, want one ErrClosed response", rs)
		}
	})

	t.Run("empty key", func(t *testing.T) {
		s := openTestStore(t, "", nil)
		ctx, _ := wlWatchCtx(t)
		rs := wlDrainClosed(t, s.Watch(ctx, ""))
		if len(rs) != 1 || !errors.Is(rs[0].Err, ErrEmptyKey) {
			t.Fatalf("got %+v, want one ErrEmptyKey response", rs)
		}
	})
}

// TestWatchProgressNotify: an idle watcher that asked for progress
// notifications gets empty responses carrying the current revision, also
// after events and also when it starts at a future revision; a watcher that
// did not ask gets none.
func TestWatchProgressNotify(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	rev := wlPut(t, s, "other", "x")
	with := s.Watch(ctx, "pn", WithProgressNotify())
	future := s.Watch(ctx, "pn", WithRev(rev+100), WithProgressNotify())
	without := s.Watch(ctx, "pn")

	wantProgress := func(ch <-chan WatchResponse, rev int64) {
		t.Helper()
		r := wlRecv(t, ch)
		if !r.IsProgressNotify() || r.Revision != rev {
			t.Fatalf("got %+v, want a progress notification at the current revision %d", r, rev)
		}
	}
	wantProgress(with, rev)
	wantProgress(with, rev) // and again while idle
	// A watch started at a future revision hears nothing before the store
	// gets there: progress at the current revision would be below where
	// its client stands (etcd skips it too: etcd issue 20221). The ticks
	// that reached `with` reached it too.
	select {
	case r := <-future:
		t.Fatalf("watch from revision %d, store at %d: got %+v", rev+100, rev, r)
	default:
	}

	// Events on another key move the revision: the notification says so.
	rev = wlPut(t, s, "other", "y")
	for {
		r := wlRecv(t, with)
		if !r.IsProgressNotify() {
			t.Fatalf("got %+v, want a progress notification", r)
		}
		if r.Revision == rev {
			break
		}
		if r.Revision != rev-1 {
			t.Fatalf("progress at revision %d, want %d or %d", r.Revision, rev-1, rev)
		}
	}

	// An event of the watched key comes first; progress resumes afterwards.
	rev = wlPut(t, s, "pn", "1")
	for {
		r := wlRecv(t, with)
		if r.IsProgressNotify() {
			if r.Revision != rev-1 {
				t.Fatalf("progress at revision %d before the event at %d", r.Revision, rev)
			}
			continue
		}
		if len(r.Events) != 1 || r.Events[0].KV.ModRevision != rev {
			t.Fatalf("got %+v, want the put at %d", r, rev)
		}
		break
	}
	wantProgress(with, rev)

	// The watcher without WithProgressNotify has had many ticks by now
	// (the one with it got several); its first response must be the event.
	r := wlRecv(t, without)
	if r.IsProgressNotify() || len(r.Events) != 1 || r.Events[0].KV.ModRevision != rev {
		t.Fatalf("watcher without WithProgressNotify got %+v, want only the put at %d", r, rev)
	}
}

// TestWatchResetKeepsStartRevision: when the keyspace is replaced (a
// snapshot installed: the FSM then calls hub.reset), every watcher re-reads
// from history, and a watcher started at a future revision must still
// start there, not at the revision after the current one.
func TestWatchResetKeepsStartRevision(t *testing.T) {
	s := wlProgressStore(t)
	ctx, _ := wlWatchCtx(t)
	m := newWLModel(wlRev(t, s))
	from := m.rev + 5
	future := s.Watch(ctx, "rf", WithRev(from), WithProgressNotify())
	now := s.Watch(ctx, "rf", WithProgressNotify())
	s.hub.reset()
	for i := range 10 {
		m.apply(t, wlPut(t, s, "rf", fmt.Sprint(i)), wlOp{key: "rf", val: fmt.Sprint(i)})
	}
	all := keyRange{"rf", ""}
	wlSameEvents(t, "future start after reset", wlCollect(t, future, m.rev), wlSelect(m.since(from), all, false, false, false))
	wlSameEvents(t, "no start revision after reset", wlCollect(t, now, m.rev), wlSelect(m.hist, all, false, false, false))
}

// TestWatchProgressNotifyOnlyWhenIdle drives the progress ticks by hand
// (the store's own interval is the 10m default): a tick finds the watcher
// busy if events reached it since the previous tick, and sends nothing.
func TestWatchProgressNotifyOnlyWhenIdle(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx, _ := wlWatchCtx(t)
	ch := s.Watch(ctx, "idle", WithProgressNotify())
	rev := wlRev(t, s)
	s.hub.progressTick()
	if r := wlRecv(t, ch); !r.IsProgressNotify() || r.Revision != rev {
		t.Fatalf("got %+v, want progress at %d", r, rev)
	}
	r1 := wlPut(t, s, "idle", "1")
	// Received before the ticks: a tick skips a watcher whose queue still
	// holds a response (one pending is enough), which on a loaded machine
	// the event could still be.
	if r := wlRecv(t, ch); r.Revision != r1 || len(r.Events) != 1 {
		t.Fatalf("got %+v, want the event at %d", r, r1)
	}
	s.hub.progressTick() // busy: an event arrived since the last tick
	s.hub.progressTick() // idle
	r2 := wlPut(t, s, "idle", "2")
	// Responses keep the order in which the hub queued them.
	for i, want := range []WatchResponse{
		{Revision: r1},
		{Revision: r2, Events: make([]Event, 1)},
	} {
		r := wlRecv(t, ch)
		if r.Revision != want.Revision || len(r.Events) != len(want.Events) {
			t.Fatalf("response %d: got %+v, want revision %d with %d events", i, r, want.Revision, len(want.Events))
		}
	}
}

// TestWatchHistoryAfterRestart: after Close and Open, a watch from an old
// revision replays the same history as before, in the same order within
// each txn, with the same PrevKV; both when the log is replayed and when
// the history is rebuilt from a snapshot.
func TestWatchHistoryAfterRestart(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "log", true: "snapshot"}[snapshot], func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions()
			o.WatchProgressNotifyInterval = 50 * time.Millisecond
			s1 := openTestStore(t, dir, o)
			start := wlRev(t, s1)
			m := newWLModel(start)
			for i := range 12 {
				k := fmt.Sprintf("hr/%d", i%3)
				m.apply(t, wlPut(t, s1, k, fmt.Sprint(i)), wlOp{key: k, val: fmt.Sprint(i)})
			}
			// A txn whose write order is not key order, with a delete.
			r, err := s1.Txn(t.Context()).Then(
				OpPut("hr/z", []byte("t")), OpDelete("hr/1"), OpPut("hr/a", []byte("t")), OpPut("hr/0", []byte("t")),
			).Commit()
			if err != nil {
				t.Fatal(err)
			}
			m.apply(t, r.Revision, wlOp{key: "hr/z", val: "t"}, wlOp{del: true, key: "hr/1"}, wlOp{key: "hr/a", val: "t"}, wlOp{key: "hr/0", val: "t"})
			m.apply(t, wlDelete(t, s1, "hr/", WithPrefix()), wlOp{del: true, key: "hr/0"}, wlOp{del: true, key: "hr/2"}, wlOp{del: true, key: "hr/a"}, wlOp{del: true, key: "hr/z"})
			m.apply(t, wlPut(t, s1, "hr/2", "again"), wlOp{key: "hr/2", val: "again"})
			if snapshot {
				if err := s1.raft.Snapshot().Error(); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
			}
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}

			s2 := openTestStore(t, dir, o)
			if r := wlRev(t, s2); r != m.rev {
				t.Fatalf("revision %d after restart, want %d", r, m.rev)
			}
			ctx, _ := wlWatchCtx(t)
			ch := s2.Watch(ctx, "hr/", WithPrefix(), WithPrevKV(), WithRev(start+1), WithProgressNotify())
			wlSameEvents(t, "history after restart", wlCollect(t, ch, m.rev), wlSelect(m.hist, keyRange{"hr/", "hr0"}, true, false, false))
		})
	}
}
