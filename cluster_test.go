package accord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/freeport"
)

// testCluster is the in-process cluster every multi-node test uses: N
// stores in one process, each with its own data directory and a peer
// listener on a loopback port, logging to the test output. Nodes can be
// killed (Close) and restarted on the same directory (optionally on a new
// port), and cut off from the others (partition) and reconnected (heal).
type testCluster struct {
	t     testing.TB
	nodes []*testNode
}

type testNode struct {
	c    *testCluster
	idx  int
	dir  string
	opts Options
	mu   sync.Mutex // guards s
	s    *Store     // nil while stopped
}

// clusterElection is the election timeout of test clusters: short, but
// long enough for a loaded 2-core machine running -race not to flap.
const clusterElection = 150 * time.Millisecond

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

// freePort reserves a loopback port for a node that must be added before
// it starts (its address is part of AddMember), and that may restart on
// it: below the ephemeral range (see package freeport).
func freePort(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// newTestCluster starts node 0 alone, then adds n-1 voters to it one by
// one with AddMember and starts them with JoinExisting. mutate, if not
// nil, adjusts each node's Options before its first start.
func newTestCluster(t testing.TB, n int, mutate func(i int, o *Options)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	// Registered first, so that nodes already running are stopped when a
	// later one fails to start.
	t.Cleanup(c.stopAll)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		nd := &testNode{c: c, idx: i, dir: t.TempDir()}
		nd.opts = Options{
			Logger:          testLogger(t, fmt.Sprintf("n%d", i)),
			ElectionTimeout: clusterElection,
			UnsafeNoFsync:   true,
			PeerAddr:        freePort(t),
		}
		if i > 0 {
			c.addMember(ctx, c.nodes[0].store(), nd.opts.PeerAddr)
			nd.opts.JoinExisting = true
			nd.opts.Peers = []string{c.nodes[0].opts.PeerAddr}
		}
		if mutate != nil {
			mutate(i, &nd.opts)
		}
		c.nodes = append(c.nodes, nd)
		nd.start()
	}
	c.waitConverged()
	return c
}

// addMember adds a voter at addr through s. An unknown outcome (leadership
// moved mid-change, likely on a loaded machine) is resolved by looking:
// the joining node finds its ID by address, so it only has to be there.
func (c *testCluster) addMember(ctx context.Context, s *Store, addr string) {
	c.t.Helper()
	for {
		_, err := s.AddMember(ctx, addr, false)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrUnknownOutcome) {
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

func (nd *testNode) store() *Store {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.s
}

func (nd *testNode) start() {
	nd.c.t.Helper()
	s, err := Open(nd.dir, &nd.opts)
	if err != nil {
		nd.c.t.Fatalf("open node %d: %v", nd.idx, err)
	}
	nd.mu.Lock()
	nd.s = s
	nd.mu.Unlock()
}

// kill stops the node like a crash that loses nothing on disk (Close).
func (nd *testNode) kill() {
	nd.mu.Lock()
	s := nd.s
	nd.s = nil
	nd.mu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			nd.c.t.Errorf("close node %d: %v", nd.idx, err)
		}
	}
}

// forget drops a node that closed itself (Leave) from the running set.
func (nd *testNode) forget() {
	nd.mu.Lock()
	nd.s = nil
	nd.mu.Unlock()
}

// restart starts a killed node on its directory again; with newPort on a
// different peer port.
func (nd *testNode) restart(newPort bool) {
	nd.c.t.Helper()
	if newPort {
		nd.opts.PeerAddr = freePort(nd.c.t)
	}
	nd.start()
}

func (nd *testNode) partition() { nd.store().peer.setPartitioned(true) }
func (nd *testNode) heal()      { nd.store().peer.setPartitioned(false) }

func (c *testCluster) stopAll() {
	for _, nd := range c.nodes {
		nd.kill()
	}
}

// running returns the nodes that are started.
func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, nd := range c.nodes {
		if nd.store() != nil {
			out = append(out, nd)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits until exactly one running, unpartitioned node is a ready
// leader and every running node agrees on it, and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var leader *testNode
	eventually(c.t, 20*time.Second, "a leader everyone agrees on", func() error {
		leader = nil
		for _, nd := range c.running() {
			s := nd.store()
			if s.peer.isPartitioned() {
				continue
			}
			if s.isReady() {
				if leader != nil {
					return fmt.Errorf("two ready leaders: %d and %d", leader.idx, nd.idx)
				}
				leader = nd
			}
		}
		if leader == nil {
			return fmt.Errorf("no ready leader")
		}
		for _, nd := range c.running() {
			s := nd.store()
			if s.peer.isPartitioned() {
				continue
			}
			if _, id := s.leader(); id != leader.store().id {
				return fmt.Errorf("node %d thinks the leader is %q", nd.idx, id)
			}
		}
		return nil
	})
	return leader
}

// waitConverged waits for a leader and for every running node to have
// applied what the leader has committed.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	l := c.leader().store()
	want := l.raft.CommitIndex()
	eventually(c.t, 20*time.Second, "every node applies the leader's log", func() error {
		for _, nd := range c.running() {
			if got := nd.store().fsm.applied.load(); got < want {
				return fmt.Errorf("node %d applied %d < %d", nd.idx, got, want)
			}
		}
		return nil
	})
}

// follower returns a running node that is not the leader.
func (c *testCluster) follower() *testNode {
	c.t.Helper()
	l := c.leader()
	for _, nd := range c.running() {
		if nd != l {
			return nd
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// putSettled is Put, written again while its outcome is unknown (its
// leader lost the quorum meanwhile, which a loaded 2-core machine with
// short test election timeouts sees now and then). For tests that care
// that the value ends up written, not about an extra revision.
func putSettled(ctx context.Context, s *Store, key string, val []byte, opts ...OpOption) (*PutResponse, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.Put(ctx, key, val, opts...)
		if !errors.Is(err, ErrUnknownOutcome) || attempt == 5 {
			return r, err
		}
	}
}
