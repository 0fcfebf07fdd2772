// Package etcdapi serves an accord Store over the etcd v3 API: the gRPC
// services (KV, Watch, Lease, Cluster, Maintenance, Auth.Authenticate and
// the gRPC health service) and etcd's HTTP/JSON gateway (/v3/kv/put,
// /v3/kv/range, /v3/watch, ...) plus /health and /version, all on one
// client port, so that stock etcdctl and programs written against
// go.etcd.io/etcd/client/v3 work unchanged.
//
// Requests are served by the Store's public API, so every semantic (and
// forwarding from a follower to the leader) is the Store's; this package
// translates messages and errors. Errors carry etcd's gRPC codes and exact
// messages (go.etcd.io/etcd/api/v3/v3rpc/rpctypes), because clientv3
// recognises errors by their text.
//
// The root accord package does not import gRPC or etcd; only this package
// does.
package etcdapi

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/accordkv/accord"
)

// Version is the etcd server version this package reports (Maintenance
// Status, /version): the etcd API level it implements, with accord's own
// version as semver build metadata. Clients compare only the numeric part.
var Version = EtcdAPIVersion + "+accord." + accord.ReleaseVersion

// EtcdAPIVersion is the etcd release whose v3 API this package implements.
const EtcdAPIVersion = "3.7.0"

// Options configures a Server. The zero value (or nil) serves plaintext
// with etcd's default limits.
type Options struct {
	// TLS, if set, serves the client port over TLS with this
	// configuration (it must hold the server certificate). Set ClientCAs
	// and ClientAuth to tls.RequireAndVerifyClientCert for etcd's
	// --client-cert-auth. Default nil: plaintext.
	TLS *tls.Config

	// Logger receives what no client sees as an error (a failed accept, a
	// broken stream). Default nil: nothing is logged.
	Logger *slog.Logger

	// PeerURLScheme is the scheme of the peer URLs Cluster calls report
	// and accept ("http" or "https"). Default "http".
	PeerURLScheme string

	// MaxRequestBytes caps the size of one request (etcd's
	// --max-request-bytes); the gRPC receive limit is this plus 512 KiB,
	// as in etcd. Default 1.5 MiB.
	MaxRequestBytes int

	// HTTPHandler, if set, serves HTTP/1 requests whose path the etcd API
	// does not own (for example /metrics). Default nil: 404.
	HTTPHandler http.Handler

	// UnaryInterceptors and StreamInterceptors wrap every gRPC call, in
	// order (the first is outermost), after etcdapi's own (a unary
	// request's bound, as etcd's request timeout: the ctx they see has
	// that deadline): for tracing, metrics or logging, e.g. OpenTelemetry's
	// otelgrpc (see examples/tracing). The HTTP/JSON gateway calls the
	// gRPC server in-process, so its requests pass through them too.
	// Default none.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor

	// GRPCServerOptions are passed to grpc.NewServer after etcdapi's own
	// (message size limits from MaxRequestBytes, keepalive policy), so
	// where both set the same thing these win. Meant for server-wide hooks
	// such as a stats handler (otelgrpc.NewServerHandler). Give
	// interceptors in the two fields above rather than as
	// grpc.UnaryInterceptor or grpc.StreamInterceptor here, which gRPC
	// would run before etcdapi's own. Do not pass grpc.Creds: TLS is
	// Options.TLS, terminated before gRPC. Default none.
	GRPCServerOptions []grpc.ServerOption

	// CORS lists the origins allowed to read HTTP answers from a browser
	// (etcd's --cors): every HTTP answer (the gateway, /health, /version,
	// HTTPHandler's) carries etcd's Access-Control-Allow-* headers for an
	// allowed Origin, and an OPTIONS request is answered 200 with no body.
	// Empty or "*" allows every origin and answers
	// Access-Control-Allow-Origin: *, as etcd's default does.
	CORS []string
}

// Defaults, as etcd has them.
const (
	defaultMaxRequestBytes = 3 * 1024 * 1024 / 2
	grpcOverheadBytes      = 512 * 1024
	maxSendBytes           = 1<<31 - 1
)

// Server serves one Store over the etcd v3 API. Create it with New, run it
// with Serve, stop it with Close. Its methods are safe for concurrent use.
type Server struct {
	store *accord.Store
	opts  Options
	log   *slog.Logger

	clusterID  uint64
	memberID   uint64
	reqTimeout time.Duration // bound of one unary request (Store.RequestTimeout)

	grpc   *grpc.Server
	health *health.Server
	http   *http.Server
	tlsWeb *http.Server // TLS connections: HTTP/2 (gRPC or gateway) and HTTP/1
	gw     http.Handler // the JSON gateway and /health, /version

	grpcConns *connListener // connections speaking gRPC natively
	httpConns *connListener // plaintext HTTP/1 connections
	tlsConns  *connListener // TLS connections after the handshake
	inner     *connListener // the gateway's in-process gRPC connections
	gwConn    *grpc.ClientConn

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu    sync.Mutex // guards lns and conns
	lns   []net.Listener
	conns map[*trackedConn]struct{} // every accepted connection still open
}

// trackedConn is an accepted client connection; Close closes it wherever
// it ended up (gRPC, HTTP/1, an HTTP/2-over-TLS ServeConn).
type trackedConn struct {
	net.Conn
	srv  *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	})
	return c.Conn.Close()
}

// trackConn records c, or closes it and returns nil once Close began.
func (srv *Server) trackConn(c net.Conn) *trackedConn {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	select {
	case <-srv.stop:
		_ = c.Close()
		return nil
	default:
	}
	tc := &trackedConn{Conn: c, srv: srv}
	if srv.conns == nil {
		srv.conns = make(map[*trackedConn]struct{})
	}
	srv.conns[tc] = struct{}{}
	return tc
}

// checkNotNil refuses a nil interceptor or server option, which gRPC would
// only trip over (with a panic) at the first call.
func checkNotNil(o *Options) error {
	for i, f := range o.UnaryInterceptors {
		if f == nil {
			return fmt.Errorf("etcdapi: UnaryInterceptors[%d] is nil", i)
		}
	}
	for i, f := range o.StreamInterceptors {
		if f == nil {
			return fmt.Errorf("etcdapi: StreamInterceptors[%d] is nil", i)
		}
	}
	if i := slices.Index(o.GRPCServerOptions, nil); i >= 0 {
		return fmt.Errorf("etcdapi: GRPCServerOptions[%d] is nil", i)
	}
	return nil
}

// New returns a Server for s. It does not listen: call Serve.
func New(s *accord.Store, opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	// The caller may reuse its slices: New keeps copies.
	o.UnaryInterceptors = slices.Clone(o.UnaryInterceptors)
	o.StreamInterceptors = slices.Clone(o.StreamInterceptors)
	o.GRPCServerOptions = slices.Clone(o.GRPCServerOptions)
	if o.PeerURLScheme == "" {
		o.PeerURLScheme = "http"
	}
	if o.PeerURLScheme != "http" && o.PeerURLScheme != "https" {
		return nil, fmt.Errorf("etcdapi: PeerURLScheme %q: want http or https", o.PeerURLScheme)
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = defaultMaxRequestBytes
	}
	if o.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("etcdapi: MaxRequestBytes %d is negative", o.MaxRequestBytes)
	}
	if err := checkNotNil(&o); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := &Server{
		store:     s,
		opts:      o,
		log:       log,
		clusterID: ClusterID(s.ClusterName()),
		memberID:  MemberID(s.NodeID()),
		stop:      make(chan struct{}),
		grpcConns: newConnListener(),
		httpConns: newConnListener(),
		tlsConns:  newConnListener(),
		inner:     newConnListener(),
	}
	srv.reqTimeout = s.RequestTimeout()
	grpcOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(maxSendBytes),
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.ConnectionTimeout(10 * time.Second), // a client that never finishes its handshake
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	}
	// etcdapi's own interceptors go first in these chains: the caller's
	// see what etcdapi lets through, and run within the request bound
	// (boundRequest turns an error that the bound caused into etcd's
	// "request timed out" once they have returned).
	grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{srv.boundRequest}, o.UnaryInterceptors...)...))
	if len(o.StreamInterceptors) > 0 {
		grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(o.StreamInterceptors...))
	}
	srv.grpc = grpc.NewServer(append(grpcOpts, o.GRPCServerOptions...)...)
	pb.RegisterKVServer(srv.grpc, &kvServer{srv: srv})
	pb.RegisterWatchServer(srv.grpc, &watchServer{srv: srv})
	pb.RegisterLeaseServer(srv.grpc, &leaseServer{srv: srv})
	pb.RegisterClusterServer(srv.grpc, &clusterServer{srv: srv})
	pb.RegisterMaintenanceServer(srv.grpc, &maintenanceServer{srv: srv})
	pb.RegisterAuthServer(srv.grpc, &authServer{srv: srv})
	srv.health = health.NewServer()
	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv.grpc, srv.health)

	gw, conn, err := srv.newGateway()
	if err != nil {
		return nil, err
	}
	srv.gw, srv.gwConn = gw, conn
	srv.http = &http.Server{Handler: http.HandlerFunc(srv.serveHTTP), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	// net/http serves HTTP/2 itself on a *tls.Conn that negotiated "h2"
	// (it sets up TLSNextProto when TLSConfig is nil, for listeners that
	// hand it TLS connections, as tlsConns does).
	srv.tlsWeb = &http.Server{
		Handler:           http.HandlerFunc(srv.serveMixed),
		ReadHeaderTimeout: 10 * time.Second,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1 << 20},
	}
	srv.wg.Go(func() { _ = srv.grpc.Serve(srv.grpcConns) })
	srv.wg.Go(func() { _ = srv.grpc.Serve(srv.inner) })
	srv.wg.Go(func() { _ = srv.http.Serve(srv.httpConns) })
	srv.wg.Go(func() { _ = srv.tlsWeb.Serve(srv.tlsConns) })
	return srv, nil
}

// Serve accepts client connections on ln until Close, then returns nil;
// it returns the listener's error if Accept fails otherwise. It may be
// called for several listeners (etcd's --listen-client-urls lists
// several). With Options.TLS every connection must speak TLS.
func (srv *Server) Serve(ln net.Listener) error {
	srv.mu.Lock()
	select {
	case <-srv.stop:
		srv.mu.Unlock()
		return nil
	default:
	}
	srv.lns = append(srv.lns, ln)
	srv.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-srv.stop:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				srv.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-srv.stop:
					return nil
				}
				continue
			}
			return fmt.Errorf("etcdapi: serve: %w", err)
		}
		delay = 0
		tc := srv.trackConn(c)
		if tc == nil {
			return nil // closed meanwhile
		}
		srv.wg.Go(func() { srv.dispatch(tc) })
	}
}

// http2Preface is what every HTTP/2 client (gRPC included) sends first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// dispatch hands a new connection to the gRPC server (HTTP/2) or the
// HTTP/1 server, after the TLS handshake when TLS is on. Plaintext HTTP/2
// goes to gRPC's own transport, the fast path clients use; HTTP/2 over TLS
// (curl negotiates it too) goes through a handler that sends gRPC requests
// to gRPC and the rest to the gateway.
func (srv *Server) dispatch(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if srv.opts.TLS != nil {
		cfg := srv.opts.TLS.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			srv.log.Debug("client TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		srv.tlsConns.push(tc)
		return
	}
	br := bufio.NewReaderSize(c, 64)
	head, err := br.Peek(len(http2Preface))
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if err == nil && string(head) == http2Preface {
		srv.grpcConns.push(pc)
		return
	}
	if len(head) == 0 && err != nil {
		_ = c.Close()
		return
	}
	srv.httpConns.push(pc)
}

// serveMixed serves HTTP/2 over TLS: gRPC to gRPC, the rest as HTTP.
func (srv *Server) serveMixed(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		srv.grpc.ServeHTTP(w, r)
		return
	}
	srv.serveHTTP(w, r)
}

// serveHTTP serves the JSON gateway, /health and /version, and hands
// anything else to Options.HTTPHandler.
func (srv *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if origin, ok := srv.corsOrigin(r); ok {
		h := w.Header()
		h.Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
		h.Add("Access-Control-Allow-Origin", origin)
		h.Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK) // a CORS preflight, as etcd answers it
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v3/"), r.URL.Path == "/health", r.URL.Path == "/version", r.URL.Path == "/readyz", r.URL.Path == "/livez":
		srv.gw.ServeHTTP(w, r)
	case srv.opts.HTTPHandler != nil:
		srv.opts.HTTPHandler.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// corsOrigin returns the Access-Control-Allow-Origin for r, if any:
// etcd's rule (AccessController.OriginAllowed): "*" when every origin is
// allowed, else the request's Origin when it is listed.
func (srv *Server) corsOrigin(r *http.Request) (string, bool) {
	if len(srv.opts.CORS) == 0 || slices.Contains(srv.opts.CORS, "*") {
		return "*", true
	}
	origin := r.Header.Get("Origin")
	if origin != "" && slices.Contains(srv.opts.CORS, origin) {
		return origin, true
	}
	return "", false
}

// Close stops serving: listeners close, streams end, in-flight calls are
// cancelled. It does not close the Store. Close is idempotent.
func (srv *Server) Close() error {
	srv.stopOnce.Do(func() {
		srv.mu.Lock()
		close(srv.stop)
		for _, ln := range srv.lns {
			_ = ln.Close()
		}
		conns := make([]*trackedConn, 0, len(srv.conns))
		for c := range srv.conns {
			conns = append(conns, c)
		}
		srv.mu.Unlock()
		// Client connections first: gRPC's Stop waits for connections
		// still in their HTTP/2 handshake, which only a close ends.
		for _, c := range conns {
			_ = c.Close()
		}
		srv.health.Shutdown()
		_ = srv.gwConn.Close()
		srv.grpc.Stop()
		_ = srv.http.Close()
		_ = srv.tlsWeb.Close()
		srv.grpcConns.close()
		srv.httpConns.close()
		srv.tlsConns.close()
		srv.inner.close()
	})
	srv.wg.Wait()
	return nil
}

// errRequestTimeout is the cause of a request context that the server's
// own bound ended (boundRequest).
var errRequestTimeout = errors.New("etcdapi: request timeout")

// boundRequest bounds every unary request by the store's request timeout,
// as etcd bounds each request by its ReqTimeout (5 s plus two election
// timeouts): no request waits forever, for a leader or for an answer from
// one, because its client set no deadline. A request that the bound ended
// fails with etcd's "etcdserver: request timed out", whatever error the
// wait ended in (no leader, outcome unknown); one that the client's own
// deadline or cancellation ended keeps its error. Streams (Watch,
// LeaseKeepAlive, Snapshot) live as long as their client wants.
func (srv *Server) boundRequest(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, srv.reqTimeout, errRequestTimeout)
	defer cancel()
	resp, err := handler(ctx, req)
	if err != nil && errors.Is(context.Cause(ctx), errRequestTimeout) {
		return nil, rpctypes.ErrGRPCTimeout
	}
	return resp, err
}

// header returns a response header at revision rev.
func (srv *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{
		ClusterId: srv.clusterID,
		MemberId:  srv.memberID,
		Revision:  rev,
		RaftTerm:  srv.store.Term(),
	}
}

// currentHeader returns a header at this member's current revision.
func (srv *Server) currentHeader() *pb.ResponseHeader { return srv.header(srv.store.Revision()) }

// MemberID is the etcd member ID of the accord node with the given ID: the
// first 8 bytes of its SHA-256, never 0. Every member computes the same
// value, so the IDs etcdctl prints are stable across restarts.
func MemberID(nodeID string) uint64 { return hashID("member\x00" + nodeID) }

// ClusterID is the etcd cluster ID of the accord cluster with the given
// name.
func ClusterID(clusterName string) uint64 { return hashID("cluster\x00" + clusterName) }

func hashID(s string) uint64 {
	sum := sha256.Sum256([]byte(s))
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed with connections by push, so that
// one accepted socket can be handed to gRPC or to net/http.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *connListener) Close() error { l.close(); return nil }

func (l *connListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }

// dialInner connects the gateway to the gRPC server in process.
func (srv *Server) dialInner(ctx context.Context, _ string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case srv.inner.ch <- b:
		return a, nil
	case <-srv.inner.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
