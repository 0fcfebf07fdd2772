package etcdapi

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/accordkv/accord"
)

// callLog records what the interceptors and the stats handler saw.
type callLog struct {
	mu    sync.Mutex
	calls []string // "<tag> <full method>"
}

func (l *callLog) add(tag, method string) {
	l.mu.Lock()
	l.calls = append(l.calls, tag+" "+method)
	l.mu.Unlock()
}

func (l *callLog) has(entry string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.calls, entry)
}

func (l *callLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *callLog) unary(tag string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		l.add(tag, info.FullMethod)
		return h(ctx, req)
	}
}

func (l *callLog) stream(tag string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		l.add(tag, info.FullMethod)
		return h(srv, ss)
	}
}

// statsHandler records the start of every RPC: what otelgrpc's
// NewServerHandler hooks into, passed through GRPCServerOptions.
type statsHandler struct{ l *callLog }

func (h statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	h.l.add("stats", info.FullMethodName)
	return ctx
}
func (statsHandler) HandleRPC(context.Context, stats.RPCStats) {}
func (statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (statsHandler) HandleConn(context.Context, stats.ConnStats) {}

// The caller's interceptors and server options see every call: unary and
// streaming, from clientv3 and from the HTTP/JSON gateway, in the order
// given.
func TestInterceptors(t *testing.T) {
	t.Parallel()
	log := &callLog{}
	c := newAPICluster(t, 1, func(_ int, _ *accord.Options, api *Options) {
		api.UnaryInterceptors = []grpc.UnaryServerInterceptor{log.unary("outer"), log.unary("inner")}
		api.StreamInterceptors = []grpc.StreamServerInterceptor{log.stream("stream")}
		api.GRPCServerOptions = []grpc.ServerOption{grpc.StatsHandler(statsHandler{log})}
	})
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, "traced")
	if _, err := cli.Put(ctx, "traced", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "traced"); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wch:
		if len(wr.Events) != 1 {
			t.Fatalf("watch: %+v", wr)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
	gwPost(t, httpClient(t, nil, false), c.nodes[0].Endpoint(), "/v3/kv/range", map[string]string{"key": b64("traced")}, &pb.RangeResponse{})

	put, rng, watch := "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch"
	for _, want := range []string{"outer " + put, "inner " + put, "outer " + rng, "stream " + watch, "stats " + put, "stats " + watch} {
		if !log.has(want) {
			t.Errorf("not seen: %s (seen: %v)", want, log.snapshot())
		}
	}
	calls := log.snapshot()
	if i, j := slices.Index(calls, "outer "+put), slices.Index(calls, "inner "+put); i > j {
		t.Errorf("inner ran before outer: %v", calls)
	}
	// Two ranges reached the interceptors: clientv3's and the gateway's.
	n := 0
	for _, call := range calls {
		if call == "outer "+rng {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d ranges intercepted, want 2 (clientv3 and the gateway): %v", n, calls)
	}
	if slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "outer "+watch) }) {
		t.Errorf("a unary interceptor saw the watch stream: %v", calls)
	}
}

func TestInterceptorsNil(t *testing.T) {
	t.Parallel()
	s, err := accord.Open(t.TempDir(), &accord.Options{ElectionTimeout: testElection, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, o := range []*Options{
		{UnaryInterceptors: []grpc.UnaryServerInterceptor{nil}},
		{StreamInterceptors: []grpc.StreamServerInterceptor{(&callLog{}).stream("x"), nil}},
		{GRPCServerOptions: []grpc.ServerOption{nil}},
	} {
		srv, err := New(s, o)
		if err == nil || !strings.Contains(err.Error(), "is nil") {
			if srv != nil {
				srv.Close()
			}
			t.Errorf("case %d: New: %v, want an error naming the nil entry", i, err)
			continue
		}
		t.Logf("case %d: %v", i, err)
	}
}
