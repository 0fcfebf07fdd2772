package accord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The watch hub delivers committed events to watchers without ever making
// the FSM wait for one.
//
// A watcher is either synced or catching up. The FSM publishes each batch
// of revisions to the synced watchers with a non-blocking send into each
// one's buffer. A watcher whose buffer is full is moved to catching up, and
// its own goroutine then replays what it missed from the keyspace's
// retained history, and rejoins the synced set once it has reached the last
// published revision. Revisions are never split, skipped or repeated:
// w.next is the first revision the watcher has not yet been given, and
// both paths advance it under hub.mu. If the history it needs has been
// compacted, the watch ends with ErrCompacted and the revision to resume
// from.

const (
	watchBuffer      = 128  // responses buffered per watcher before it catches up from history
	watchCatchupRevs = 1000 // revisions per catch-up read
)

type watcher struct {
	key, end       string
	prevKV         bool
	filterPut      bool
	filterDelete   bool
	progressNotify bool
	progressReq    <-chan struct{} // WithProgressRequests; nil: never

	in   chan WatchResponse // from publish; revisions < next
	wake chan struct{}      // cap 1: "you are behind, catch up"

	// floor is the lowest revision a progress notification may carry:
	// start-1 for a watch started at revision start. Its client has seen
	// everything up to there (clientv3 resumes a broken watch after the
	// last revision it delivered), possibly from another member; a member
	// whose state is behind that must not announce its own lower revision
	// (etcd issue 20221). Such a watch waits for the member to catch up,
	// as a read would, before it reports progress.
	floor int64

	// guarded by watchHub.mu
	next        int64 // first revision not yet handed to this watcher
	synced      bool
	sawNews     bool  // events delivered since the last progress tick
	sent        int64 // revision of the last events response handed over
	awaitsFloor bool  // a progress request waits for lastPub to reach floor
}

type watchHub struct {
	ks  *keyspace
	log *slog.Logger // failures no watcher sees as an error

	mu       sync.Mutex // guards the fields below and every watcher's guarded fields
	lastPub  int64      // last revision published to synced watchers
	watchers map[*watcher]struct{}
}

func newWatchHub(ks *keyspace) *watchHub {
	return &watchHub{ks: ks, log: slog.New(slog.NewTextHandler(io.Discard, nil)), lastPub: ks.Rev(), watchers: make(map[*watcher]struct{})}
}

func (w *watcher) matches(key string) bool {
	return keyRange{w.key, w.end}.contains(key)
}

// filter returns the events of evs this watcher wants, or nil. The result
// shares memory with evs; deliver copies.
func (w *watcher) filter(evs []Event) []Event {
	var out []Event
	for i := range evs {
		ev := &evs[i]
		if ev.Type == EventPut && w.filterPut || ev.Type == EventDelete && w.filterDelete {
			continue
		}
		if !w.matches(ev.KV.Key) {
			continue
		}
		out = append(out, *ev)
	}
	return out
}

// publish hands newly applied revisions to the synced watchers. Called by
// the FSM after each applied batch, in revision order; never blocks.
func (h *watchHub) publish(batch []revEvents) {
	if len(batch) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	last := batch[len(batch)-1].rev
	// The versions the events replaced are read only if a watcher wants
	// them (the FSM does not read them: see Event.prev).
	for w := range h.watchers {
		if w.synced && w.prevKV {
			for i := range batch {
				if err := h.ks.fillPrev(batch[i].events); err != nil {
					h.log.Error("reading the previous versions of watch events", "err", err)
				}
			}
			break
		}
	}
	for w := range h.watchers {
		if !w.synced {
			continue
		}
		var evs []Event
		for _, re := range batch {
			if re.rev < w.next {
				continue
			}
			evs = append(evs, w.filter(re.events)...)
		}
		if w.awaitsFloor && last >= w.floor {
			w.awaitsFloor = false
			select { // the watcher's goroutine answers the request
			case w.wake <- struct{}{}:
			default:
			}
		}
		if len(evs) == 0 {
			w.next = max(w.next, last+1)
			continue
		}
		select {
		case w.in <- WatchResponse{Revision: last, Events: evs}:
			w.next = last + 1
			w.sawNews = true
			w.sent = last
		default:
			w.synced = false // full: catch up from history instead
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
	h.lastPub = last
}

// count returns the number of registered watchers.
func (h *watchHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// reset is called after the keyspace was replaced by a snapshot: every
// watcher re-reads from history (or learns it was compacted).
func (h *watchHub) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastPub = h.ks.Rev()
	for w := range h.watchers {
		w.synced = false
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// progressTick offers a progress notification to every idle synced watcher
// that asked for them.
func (h *watchHub) progressTick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		if !w.progressNotify || !w.synced {
			continue
		}
		if w.sawNews {
			w.sawNews = false
			continue
		}
		// One pending notification is enough: an unread watcher must not
		// fill its buffer with copies and be pushed into catch-up.
		if len(w.in) > 0 {
			continue
		}
		// The current revision, as etcd reports it (not w.next-1, which for
		// a watch started at a future revision does not exist yet), and
		// never below what the watcher already received from history, nor
		// below where its client started it.
		rev := max(h.lastPub, w.sent)
		if rev < w.floor {
			continue
		}
		select {
		case w.in <- WatchResponse{Revision: rev}:
		default:
		}
	}
}

// register adds a watcher starting at startRev (0 = after the last
// published revision).
func (h *watchHub) register(w *watcher, startRev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case startRev == 0:
		w.next, w.synced = h.lastPub+1, true
	case startRev > h.lastPub:
		w.next, w.synced = startRev, true
	default:
		w.next, w.synced = startRev, false
		w.wake <- struct{}{}
	}
	h.watchers[w] = struct{}{}
}

func (h *watchHub) unregister(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

// Watch watches a key (or, with WithPrefix, WithRange or WithFromKey, a
// range) and returns a channel of responses. Without WithRev the watch
// starts after the current revision; WithRev(r) replays history from
// revision r first (failing with ErrCompacted if r was compacted away).
//
// Every revision arrives exactly once, in order, whole. A consumer that
// falls behind does not slow the store down: its watch replays from
// retained history, and if that history is compacted meanwhile the channel
// delivers a final response with Err set to ErrCompacted and
// CompactRevision, then closes.
//
// The channel closes when ctx ends or the store closes. Watch itself never
// blocks; an invalid request yields a channel with one error response.
func (s *Store) Watch(ctx context.Context, key string, opts ...OpOption) <-chan WatchResponse {
	op := newOp(opGet, key, nil, opts)
	out := make(chan WatchResponse)
	fail := func(err error) <-chan WatchResponse {
		ch := make(chan WatchResponse, 1)
		ch <- WatchResponse{Err: err}
		close(ch)
		return ch
	}
	if op.key == "" {
		return fail(ErrEmptyKey)
	}
	if op.rev < 0 {
		return fail(ErrInvalidArgument)
	}
	w := &watcher{
		key: op.key, end: op.end, prevKV: op.prevKV,
		filterPut: op.filterPut, filterDelete: op.filterDelete, progressNotify: op.progressNotify,
		progressReq: op.progressReq,
		in:          make(chan WatchResponse, watchBuffer),
		wake:        make(chan struct{}, 1),
		floor:       max(op.rev-1, 0),
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	s.hub.register(w, op.rev)
	s.wg.Go(func() {
		defer close(out)
		defer s.hub.unregister(w)
		s.runWatcher(ctx, w, out)
	})
	return out
}

// runWatcher is the watcher's goroutine: it forwards published responses
// and catches up from history when told to.
func (s *Store) runWatcher(ctx context.Context, w *watcher, out chan<- WatchResponse) {
	send := func(r WatchResponse) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		case <-s.stop:
			return false
		}
	}
	// progress answers a progress request if the watcher is synced:
	// everything published is then in w.in, and once that is drained (under
	// hub.mu, so nothing new slips in) every event up to lastPub has been
	// delivered. Otherwise the request waits for the end of the catch-up,
	// or, for a watch that starts beyond what this member has applied, for
	// publish to reach w.floor (it wakes the watcher then).
	pending := false
	progress := func() bool {
		for {
			if !w.drain(send) {
				return false
			}
			s.hub.mu.Lock()
			if !w.synced {
				s.hub.mu.Unlock()
				pending = true
				return true
			}
			if len(w.in) > 0 {
				s.hub.mu.Unlock()
				continue
			}
			rev := max(s.hub.lastPub, w.sent)
			if rev < w.floor {
				w.awaitsFloor = true
				s.hub.mu.Unlock()
				pending = true
				return true
			}
			s.hub.mu.Unlock()
			pending = false
			return send(WatchResponse{Revision: rev})
		}
	}
	for {
		select {
		case r := <-w.in:
			if !send(w.copyOut(r)) {
				return
			}
		case <-w.progressReq:
			if !progress() {
				return
			}
		case <-w.wake:
			if !s.catchUp(w, send) {
				return
			}
			if pending && !progress() {
				return
			}
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		}
	}
}

// drain sends every response already buffered in w.in; false when the
// watch ended meanwhile.
func (w *watcher) drain(send func(WatchResponse) bool) bool {
	for {
		select {
		case r := <-w.in:
			if !send(w.copyOut(r)) {
				return false
			}
		default:
			return true
		}
	}
}

// catchUp replays history from w.next until the watcher has reached the
// last published revision, then marks it synced. It returns false when the
// watch has ended.
func (s *Store) catchUp(w *watcher, send func(WatchResponse) bool) bool {
	for {
		// Everything already buffered comes first: it is older than w.next.
		if !w.drain(send) {
			return false
		}
		s.hub.mu.Lock()
		if w.synced { // a stale wake-up: publish is feeding us again
			s.hub.mu.Unlock()
			return true
		}
		from := w.next
		s.hub.mu.Unlock()

		revs, covered, err := s.ks.history(from, 0, watchCatchupRevs, w.prevKV)
		if errors.Is(err, ErrCompacted) {
			_, compacted := s.ks.Revs()
			send(WatchResponse{Revision: s.ks.Rev(), CompactRevision: compacted, Err: ErrCompacted})
			return false
		}
		var evs []Event
		for _, re := range revs {
			evs = append(evs, w.filter(re.events)...)
		}
		if len(evs) > 0 && !send(w.copyOut(WatchResponse{Revision: covered, Events: evs})) {
			return false
		}
		s.hub.mu.Lock()
		w.next = max(w.next, covered+1) // a watch started in the future stays there
		if len(evs) > 0 {
			w.sawNews = true
			w.sent = max(w.sent, covered)
		}
		if s.hub.lastPub <= covered {
			w.synced = true
			s.hub.mu.Unlock()
			return true
		}
		s.hub.mu.Unlock()
	}
}

// copyOut gives the receiver its own copy of every value, and drops PrevKV
// unless the watch asked for it.
func (w *watcher) copyOut(r WatchResponse) WatchResponse {
	if len(r.Events) == 0 {
		return r
	}
	evs := make([]Event, len(r.Events))
	for i, ev := range r.Events {
		ev.prev, ev.prevLease, ev.hasPrev = revision{}, 0, false
		ev.KV.Value = cloneBytes(ev.KV.Value)
		if w.prevKV && ev.PrevKV != nil {
			p := *ev.PrevKV
			p.Value = cloneBytes(p.Value)
			ev.PrevKV = &p
		} else {
			ev.PrevKV = nil
		}
		evs[i] = ev
	}
	r.Events = evs
	return r
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// progressLoop drives progress notifications.
func (s *Store) progressLoop() {
	t := time.NewTicker(s.opts.WatchProgressNotifyInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.hub.progressTick()
		}
	}
}
