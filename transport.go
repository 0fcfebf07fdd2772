package accord

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/logbridge"
	"github.com/accordkv/accord/internal/wire"
)

// The peer transport: one listener per node carrying both the raft stream
// and accord's own RPCs (forwarded writes, read-index for followers, lease
// keep-alives, status, member lookup). The first byte a dialer sends after
// the (optional) TLS handshake says which: connRaft or connRPC. With
// Options.PeerTLS set, both sides require a certificate from the
// configured CA (mutual TLS): a host without one can neither speak raft to
// a member nor call its RPCs, and a plaintext dialer fails the handshake.
// With PeerTLS.InsecureSkipVerify (etcd's --peer-auto-tls) traffic is
// encrypted but any certificate is accepted.

const (
	connRaft byte = 'R'
	connRPC  byte = 'C'

	peerHandshakeTimeout = 10 * time.Second
	rpcMaxFrame          = 64 << 20
	rpcIdlePerPeer       = 16
	// rpcFrameTimeout bounds the arrival of the rest of a request frame
	// once its first byte is in, and the write of a response: a stream
	// that lost bytes (a network that drops data but keeps the
	// connection) is closed instead of holding a server goroutine.
	rpcFrameTimeout = peerHandshakeTimeout
)

// errTransportClosed is returned by the transport after close.
var errTransportClosed = errors.New("accord: peer transport closed")

type peerTransport struct {
	log       *slog.Logger
	ln        net.Listener
	advertise string
	timeout   time.Duration // bound of every RPC round trip (Options.requestTimeout)
	server    *tls.Config   // nil: plaintext
	client    *tls.Config   // nil: plaintext
	handler   func(ctx context.Context, req *wire.Request) *wire.Response

	raftConns chan net.Conn
	raftStop  chan struct{} // closed by the raft stream layer's Close
	raftOnce  sync.Once
	stop      chan struct{}
	ctx       context.Context // cancelled by close: ends requests being served
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	closed      bool
	conns       map[net.Conn]struct{} // every open connection, both directions
	idle        map[string][]*rpcConn // pooled RPC client connections by address
	partitioned bool                  // test hook: refuse all traffic

	// loopIP is the loopback address the listener bound, if any: dials to
	// loopback peers leave from it, so that a node on 127.0.0.12 is seen by
	// its peers (and by a fault-injecting proxy) as 127.0.0.12.
	loopIP net.IP
}

func newPeerTransport(log *slog.Logger, ln net.Listener, advertise string, tlsConf *tls.Config, timeout time.Duration) *peerTransport {
	t := &peerTransport{
		log:       log,
		ln:        ln,
		advertise: advertise,
		timeout:   timeout,
		raftConns: make(chan net.Conn),
		raftStop:  make(chan struct{}),
		stop:      make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
		idle:      make(map[string][]*rpcConn),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		t.loopIP = a.IP
	}
	if tlsConf != nil {
		t.server = tlsConf.Clone()
		t.server.ClientAuth = tls.RequireAndVerifyClientCert
		if tlsConf.InsecureSkipVerify {
			// Encrypted, not authenticated (Options.PeerTLS): a dialer
			// must still speak TLS with a certificate, any certificate.
			t.server.ClientAuth = tls.RequireAnyClientCert
		}
		t.server.MinVersion = max(t.server.MinVersion, tls.VersionTLS12)
		t.client = tlsConf.Clone()
		t.client.MinVersion = max(t.client.MinVersion, tls.VersionTLS12)
	}
	return t
}

// start begins accepting connections; handler serves RPCs.
func (t *peerTransport) start(handler func(ctx context.Context, req *wire.Request) *wire.Response) {
	t.handler = handler
	t.wg.Go(t.acceptLoop)
}

func (t *peerTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.partitioned {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *peerTransport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *peerTransport) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.log.Warn("peer accept failed", "err", err)
			select {
			case <-t.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !t.track(c) {
			c.Close()
			continue
		}
		t.wg.Go(func() { t.handshake(c) })
	}
}

// handshake completes TLS, reads the connection kind and hands it on.
func (t *peerTransport) handshake(c net.Conn) {
	c.SetDeadline(time.Now().Add(peerHandshakeTimeout))
	conn := c
	if t.server != nil {
		tc := tls.Server(c, t.server)
		if err := tc.Handshake(); err != nil {
			t.log.Warn("peer TLS handshake refused", "peer", c.RemoteAddr().String(), "err", err)
			t.untrack(c)
			c.Close()
			return
		}
		conn = &trackedConn{Conn: tc, raw: c}
	}
	var kind [1]byte
	if _, err := io.ReadFull(conn, kind[:]); err != nil {
		t.untrack(c)
		conn.Close()
		return
	}
	c.SetDeadline(time.Time{})
	switch kind[0] {
	case connRaft:
		select {
		case t.raftConns <- conn:
		case <-t.raftStop:
			t.untrack(c)
			conn.Close()
		case <-t.stop:
			t.untrack(c)
			conn.Close()
		}
	case connRPC:
		t.serveRPC(conn, c)
	default:
		t.log.Warn("peer sent an unknown connection kind", "peer", c.RemoteAddr().String())
		t.untrack(c)
		conn.Close()
	}
}

// trackedConn keeps the raw connection (the key of peerTransport.conns) of
// a TLS connection.
type trackedConn struct {
	net.Conn
	raw net.Conn
}

func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*trackedConn); ok {
		return tc.raw
	}
	return c
}

// serveRPC answers requests on one connection, one at a time.
func (t *peerTransport) serveRPC(conn, raw net.Conn) {
	defer func() {
		t.untrack(raw)
		conn.Close()
	}()
	r := bufio.NewReader(conn)
	var out []byte
	for {
		// Idle between requests for as long as the client likes; once a
		// request starts, all of it must arrive promptly. A frame that
		// never completes is a stream that lost bytes: waiting would hold
		// this goroutine, and the client's request, forever.
		if _, err := r.Peek(1); err != nil {
			return
		}
		conn.SetReadDeadline(time.Now().Add(rpcFrameTimeout))
		frame, err := wire.ReadFrame(r, rpcMaxFrame)
		if err != nil {
			return
		}
		conn.SetReadDeadline(time.Time{})
		var resp *wire.Response
		req, err := wire.DecodeRequest(frame)
		if err != nil {
			code := wire.ErrCodeInvalidArgument
			if errors.Is(err, wire.ErrUnknownRPC) {
				code = wire.ErrCodeUnsupported
			}
			resp = &wire.Response{ErrCode: code, ErrMsg: err.Error()}
		} else {
			ctx, cancel := t.requestContext(req)
			resp = t.handler(ctx, req)
			cancel()
		}
		out, err = wire.AppendResponse(out[:0], resp)
		if err != nil {
			out, _ = wire.AppendResponse(out[:0], &wire.Response{ErrCode: wire.ErrCodeUnknown, ErrMsg: err.Error()})
		}
		conn.SetWriteDeadline(time.Now().Add(rpcFrameTimeout))
		if err := wire.WriteFrame(conn, out); err != nil {
			return
		}
		conn.SetWriteDeadline(time.Time{})
	}
}

// requestContext bounds a served request by the caller's timeout, by the
// transport's request timeout (for callers that send none) and by the
// transport's life.
func (t *peerTransport) requestContext(req *wire.Request) (context.Context, context.CancelFunc) {
	d := t.timeout
	if req.TimeoutMillis > 0 {
		d = min(d, time.Duration(req.TimeoutMillis)*time.Millisecond)
	}
	return context.WithTimeout(t.ctx, d)
}

// dial opens a connection of the given kind to addr.
func (t *peerTransport) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	t.mu.Lock()
	refused := t.closed || t.partitioned
	t.mu.Unlock()
	if refused {
		return nil, fmt.Errorf("dial %s: %w", addr, errTransportClosed)
	}
	var d net.Dialer
	if t.loopIP != nil {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && len(ip.To4()) == len(t.loopIP.To4()) {
				d.LocalAddr = &net.TCPAddr{IP: t.loopIP}
			}
		}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !t.track(c) {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, errTransportClosed)
	}
	conn := c
	if t.client != nil {
		conf := t.client
		if conf.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			conf = conf.Clone()
			conf.ServerName = host
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			t.untrack(c)
			c.Close()
			return nil, fmt.Errorf("peer TLS handshake with %s: %w", addr, err)
		}
		conn = &trackedConn{Conn: tc, raw: c}
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		t.untrack(c)
		conn.Close()
		return nil, err
	}
	conn.SetWriteDeadline(time.Time{})
	return &closeNotifyConn{Conn: conn, t: t}, nil
}

// closeNotifyConn untracks itself when closed.
type closeNotifyConn struct {
	net.Conn
	t    *peerTransport
	once sync.Once
}

func (c *closeNotifyConn) Close() error {
	c.once.Do(func() { c.t.untrack(rawConn(c.Conn)) })
	return c.Conn.Close()
}

// close shuts the listener and every connection, and waits for the
// transport's goroutines.
func (t *peerTransport) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.stop)
	t.cancel()
	t.ln.Close()
	for c := range t.conns {
		c.Close()
	}
	t.idle = nil
	t.mu.Unlock()
	t.wg.Wait()
}

// setPartitioned cuts (or restores) all traffic to and from this node:
// open connections are closed, and new ones are refused both ways. For
// tests of leader isolation.
func (t *peerTransport) setPartitioned(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partitioned = on
	if on {
		for c := range t.conns {
			c.Close()
		}
		clear(t.idle)
	}
}

// listenPeers opens the peer listener of o.PeerAddr and works out the
// address to advertise.
func listenPeers(o *Options) (*peerTransport, error) {
	ln, err := net.Listen("tcp", o.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("accord: open: peer listener: %w", err)
	}
	advertise := o.AdvertisePeerAddr
	if advertise == "" {
		tcp := ln.Addr().(*net.TCPAddr)
		if tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("accord: open: PeerAddr %s binds every interface; set AdvertisePeerAddr to the address members should dial", o.PeerAddr)
		}
		advertise = tcp.String()
	}
	return newPeerTransport(o.Logger, ln, advertise, o.PeerTLS, o.requestTimeout()), nil
}

// lookupMemberID asks the members at o.Peers which ID this node was added
// under (by AddMember, with this node's advertised peer address).
func lookupMemberID(t *peerTransport, o *Options) (string, error) {
	if t == nil || len(o.Peers) == 0 {
		return "", fmt.Errorf("accord: open: JoinExisting needs PeerAddr and Peers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.JoinTimeout)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		for _, p := range o.Peers {
			resp, err := t.call(ctx, p, &wire.Request{Type: wire.RPCMemberLookup, Addr: t.advertise})
			if err == nil {
				if err = errFromWire(resp); err == nil && resp.MemberID != "" {
					return resp.MemberID, nil
				}
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("accord: open: no member at %v knows peer address %s (add it with AddMember first): %w", o.Peers, t.advertise, last)
		case <-time.After(min(50*time.Millisecond<<min(attempt, 4), time.Second)):
		}
	}
}

func (t *peerTransport) isPartitioned() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.partitioned
}

// ---- raft stream layer ----

type raftLayer struct{ t *peerTransport }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.t.raftConns:
		return c, nil
	case <-l.t.raftStop:
		return nil, errTransportClosed
	case <-l.t.stop:
		return nil, errTransportClosed
	}
}

func (l raftLayer) Close() error {
	l.t.raftOnce.Do(func() { close(l.t.raftStop) })
	return nil
}

// Addr is the advertised address: raft uses it as this node's address.
func (l raftLayer) Addr() net.Addr { return advertisedAddr(l.t.advertise) }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.t.dial(ctx, string(addr), connRaft)
}

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// raftTransport is raft's transport over the peer listener. addrs, if not
// nil, gives the address to dial for a server ID (gossip's, so a member
// that moved is reached before the configuration records its address).
func (t *peerTransport) raftTransport(log *slog.Logger, addrs raft.ServerAddressProvider) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:                raftLayer{t},
		MaxPool:               5,
		Timeout:               10 * time.Second,
		Logger:                logbridge.HCLog(log, "raft-net"),
		ServerAddressProvider: addrs,
		// No pipelining. raft's own notes (NetworkTransportConfig) say it
		// gains little and hurts commit latency with batching; and its
		// failure path reads a follower's address without the lock that
		// guards address changes, a data race -race reports when a member
		// moves (hashicorp/raft#681).
		MaxRPCsInFlight: 1,
	})
}

// ---- RPC client ----

type rpcConn struct {
	c net.Conn
	r *bufio.Reader
}

// errNotSent marks an RPC that certainly did not reach the peer (it could
// not connect), so a write can be retried safely.
var errNotSent = errors.New("accord: request not sent")

// errRPCTimeout marks an RPC that got no answer within the transport's
// request timeout while the caller's ctx was still live: the request or
// its answer may have been lost on a connection that stays open (a
// network that drops data), or the peer is stuck. Its fate is unknown. It
// wraps ErrTimeout.
var errRPCTimeout = fmt.Errorf("%w: no answer from the peer", ErrTimeout)

// call sends req to addr and waits for the response within ctx, and never
// longer than the transport's request timeout: TCP cannot tell a request
// that a lossy network swallowed from a slow answer, so without a bound a
// caller with no deadline would wait forever. The peer is told the same
// bound (TimeoutMillis) and answers before it. An error wrapping
// errNotSent means the request never left; errRPCTimeout, a ctx error or
// any other transport error means its fate is unknown.
func (t *peerTransport) call(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
	bound := time.Now().Add(t.timeout)
	if dl, ok := ctx.Deadline(); !ok || dl.After(bound) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, bound, errRPCTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	req.TimeoutMillis = max(1, time.Until(dl).Milliseconds())
	payload, err := wire.AppendRequest(nil, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotSent, err)
	}
	rc, err := t.getConn(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotSent, err)
	}
	stop := context.AfterFunc(ctx, func() { rc.c.SetDeadline(time.Now()) })
	err = wire.WriteFrame(rc.c, payload)
	var frame []byte
	if err == nil {
		frame, err = wire.ReadFrame(rc.r, rpcMaxFrame)
	}
	if !stop() || err != nil {
		rc.c.Close()
		if ctx.Err() == nil {
			// The connection broke under us: the idle ones to the same peer
			// date from before and are likely broken too (the peer
			// restarted, or closed them when cut off). The next call dials.
			t.dropIdle(addr)
		}
		if err == nil || ctx.Err() != nil {
			err = context.Cause(ctx) // the caller's ctx error, or errRPCTimeout
		}
		return nil, err
	}
	resp, err := wire.DecodeResponse(frame)
	if err != nil {
		rc.c.Close()
		return nil, err
	}
	t.putConn(addr, rc)
	return resp, nil
}

func (t *peerTransport) getConn(ctx context.Context, addr string) (*rpcConn, error) {
	t.mu.Lock()
	if pool := t.idle[addr]; len(pool) > 0 {
		rc := pool[len(pool)-1]
		t.idle[addr] = pool[:len(pool)-1]
		t.mu.Unlock()
		return rc, nil
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, addr, connRPC)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: c, r: bufio.NewReader(c)}, nil
}

// dropIdle closes the idle connections to addr.
func (t *peerTransport) dropIdle(addr string) {
	t.mu.Lock()
	pool := t.idle[addr]
	delete(t.idle, addr)
	t.mu.Unlock()
	for _, rc := range pool {
		rc.c.Close() // not under t.mu: closing untracks, which takes it
	}
}

func (t *peerTransport) putConn(addr string, rc *rpcConn) {
	t.mu.Lock()
	if t.closed || t.partitioned || t.idle == nil || len(t.idle[addr]) >= rpcIdlePerPeer {
		t.mu.Unlock()
		rc.c.Close() // not under t.mu: closing untracks, which takes it
		return
	}
	t.idle[addr] = append(t.idle[addr], rc)
	t.mu.Unlock()
}

// ---- the RPCs a member serves ----

// serveRequest answers one peer RPC. Calls that only the leader can
// answer (forwarded writes, read-index, lease renewals) are refused with
// ErrNotLeader and the leader's whereabouts when this node is not a ready
// leader: the caller retries there. They are never forwarded again, so a
// request cannot loop between members that disagree about the leader.
func (s *Store) serveRequest(ctx context.Context, req *wire.Request) *wire.Response {
	switch req.Type {
	case wire.RPCForward, wire.RPCReadIndex, wire.RPCLeaseKeepAlive, wire.RPCLeaseTimeToLive,
		wire.RPCMemberRemove, wire.RPCMemberAdd, wire.RPCMemberPromote, wire.RPCMemberUpdate:
		if !s.isReady() {
			return s.notLeaderResponse()
		}
	}
	switch req.Type {
	case wire.RPCForward:
		if len(req.Command) > s.opts.MaxRequestBytes {
			return errToWire(ErrRequestTooLarge)
		}
		if len(req.Command) > 1 {
			if err := s.disk.refuse(wire.CmdType(req.Command[1])); err != nil {
				return errToWire(err)
			}
		}
		res, err, retry := s.applyLocal(ctx, req.Command)
		if retry {
			return s.notLeaderResponse()
		}
		if err != nil {
			resp := errToWire(err)
			if res != nil {
				resp.Revision = res.rev
			}
			return resp
		}
		return &wire.Response{Txn: txnToWire(res.txn), Revision: res.rev}
	case wire.RPCReadIndex:
		index, err := s.confirmIndex(ctx)
		if err != nil {
			return errToWire(err)
		}
		return &wire.Response{Index: index}
	case wire.RPCLeaseKeepAlive:
		return s.leaseKeepAlive(ctx, req.LeaseID)
	case wire.RPCLeaseTimeToLive:
		return s.leaseTimeToLive(ctx, req.LeaseID, req.Keys)
	case wire.RPCStatus:
		if s.isLeaving() {
			return errToWire(errLeaving)
		}
		st := s.localStatus()
		return &wire.Response{Status: &st}
	case wire.RPCMemberRemove:
		if err := s.mayRemoveMember(ctx, req.MemberID); err != nil {
			return s.leaderResult(err)
		}
		return s.leaderResult(s.removeMemberLocal(ctx, req.MemberID))
	case wire.RPCMemberPromote:
		if err := s.mayPromote(ctx, req.MemberID); err != nil {
			return s.leaderResult(err)
		}
		return s.leaderResult(s.promoteMemberLocal(ctx, req.MemberID))
	case wire.RPCMemberUpdate:
		return s.leaderResult(s.updateMemberLocal(ctx, req.MemberID, req.Addr))
	case wire.RPCMemberAdd:
		if !req.Learner {
			if err := s.mayAddVoter(ctx); err != nil {
				return s.leaderResult(err)
			}
		}
		id, err := s.addMemberLocal(ctx, req.Addr, req.Learner)
		resp := s.leaderResult(err)
		if err == nil {
			resp.MemberID = id
		}
		return resp
	case wire.RPCMemberCheck:
		addr, leader := s.leader()
		resp := &wire.Response{LeaderID: leader, LeaderAddr: addr}
		if _, err := s.findMember(req.MemberID); err == nil {
			resp.MemberID = req.MemberID
		}
		return resp
	case wire.RPCMemberLookup:
		id, err := s.memberByAddr(req.Addr)
		if err != nil {
			return errToWire(err)
		}
		return &wire.Response{MemberID: id}
	}
	return &wire.Response{ErrCode: wire.ErrCodeUnsupported, ErrMsg: fmt.Sprintf("unsupported request type %d", req.Type)}
}

// leaderResult answers a leader-only request: a raft refusal because
// leadership moved becomes ErrNotLeader with a hint, so the caller retries.
func (s *Store) leaderResult(err error) *wire.Response {
	if errors.Is(err, ErrNotLeader) {
		return s.notLeaderResponse()
	}
	return errToWire(err)
}

func (s *Store) notLeaderResponse() *wire.Response {
	addr, id := s.leader()
	if id == s.id { // leader, but not ready yet: no better address to give
		addr, id = "", ""
	}
	return &wire.Response{ErrCode: wire.ErrCodeNotLeader, ErrMsg: ErrNotLeader.Error(), LeaderID: id, LeaderAddr: addr}
}

// onLeader runs req on the leader: here if this node is the ready leader,
// otherwise over the peer transport. It retries with backoff within ctx
// while there is no leader or the one it reached had stepped down. Only
// for requests that are safe to repeat (reads, lease renewals).
func (s *Store) onLeader(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	req.From = s.id
	for attempt := 0; ; attempt++ {
		var resp *wire.Response
		if s.isReady() {
			resp = s.serveRequest(ctx, req)
		} else if addr, id := s.leader(); addr != "" && id != s.id && s.peer != nil {
			r, err := s.peer.call(ctx, addr, req)
			if err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			resp = r // nil on a transport error: retry
		}
		if resp != nil {
			err := errFromWire(resp)
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
				return resp, err
			}
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// errCodes maps sentinel errors to their codes on the wire. The order
// matters where one error wraps another: the first match wins.
var errCodes = []struct {
	code wire.ErrCode
	err  error
}{
	{wire.ErrCodeUnknownOutcome, ErrUnknownOutcome},
	{wire.ErrCodeNotLeader, ErrNotLeader},
	{wire.ErrCodeNoLeader, ErrNoLeader},
	{wire.ErrCodeClosed, ErrClosed},
	{wire.ErrCodeEmptyKey, ErrEmptyKey},
	{wire.ErrCodeKeyNotFound, ErrKeyNotFound},
	{wire.ErrCodeValueProvided, ErrValueProvided},
	{wire.ErrCodeLeaseProvided, ErrLeaseProvided},
	{wire.ErrCodeTooManyOps, ErrTooManyOps},
	{wire.ErrCodeDuplicateKey, ErrDuplicateKey},
	{wire.ErrCodeRequestTooLarge, ErrRequestTooLarge},
	{wire.ErrCodeCompacted, ErrCompacted},
	{wire.ErrCodeFutureRev, ErrFutureRev},
	{wire.ErrCodeLeaseNotFound, ErrLeaseNotFound},
	{wire.ErrCodeLeaseExists, ErrLeaseExists},
	{wire.ErrCodeLeaseTTLTooLarge, ErrLeaseTTLTooLarge},
	{wire.ErrCodeUnsupported, ErrUnsupported},
	{wire.ErrCodeInvalidArgument, ErrInvalidArgument},
	{wire.ErrCodeCorrupt, ErrCorrupt},
	{wire.ErrCodeTimeout, context.DeadlineExceeded},
	{wire.ErrCodeNotFound, ErrMemberNotFound},
	{wire.ErrCodeExists, ErrMemberExists},
	{wire.ErrCodeNoSpace, ErrNoSpace},
	{wire.ErrCodeSpaceExceeded, ErrSpaceExceeded},
	{wire.ErrCodeNotEnoughStarted, ErrNotEnoughStartedMembers},
	{wire.ErrCodeUnhealthy, ErrUnhealthy},
}

func errToWire(err error) *wire.Response {
	if err == nil {
		return &wire.Response{}
	}
	resp := &wire.Response{ErrCode: wire.ErrCodeUnknown, ErrMsg: err.Error()}
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			resp.ErrCode = c.code
			break
		}
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		resp.LeaderID, resp.LeaderAddr = nl.LeaderID, nl.LeaderAddr
	}
	return resp
}

// errFromWire turns a response's error back into an error matching the
// same sentinel, keeping the remote text.
func errFromWire(resp *wire.Response) error {
	if resp.ErrCode == wire.ErrCodeNone {
		return nil
	}
	if resp.ErrCode == wire.ErrCodeNotLeader {
		return &NotLeaderError{LeaderID: resp.LeaderID, LeaderAddr: resp.LeaderAddr}
	}
	for _, c := range errCodes {
		if c.code == resp.ErrCode {
			return &remoteError{msg: resp.ErrMsg, err: c.err}
		}
	}
	return &remoteError{msg: resp.ErrMsg}
}

// remoteError is an error reported by another member.
type remoteError struct {
	msg string
	err error // the matching sentinel, if any
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

func kvToWire(kv *KeyValue) wire.KeyValue {
	return wire.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: int64(kv.Lease)}
}

func kvFromWire(kv *wire.KeyValue) KeyValue {
	return KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: LeaseID(kv.Lease)}
}

func kvsToWire(kvs []KeyValue) []wire.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]wire.KeyValue, len(kvs))
	for i := range kvs {
		out[i] = kvToWire(&kvs[i])
	}
	return out
}

func kvsFromWire(kvs []wire.KeyValue) []KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]KeyValue, len(kvs))
	for i := range kvs {
		out[i] = kvFromWire(&kvs[i])
	}
	return out
}

func txnToWire(r *TxnResponse) *wire.TxnResponse {
	if r == nil {
		return nil
	}
	w := &wire.TxnResponse{Revision: r.Revision, Succeeded: r.Succeeded}
	if len(r.Responses) > 0 {
		w.Responses = make([]wire.ResponseOp, len(r.Responses))
	}
	for i, op := range r.Responses {
		switch {
		case op.Get != nil:
			w.Responses[i].Range = &wire.RangeResponse{Revision: op.Get.Revision, KVs: kvsToWire(op.Get.KVs), Count: op.Get.Count, More: op.Get.More}
		case op.Put != nil:
			p := &wire.PutResponse{Revision: op.Put.Revision}
			if op.Put.PrevKV != nil {
				kv := kvToWire(op.Put.PrevKV)
				p.PrevKV = &kv
			}
			w.Responses[i].Put = p
		case op.Delete != nil:
			w.Responses[i].DeleteRange = &wire.DeleteRangeResponse{Revision: op.Delete.Revision, Deleted: op.Delete.Deleted, PrevKVs: kvsToWire(op.Delete.PrevKVs)}
		case op.Txn != nil:
			w.Responses[i].Txn = txnToWire(op.Txn)
		}
	}
	return w
}

func txnFromWire(w *wire.TxnResponse) *TxnResponse {
	if w == nil {
		return nil
	}
	r := &TxnResponse{Revision: w.Revision, Succeeded: w.Succeeded}
	if len(w.Responses) > 0 {
		r.Responses = make([]OpResponse, len(w.Responses))
	}
	for i, op := range w.Responses {
		switch {
		case op.Range != nil:
			r.Responses[i].Get = &GetResponse{Revision: op.Range.Revision, KVs: kvsFromWire(op.Range.KVs), Count: op.Range.Count, More: op.Range.More}
		case op.Put != nil:
			p := &PutResponse{Revision: op.Put.Revision}
			if op.Put.PrevKV != nil {
				kv := kvFromWire(op.Put.PrevKV)
				p.PrevKV = &kv
			}
			r.Responses[i].Put = p
		case op.DeleteRange != nil:
			r.Responses[i].Delete = &DeleteResponse{Revision: op.DeleteRange.Revision, Deleted: op.DeleteRange.Deleted, PrevKVs: kvsFromWire(op.DeleteRange.PrevKVs)}
		case op.Txn != nil:
			r.Responses[i].Txn = txnFromWire(op.Txn)
		}
	}
	return r
}
