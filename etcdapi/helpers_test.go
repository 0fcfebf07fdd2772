package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/internal/freeport"
)

// testElection is the election timeout of test clusters: short, but long
// enough for a loaded 2-core machine running -race not to flap.
const testElection = 150 * time.Millisecond

// apiCluster is N accord stores, each served over the etcd API on its own
// loopback client port. Every etcdapi test that needs a server uses it.
type apiCluster struct {
	t     testing.TB
	nodes []*apiNode
}

type apiNode struct {
	c          *apiCluster
	idx        int
	dir        string
	opts       accord.Options
	apiOpts    Options
	clientAddr string // host:port of the client listener, kept across restarts

	mu    sync.Mutex // guards the fields below
	store *accord.Store
	srv   *Server
	done  chan error // Serve's result
}

// testLogger writes warnings and errors (everything with
// ACCORD_TEST_LOG=debug) to the test's output.
func testLogger(t testing.TB, name string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("ACCORD_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})).With("node", name)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func freePort(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr() // below the ephemeral range: see package freeport
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// newAPICluster starts n members (node 0 first, the others added with
// AddMember and started with JoinExisting) and an etcd API server on each.
// mutate, if not nil, adjusts each node's options before its first start.
func newAPICluster(t testing.TB, n int, mutate func(i int, o *accord.Options, api *Options)) *apiCluster {
	t.Helper()
	c := &apiCluster{t: t}
	t.Cleanup(c.stopAll)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		nd := &apiNode{c: c, idx: i, dir: t.TempDir(), clientAddr: freePort(t)}
		nd.opts = accord.Options{
			Logger:          testLogger(t, fmt.Sprintf("n%d", i)),
			ElectionTimeout: testElection,
			UnsafeNoFsync:   true,
			PeerAddr:        freePort(t),
			NodeName:        fmt.Sprintf("node%d", i),
			ClientURLs:      []string{"http://" + nd.clientAddr},
		}
		nd.apiOpts = Options{Logger: testLogger(t, fmt.Sprintf("api%d", i))}
		if i > 0 {
			c.addMember(ctx, c.nodes[0].Store(), nd.opts.PeerAddr)
			nd.opts.JoinExisting = true
			nd.opts.Peers = []string{c.nodes[0].opts.PeerAddr}
		}
		if mutate != nil {
			mutate(i, &nd.opts, &nd.apiOpts)
		}
		c.nodes = append(c.nodes, nd)
		nd.start()
	}
	c.waitLeader()
	return c
}

func (c *apiCluster) addMember(ctx context.Context, s *accord.Store, addr string) {
	c.t.Helper()
	for {
		_, err := s.AddMember(ctx, addr, false)
		if err == nil {
			return
		}
		if !errors.Is(err, accord.ErrUnknownOutcome) {
			c.t.Fatalf("add member %s: %v", addr, err)
		}
		ms, merr := s.Members(ctx)
		if merr != nil {
			c.t.Fatalf("add member %s: %v; then members: %v", addr, err, merr)
		}
		for _, m := range ms {
			if m.PeerAddr == addr {
				return
			}
		}
	}
}

// Store returns the node's store, nil while it is stopped.
func (nd *apiNode) Store() *accord.Store {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.store
}

// start opens the store and serves it on the node's client address.
func (nd *apiNode) start() {
	t := nd.c.t
	t.Helper()
	s, err := accord.Open(nd.dir, &nd.opts)
	if err != nil {
		t.Fatalf("open node %d: %v", nd.idx, err)
	}
	srv, err := New(s, &nd.apiOpts)
	if err != nil {
		s.Close()
		t.Fatalf("etcdapi.New node %d: %v", nd.idx, err)
	}
	// The port was ours a moment ago; on a restart the old socket may
	// linger briefly.
	var ln net.Listener
	eventually(t, 5*time.Second, fmt.Sprintf("node %d can listen on %s", nd.idx, nd.clientAddr), func() (err error) {
		ln, err = net.Listen("tcp", nd.clientAddr)
		return err
	})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	nd.mu.Lock()
	nd.store, nd.srv, nd.done = s, srv, done
	nd.mu.Unlock()
}

// kill stops the API server and closes the store (a restart keeps the
// data directory and the client address).
func (nd *apiNode) kill() {
	nd.mu.Lock()
	s, srv, done := nd.store, nd.srv, nd.done
	nd.store, nd.srv, nd.done = nil, nil, nil
	nd.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Close(); err != nil {
		nd.c.t.Errorf("close server %d: %v", nd.idx, err)
	}
	if err := <-done; err != nil {
		nd.c.t.Errorf("serve %d: %v", nd.idx, err)
	}
	if err := s.Close(); err != nil {
		nd.c.t.Errorf("close node %d: %v", nd.idx, err)
	}
}

func (nd *apiNode) restart() { nd.start() }

// Endpoint is the node's client endpoint for clientv3 and etcdctl.
func (nd *apiNode) Endpoint() string { return "http://" + nd.clientAddr }

func (c *apiCluster) stopAll() {
	for _, nd := range c.nodes {
		nd.kill()
	}
}

// Endpoints lists every node's client endpoint.
func (c *apiCluster) Endpoints() []string {
	var eps []string
	for _, nd := range c.nodes {
		eps = append(eps, nd.Endpoint())
	}
	return eps
}

// waitLeader waits until every running node knows the same leader and the
// leader has applied its own term's entries (Status on each node agrees).
func (c *apiCluster) waitLeader() {
	c.t.Helper()
	eventually(c.t, 20*time.Second, "a leader every node agrees on", func() error {
		leader := ""
		for _, nd := range c.nodes {
			s := nd.Store()
			if s == nil {
				continue
			}
			st, err := s.Status(context.Background())
			if err != nil {
				return err
			}
			if st.Leader == "" {
				return fmt.Errorf("node %d knows no leader", nd.idx)
			}
			if leader != "" && st.Leader != leader {
				return fmt.Errorf("node %d thinks the leader is %s, not %s", nd.idx, st.Leader, leader)
			}
			leader = st.Leader
		}
		// A linearizable read through the leader proves it is ready.
		for _, nd := range c.nodes {
			if s := nd.Store(); s != nil && s.NodeID() == leader {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := s.Get(ctx, "health")
				return err
			}
		}
		return fmt.Errorf("leader %s is not running", leader)
	})
}

// leaderNode returns the running node that leads.
func (c *apiCluster) leaderNode() *apiNode {
	c.t.Helper()
	c.waitLeader()
	for _, nd := range c.nodes {
		if s := nd.Store(); s != nil {
			st, err := s.Status(context.Background())
			if err == nil && st.Leader == s.NodeID() {
				return nd
			}
		}
	}
	c.t.Fatal("no running leader")
	return nil
}

// client returns a clientv3 client for the given endpoints, closed when
// the test ends.
func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually polls cond until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
