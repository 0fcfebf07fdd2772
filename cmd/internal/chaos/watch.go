package chaos

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watcher watches the whole keyspace from revision 1 through one member
// (or, for the roaming watcher, through any member) for the whole run,
// and records what it receives. clientv3 resumes a broken watch from the
// revision after the last one it delivered (or the last progress
// notification); the checks verify that what arrives is ordered, unique,
// gap-free, atomic per revision and equal to the committed history, and
// that progress notifications (periodic ones, and the stream's answers to
// the RequestProgress the watcher sends now and then) never go back: not
// below an event already delivered, not below an earlier notification,
// and no event at or below one after it.
type watcher struct {
	name   string
	node   *node // nil for the roaming watcher
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // guards the fields below
	events   []wevent
	progress []wprogress
	resps    int
	lastRev  int64
	errs     []string
}

// wprogress is one progress notification received.
type wprogress struct {
	Rev   int64 `json:"rev"`
	After int   `json:"after"` // how many events had arrived before it
	Resp  int   `json:"resp"`
}

// progressRequestInterval is how often a watcher asks its stream for
// progress (clientv3's RequestProgress, answered with WatchId -1).
const progressRequestInterval = 300 * time.Millisecond

// wevent is one received event; the value is hashed (lists grow long).
type wevent struct {
	Rev     int64  `json:"rev"`
	Key     string `json:"key"`
	Delete  bool   `json:"delete,omitempty"`
	Hash    uint64 `json:"hash"`
	Create  int64  `json:"create,omitempty"`
	Mod     int64  `json:"mod"`
	Version int64  `json:"version,omitempty"`
	Lease   int64  `json:"lease,omitempty"`
	Resp    int    `json:"resp"` // which response delivered it
}

func hashValue(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return h.Sum64()
}

func (ev *hevent) matches(w *wevent) bool {
	return ev.Rev == w.Rev && ev.Key == w.Key && ev.Delete == w.Delete && hashValue(ev.Value) == w.Hash &&
		ev.Create == w.Create && ev.Mod == w.Mod && ev.Version == w.Version && ev.Lease == w.Lease
}

func startWatcher(ctx context.Context, name string, n *node, cli *clientv3.Client) *watcher {
	wctx, cancel := context.WithCancel(ctx)
	w := &watcher{name: name, node: n, cancel: cancel, done: make(chan struct{})}
	wch := cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(1), clientv3.WithProgressNotify())
	asked := make(chan struct{})
	go func() {
		defer close(asked)
		// The watch's stream is the one of wctx (same metadata); a request
		// on a stream being re-established fails and is dropped.
		for pace(wctx, progressRequestInterval) {
			_ = cli.RequestProgress(wctx)
		}
	}()
	go func() {
		defer close(w.done)
		defer func() { <-asked }()
		for resp := range wch {
			w.mu.Lock()
			if err := resp.Err(); err != nil {
				if wctx.Err() == nil {
					w.errs = append(w.errs, err.Error())
				}
			}
			w.resps++
			if resp.IsProgressNotify() {
				w.progress = append(w.progress, wprogress{Rev: resp.Header.Revision, After: len(w.events), Resp: w.resps})
			}
			for _, ev := range resp.Events {
				h := heventOf(ev)
				w.events = append(w.events, wevent{
					Rev: h.Rev, Key: h.Key, Delete: h.Delete, Hash: hashValue(h.Value),
					Create: h.Create, Mod: h.Mod, Version: h.Version, Lease: h.Lease, Resp: w.resps,
				})
				w.lastRev = max(w.lastRev, h.Rev)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) last() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastRev
}

// waitFor waits up to d for the watcher to deliver revision rev.
func (w *watcher) waitFor(ctx context.Context, rev int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for w.last() < rev {
		if time.Now().After(deadline) || !pace(ctx, 50*time.Millisecond) {
			return false
		}
	}
	return true
}

// check compares what w received with the committed history h; complete
// says w must have delivered all of it. It returns the number of events
// compared.
func (w *watcher) check(h *history, complete bool, rep *Report) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		rep.violate("watch", "watch %s: error %s", w.name, e)
	}
	bad := func(format string, args ...any) {
		rep.violate("watch", "watch %s: %s", w.name, fmt.Sprintf(format, args...))
	}
	// Ordered and unique: revisions never go back, and no (revision, key)
	// twice.
	prev := int64(0)
	prevKey := ""
	for i, ev := range w.events {
		if ev.Rev < prev || ev.Rev == prev && ev.Key == prevKey {
			bad("event %d (%s at revision %d) comes after revision %d (%s): out of order or repeated", i, ev.Key, ev.Rev, prev, prevKey)
			return i
		}
		prev, prevKey = ev.Rev, ev.Key
	}
	// Atomic: all events of a revision in one response.
	for i := 1; i < len(w.events); i++ {
		if w.events[i].Rev == w.events[i-1].Rev && w.events[i].Resp != w.events[i-1].Resp {
			bad("the events of revision %d arrived in two responses (%d and %d)", w.events[i].Rev, w.events[i-1].Resp, w.events[i].Resp)
			return i
		}
	}
	// Progress notifications are bookmarks: at or above every event
	// before them and every earlier notification, below every event after.
	for i, p := range w.progress {
		if p.After > 0 && p.Rev < w.events[p.After-1].Rev {
			bad("progress notification %d (response %d) at revision %d after an event at revision %d", i, p.Resp, p.Rev, w.events[p.After-1].Rev)
			return len(w.events)
		}
		if i > 0 && p.Rev < w.progress[i-1].Rev {
			bad("progress notification %d (response %d) at revision %d after one at revision %d: progress went back", i, p.Resp, p.Rev, w.progress[i-1].Rev)
			return len(w.events)
		}
		if p.After < len(w.events) && w.events[p.After].Rev <= p.Rev {
			bad("event %d at revision %d arrived after a progress notification at revision %d", p.After, w.events[p.After].Rev, p.Rev)
			return len(w.events)
		}
	}
	// Gap-free and equal: exactly the history's events, from the first,
	// up to what w received.
	for i, ev := range w.events {
		if i >= len(h.events) {
			bad("event %d (%s at revision %d) is beyond the committed history (last revision %d)", i, ev.Key, ev.Rev, h.last)
			return i
		}
		if want := &h.events[i]; !want.matches(&ev) {
			bad("event %d is %s %s at revision %d (mod %d, create %d, version %d, lease %x), the committed history has %s %s at revision %d (mod %d, create %d, version %d, lease %x)",
				i, evType(ev.Delete), ev.Key, ev.Rev, ev.Mod, ev.Create, ev.Version, ev.Lease,
				evType(want.Delete), want.Key, want.Rev, want.Mod, want.Create, want.Version, want.Lease)
			return i
		}
	}
	if complete && len(w.events) != len(h.events) {
		last := int64(0)
		if len(w.events) > 0 {
			last = w.events[len(w.events)-1].Rev
		}
		bad("delivered %d of the %d events (up to revision %d of %d) and stalled", len(w.events), len(h.events), last, h.last)
	}
	return len(w.events)
}

func evType(del bool) string {
	if del {
		return "DELETE"
	}
	return "PUT"
}
