package accord

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// blackHole accepts TCP connections and reads everything sent on them
// without ever answering: the far end of a peer connection on a network
// that lost data (a blackhole that drops bytes but keeps the connection,
// as etcd's test proxy does).
type blackHole struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newBlackHole(t *testing.T) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// poisonPool replaces the idle RPC connections of s to addr with one
// connection into b: the next request s sends to addr is lost.
func poisonPool(t *testing.T, s *Store, addr string, b *blackHole) {
	t.Helper()
	c, err := net.Dial("tcp", b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s.peer.mu.Lock()
	old := s.peer.idle[addr]
	s.peer.idle[addr] = []*rpcConn{{c: c, r: bufio.NewReader(c)}}
	s.peer.mu.Unlock()
	for _, rc := range old {
		rc.c.Close()
	}
}

// TestForwardOnLostConnectionTimesOut: a write forwarded to the leader on a
// pooled peer connection that swallows the request (issue 17, item 2: a
// Compact with no deadline hung for minutes after a blackhole) fails with
// ErrTimeout and ErrUnknownOutcome within the request timeout, even with
// no deadline of its own; a linearizable read in the same spot is retried
// on a new connection and succeeds.
func TestForwardOnLostConnectionTimesOut(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.follower().store()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p, err := putSettled(ctx, f, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := f.leader()
	b := newBlackHole(t)
	bound := f.RequestTimeout()

	// A write: its fate is unknown, and the caller hears so in time.
	poisonPool(t, f, addr, b)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Compact(context.Background(), p.Revision) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("Compact on a connection that lost the request: %v, want ErrTimeout and ErrUnknownOutcome", err)
		}
		if d := time.Since(start); d < bound-time.Second {
			t.Fatalf("Compact gave up after %v, before the request timeout %v", d, bound)
		}
	case <-time.After(bound + 20*time.Second):
		t.Fatalf("Compact without a deadline had not returned %v after its request was lost", bound+20*time.Second)
	}

	// A read is safe to send again: it succeeds.
	poisonPool(t, f, addr, b)
	got := make(chan error, 1)
	go func() {
		r, err := f.Get(context.Background(), "k")
		if err == nil && (len(r.KVs) != 1 || string(r.KVs[0].Value) != "v") {
			err = errors.New("wrong value")
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("linearizable Get after a lost read-index request: %v", err)
		}
	case <-time.After(2*bound + 20*time.Second):
		t.Fatal("linearizable Get without a deadline did not return after its read-index request was lost")
	}
}

// TestPeerServerClosesTruncatedFrame: a request frame that starts but never
// completes (the rest was lost) makes the member close the connection
// rather than wait for the missing bytes forever.
func TestPeerServerClosesTruncatedFrame(t *testing.T) {
	s := openTestStore(t, "", &Options{Logger: testLogger(t, "n0"), ElectionTimeout: clusterElection, UnsafeNoFsync: true, PeerAddr: "127.0.0.1:0"})
	conn, err := net.Dial("tcp", s.PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := append([]byte{connRPC}, binary.AppendUvarint(nil, 100)...)
	msg = append(msg, make([]byte, 10)...) // 10 of the 100 bytes announced
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(rpcFrameTimeout + 10*time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the member still holds a truncated request frame open after %v", rpcFrameTimeout+10*time.Second)
	}
	if err == nil {
		t.Fatal("the member answered a truncated request frame")
	}
}

// TestStrictCheckAfterStalePeerConnections: the strict reconfiguration
// check asks every voter for its status; when the leader's idle
// connections to a live voter were all closed by that voter (it restarted,
// or was cut off and healed), the check dials afresh instead of counting
// the voter unreachable and refusing the change with ErrUnhealthy (seen in
// TestRemovedMemberStops under load: status answered EOF).
func TestStrictCheckAfterStalePeerConnections(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l := c.leader()
	var followers []*testNode
	for _, nd := range c.running() {
		if nd != l {
			followers = append(followers, nd)
		}
	}
	keep, drop := followers[0], followers[1]
	// A write of this leader's term committed: the cluster is settled.
	if _, err := putSettled(ctx, l.store(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	// Idle connections whose far end is closed: more than the check tries.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stale []*rpcConn
	for range 2 * rpcIdlePerPeer {
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		sc.Close()
		stale = append(stale, &rpcConn{c: cc, r: bufio.NewReader(cc)})
	}
	addr := keep.store().PeerAddr()
	lp := l.store().peer
	lp.mu.Lock()
	old := lp.idle[addr]
	lp.idle[addr] = stale[:rpcIdlePerPeer]
	lp.mu.Unlock()
	for _, rc := range old {
		rc.c.Close()
	}
	for _, rc := range stale[rpcIdlePerPeer:] {
		rc.c.Close()
	}

	// Removing a live voter of three needs both others reachable.
	err = l.store().RemoveMember(ctx, drop.store().NodeID())
	if errors.Is(err, ErrUnhealthy) || errors.Is(err, ErrNotEnoughStartedMembers) {
		t.Fatalf("remove a live voter with every voter up, after the leader's connections to %s went stale: %v", keep.store().NodeID(), err)
	}
	if err != nil && !errors.Is(err, ErrUnknownOutcome) {
		t.Fatal(err)
	}
	// The check let it through; a leader change during the change itself
	// leaves its outcome unknown, and the configuration tells.
	eventually(t, 20*time.Second, "the removed member to leave the configuration", func() error {
		conf, err := keep.store().configuration()
		if err != nil {
			return err
		}
		if _, ok := serverOf(conf, drop.store().NodeID()); ok {
			return errors.New("still a member")
		}
		return nil
	})
}
