package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/accordkv/accord"
)

// The Watch service multiplexes watches on one bidirectional stream, as
// etcd's does. Per stream:
//
//   - the handler goroutine is the only one that calls Send (gRPC forbids
//     concurrent sends); everything else hands it responses through sendc,
//     in order;
//   - a receive goroutine reads requests: it creates watches (each an
//     accord Store.Watch plus a forwarding goroutine), cancels them and
//     starts progress rounds;
//   - each watch's forwarding goroutine converts the accord responses and
//     queues them. A client that does not read blocks only its own stream:
//     the forwarders wait, and accord's watches, which never hold up the
//     store, catch up from history once the client reads again.
//
// Ordering guarantees follow from sendc being FIFO: a watch's Created
// response is queued before its forwarder starts; a forwarder queues its
// events before it reports a progress answer; a progress response
// (WatchId -1) is queued with the stream lock held, so a watch created
// after it has its Created response after it, and a watch created before
// it was part of the round.

// Watch IDs as etcd's clientv3 has them (the client package is not
// imported here).
const (
	autoWatchID    = 0  // a create request with this ID asks the server to pick one
	invalidWatchID = -1 // progress responses for the whole stream, failed creates
)

// Cancel reasons etcd's mvcc package gives (clients see the text).
const (
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

const (
	// watchSendBuffer is how many responses a stream queues for sending.
	watchSendBuffer = 16

	// leaderCheckInterval is how often streams that require a leader
	// check that this member knows one; after maxNoLeaderChecks checks in
	// a row without one they end with "no leader" (etcd waits three
	// election timeouts).
	leaderCheckInterval = time.Second
	maxNoLeaderChecks   = 3
)

// watchServer implements etcd's Watch service.
type watchServer struct {
	pb.UnimplementedWatchServer
	srv *Server

	leaders leaderMonitor // streams created with "require leader"
}

// watchStream is the server side of one Watch stream.
type watchStream struct {
	srv    *Server
	grpc   pb.Watch_WatchServer
	ctx    context.Context // ends with the stream; its cause is the stream's error
	cancel context.CancelCauseFunc
	sendc  chan watchSend
	wg     sync.WaitGroup // forwarders, and creates that may start one

	mu      sync.Mutex // guards the fields below and every watch's guarded fields
	closed  bool
	watches map[int64]*streamWatch
	nextID  int64
	round   *progressRound // nil: no progress request outstanding
}

// watchSend is one response for the send loop.
type watchSend struct {
	resp     *pb.WatchResponse
	fragment bool // the watch accepts fragmented responses
}

// streamWatch is one watch of a stream.
type streamWatch struct {
	id             int64
	ctx            context.Context
	cancel         context.CancelFunc
	fragment       bool
	progressNotify bool
	want           chan struct{} // cap 1: a progress round waits for this watch
	req            chan struct{} // cap 1: accord.WithProgressRequests
	done           chan struct{} // closed when the forwarder has returned

	// guarded by watchStream.mu
	inRound bool // the current progress round waits for this watch's answer
	ended   bool // ended by the store (compaction); the ID stays until cancelled
}

// progressRound is a RequestProgress being answered: every watch of the
// stream reports the revision up to which it has delivered everything,
// and the stream answers with the lowest.
type progressRound struct {
	rev     int64 // the revision when the round started: answers must reach it
	min     int64 // lowest answer so far; 0: none yet
	waiting int   // watches yet to answer
	again   bool  // another request arrived meanwhile: start a new round after this one
}

func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	srv := ws.srv
	requireLeader := requiresLeader(stream.Context())
	if requireLeader {
		ok, err := srv.hasLeader(stream.Context())
		if err != nil {
			return err
		}
		if !ok {
			return rpctypes.ErrGRPCNoLeader
		}
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	s := &watchStream{
		srv:     srv,
		grpc:    stream,
		ctx:     ctx,
		cancel:  cancel,
		sendc:   make(chan watchSend, watchSendBuffer),
		watches: make(map[int64]*streamWatch),
	}
	if requireLeader {
		ws.leaders.add(srv, s)
		defer ws.leaders.remove(s)
	}
	// The receive goroutine is not waited for: Recv returns only once the
	// stream is over, which for a stream the server ends is after this
	// handler has returned.
	go s.recvLoop()
	err := s.sendLoop()
	s.close(err)
	return err
}

// requiresLeader reports whether the client asked, with etcd's "hasleader"
// metadata, for the stream to fail when the member has no leader.
func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

// hasLeader reports whether this member knows a leader. It asks no other
// member.
func (srv *Server) hasLeader(context.Context) (bool, error) {
	return srv.store.Leader() != "", nil
}

// sendLoop sends queued responses until the stream ends, and returns the
// stream's error.
func (s *watchStream) sendLoop() error {
	limit := s.srv.opts.MaxRequestBytes + grpcOverheadBytes // as etcd: the request limit with its overhead
	for {
		select {
		case m := <-s.sendc:
			var err error
			if m.fragment {
				err = sendFragments(m.resp, limit, s.grpc.Send)
			} else {
				err = s.grpc.Send(m.resp)
			}
			if err != nil {
				if s.ctx.Err() == nil {
					s.srv.log.Debug("watch: send failed", "err", err)
				}
				s.cancel(err)
				return s.err()
			}
		case <-s.ctx.Done():
			return s.err()
		case <-s.srv.stop:
			s.cancel(rpctypes.ErrGRPCStopped)
			return s.err()
		}
	}
}

// err is the error the stream ends with.
func (s *watchStream) err() error {
	cause := context.Cause(s.ctx)
	switch {
	case cause == nil:
		return nil
	case errors.Is(cause, context.Canceled):
		return rpctypes.ErrGRPCWatchCanceled
	case errors.Is(cause, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	}
	return toGRPC(cause)
}

// close ends every watch of the stream and waits for their goroutines.
func (s *watchStream) close(err error) {
	if err == nil {
		err = rpctypes.ErrGRPCWatchCanceled
	}
	s.cancel(err)
	s.mu.Lock()
	s.closed = true
	s.round = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// enqueue hands resp to the send loop; false if ctx ended first.
func (s *watchStream) enqueue(ctx context.Context, resp *pb.WatchResponse, fragment bool) bool {
	select {
	case s.sendc <- watchSend{resp: resp, fragment: fragment}:
		return true
	case <-ctx.Done():
		return false
	}
}

// recvLoop reads requests until the stream ends.
func (s *watchStream) recvLoop() {
	for {
		req, err := s.grpc.Recv()
		if errors.Is(err, io.EOF) {
			// The client closed its side: as etcd, keep sending until
			// the stream ends.
			return
		}
		if err != nil {
			s.cancel(err)
			return
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if r.CreateRequest != nil {
				s.create(r.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if r.CancelRequest != nil {
				s.cancelWatch(r.CancelRequest.WatchId)
			}
		case *pb.WatchRequest_ProgressRequest:
			if r.ProgressRequest != nil {
				s.requestProgress()
			}
		default:
			// As etcd: an unknown request does not end the stream.
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// createFailed answers a create request that made no watch.
func (s *watchStream) createFailed(reason string) {
	s.enqueue(s.ctx, &pb.WatchResponse{
		Header:       s.srv.currentHeader(),
		WatchId:      invalidWatchID,
		Created:      true,
		Canceled:     true,
		CancelReason: reason,
	}, false)
}

// create serves a create request.
func (s *watchStream) create(cr *pb.WatchCreateRequest) {
	key := cr.Key
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as etcd
	}
	end := cr.RangeEnd
	fromKey := len(end) == 1 && end[0] == 0
	switch {
	case cr.StartRevision < 0:
		s.createFailed(rpctypes.ErrCompacted.Error())
		return
	case len(end) > 0 && !fromKey && bytes.Compare(key, end) >= 0:
		s.createFailed(reasonEmptyRange)
		return
	}

	// The watch starts right after rev, so that the Created header's
	// revision is exactly where it begins (clientv3 resumes a watch
	// created without a revision from that header).
	rev := s.srv.store.Revision()
	w := &streamWatch{
		fragment:       cr.Fragment,
		progressNotify: cr.ProgressNotify,
		want:           make(chan struct{}, 1),
		req:            make(chan struct{}, 1),
		done:           make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	id := cr.WatchId
	if id == autoWatchID {
		for s.watches[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if s.watches[id] != nil {
		s.mu.Unlock()
		s.createFailed(reasonDuplicateID)
		return
	}
	w.id = id
	w.ctx, w.cancel = context.WithCancel(s.ctx)
	s.watches[id] = w
	if s.round != nil {
		// A round in flight covers this watch too: the client will apply
		// its answer to every watch it knows when the answer arrives.
		w.inRound = true
		s.round.waiting++
		w.want <- struct{}{}
	}
	s.wg.Add(1)
	s.mu.Unlock()

	start := cr.StartRevision
	if start == 0 {
		start = rev + 1
	}
	opts := []accord.OpOption{accord.WithRev(start), accord.WithProgressRequests(w.req)}
	if len(end) > 0 {
		opts = append(opts, accord.WithRange(string(end)))
	}
	if cr.PrevKv {
		opts = append(opts, accord.WithPrevKV())
	}
	if cr.ProgressNotify {
		opts = append(opts, accord.WithProgressNotify())
	}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			opts = append(opts, accord.WithFilterPut())
		case pb.WatchCreateRequest_NODELETE:
			opts = append(opts, accord.WithFilterDelete())
		}
	}
	ch := s.srv.store.Watch(w.ctx, string(key), opts...)
	created := &pb.WatchResponse{Header: s.srv.header(rev), WatchId: id, Created: true}
	if !s.enqueue(s.ctx, created, false) {
		w.cancel()
		close(w.done)
		s.wg.Done()
		return
	}
	go s.forward(w, ch)
}

// forward converts and queues the responses of one watch until it ends.
func (s *watchStream) forward(w *streamWatch, ch <-chan accord.WatchResponse) {
	defer s.wg.Done()
	defer close(w.done)
	defer w.cancel()
	// awaiting: a progress round asked the store for this watch's
	// progress, and floor is the revision the answer must reach. A
	// progress notification below it may be a periodic one (WithProgressNotify)
	// that was queued before the request: it is passed on as such and the
	// store asked again.
	awaiting := false
	var floor int64
	ask := func() {
		select {
		case w.req <- struct{}{}:
		default: // a request is pending already; it will be answered
		}
	}
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.want:
			s.mu.Lock()
			if w.inRound && s.round != nil {
				awaiting, floor = true, s.round.rev
			}
			s.mu.Unlock()
			if awaiting {
				ask()
			}
		case r, ok := <-ch:
			if !ok {
				if w.ctx.Err() == nil {
					// The store closed under the stream: let the client
					// go to another member.
					s.cancel(rpctypes.ErrGRPCStopped)
				}
				return
			}
			if r.Err != nil {
				s.endWatch(w, r)
				return
			}
			if len(r.Events) == 0 {
				if awaiting && r.Revision >= floor {
					awaiting = false
					s.progressAnswer(w, r.Revision)
					continue
				}
				if awaiting {
					ask()
				}
				if w.progressNotify {
					resp := &pb.WatchResponse{Header: s.srv.header(r.Revision), WatchId: w.id}
					if !s.enqueue(w.ctx, resp, false) {
						return
					}
				}
				continue
			}
			resp := &pb.WatchResponse{
				Header:  s.srv.header(r.Revision),
				WatchId: w.id,
				Events:  make([]*mvccpb.Event, len(r.Events)),
			}
			for i := range r.Events {
				resp.Events[i] = toEvent(&r.Events[i])
			}
			if !s.enqueue(w.ctx, resp, w.fragment) {
				return
			}
		}
	}
}

func toEvent(ev *accord.Event) *mvccpb.Event {
	out := &mvccpb.Event{Type: mvccpb.Event_EventType(ev.Type), Kv: toKV(&ev.KV)}
	if ev.PrevKV != nil {
		out.PrevKv = toKV(ev.PrevKV)
	}
	return out
}

// endWatch reports a watch the store ended. As etcd, the watch ID stays in
// use until the client cancels it.
func (s *watchStream) endWatch(w *streamWatch, r accord.WatchResponse) {
	var resp *pb.WatchResponse
	switch {
	case errors.Is(r.Err, accord.ErrCompacted):
		rev := r.Revision
		if rev == 0 {
			rev = s.srv.store.Revision()
		}
		resp = &pb.WatchResponse{
			Header:          s.srv.header(rev),
			WatchId:         w.id,
			Canceled:        true,
			CompactRevision: r.CompactRevision,
		}
	case errors.Is(r.Err, accord.ErrClosed):
		s.cancel(toGRPC(r.Err))
		return
	default:
		resp = &pb.WatchResponse{
			Header:       s.srv.currentHeader(),
			WatchId:      w.id,
			Canceled:     true,
			CancelReason: status.Convert(toGRPC(r.Err)).Message(),
		}
	}
	s.enqueue(w.ctx, resp, false)
	s.mu.Lock()
	defer s.mu.Unlock()
	w.ended = true
	s.leaveRoundLocked(w, 0)
}

// cancelWatch serves a cancel request: the watch's responses all go
// before the Canceled one. An unknown ID gets no answer, as in etcd.
func (s *watchStream) cancelWatch(id int64) {
	s.mu.Lock()
	w := s.watches[id]
	if w == nil || s.closed {
		s.mu.Unlock()
		return
	}
	delete(s.watches, id)
	s.leaveRoundLocked(w, 0)
	s.mu.Unlock()
	w.cancel()
	<-w.done
	s.enqueue(s.ctx, &pb.WatchResponse{Header: s.srv.currentHeader(), WatchId: id, Canceled: true}, false)
}

// requestProgress serves a progress request.
func (s *watchStream) requestProgress() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.round != nil {
		s.round.again = true
		return
	}
	s.startRoundLocked()
	s.finishRoundLocked()
}

// startRoundLocked starts a progress round over every live watch.
func (s *watchStream) startRoundLocked() {
	r := &progressRound{rev: s.srv.store.Revision()}
	for _, w := range s.watches {
		if w.ended {
			continue
		}
		w.inRound = true
		r.waiting++
		select {
		case w.want <- struct{}{}:
		default:
		}
	}
	s.round = r
}

// progressAnswer records w's answer to the current round: it has
// delivered every event up to rev.
func (s *watchStream) progressAnswer(w *streamWatch, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaveRoundLocked(w, rev)
}

// leaveRoundLocked takes w out of the current round, with its answer rev
// (0: none, the watch is gone), and completes the round if it was the
// last one waited for.
func (s *watchStream) leaveRoundLocked(w *streamWatch, rev int64) {
	if !w.inRound {
		return
	}
	w.inRound = false
	r := s.round
	if r == nil {
		return
	}
	if rev > 0 && (r.min == 0 || rev < r.min) {
		r.min = rev
	}
	r.waiting--
	s.finishRoundLocked()
}

// finishRoundLocked sends the answer of a round nobody is waited for any
// more, and starts the next one if requests arrived meanwhile. The answer
// is queued with s.mu held, so that no watch is created between the
// round's end and its answer.
func (s *watchStream) finishRoundLocked() {
	for s.round != nil && s.round.waiting == 0 && !s.closed {
		r := s.round
		s.round = nil
		rev := r.rev
		if r.min != 0 {
			rev = r.min
		}
		resp := &pb.WatchResponse{Header: s.srv.header(rev), WatchId: invalidWatchID}
		if !s.enqueue(s.ctx, resp, false) {
			return
		}
		if r.again {
			s.startRoundLocked()
		}
	}
}

// sendFragments sends wr, split into several responses if it is larger
// than limit and has more than one event, as etcd does: every part but the
// last has Fragment set, and each holds as many events as fit (at least
// one).
func sendFragments(wr *pb.WatchResponse, limit int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < limit || len(wr.Events) < 2 {
		return send(wr)
	}
	base := proto.Size(&pb.WatchResponse{
		Header:          wr.Header,
		WatchId:         wr.WatchId,
		Created:         wr.Created,
		Canceled:        wr.Canceled,
		CompactRevision: wr.CompactRevision,
		CancelReason:    wr.CancelReason,
		Fragment:        true,
	})
	evs := wr.Events
	for len(evs) > 0 {
		size, n := base, 0
		for n < len(evs) {
			es := proto.Size(&pb.WatchResponse{Events: evs[n : n+1]})
			if n > 0 && size+es >= limit {
				break
			}
			size += es
			n++
		}
		cur := &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			Created:         wr.Created,
			Canceled:        wr.Canceled,
			CompactRevision: wr.CompactRevision,
			CancelReason:    wr.CancelReason,
			Fragment:        n < len(evs),
			Events:          evs[:n:n],
		}
		evs = evs[n:]
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}

// leaderMonitor ends the streams that require a leader when this member
// has known none for maxNoLeaderChecks checks in a row (etcd's
// monitorLeader). It runs only while such streams exist.
type leaderMonitor struct {
	mu      sync.Mutex
	streams map[*watchStream]struct{}
	stop    context.CancelFunc // nil: not running
	done    chan struct{}
}

func (m *leaderMonitor) add(srv *Server, s *watchStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams == nil {
		m.streams = make(map[*watchStream]struct{})
	}
	m.streams[s] = struct{}{}
	if m.stop == nil {
		ctx, stop := context.WithCancel(context.Background())
		m.stop, m.done = stop, make(chan struct{})
		go m.run(ctx, srv, m.done)
	}
}

func (m *leaderMonitor) remove(s *watchStream) {
	m.mu.Lock()
	delete(m.streams, s)
	var stop context.CancelFunc
	var done chan struct{}
	if len(m.streams) == 0 && m.stop != nil {
		stop, done = m.stop, m.done
		m.stop, m.done = nil, nil
	}
	m.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (m *leaderMonitor) run(ctx context.Context, srv *Server, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(leaderCheckInterval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-srv.stop:
			return
		case <-t.C:
		}
		if ok, err := srv.hasLeader(ctx); ok || ctx.Err() != nil {
			missed = 0
			continue
		} else if err != nil {
			srv.log.Debug("watch: leader check failed", "err", err)
		}
		missed++
		if missed < maxNoLeaderChecks {
			continue
		}
		m.mu.Lock()
		for s := range m.streams {
			s.cancel(rpctypes.ErrGRPCNoLeader)
		}
		m.mu.Unlock()
	}
}
