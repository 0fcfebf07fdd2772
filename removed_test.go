package accord

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestRemovedMemberStops: a member removed from the cluster learns it and
// closes itself, whether it was a follower or the leader; a member that is
// merely cut off does not.
func TestRemovedMemberStops(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Cut off, not removed: it must stay.
	cut := c.follower()
	cut.partition()
	pace(ctx, 6*clusterElection)
	cut.heal()

	waitRemoved := func(nd *testNode) {
		t.Helper()
		select {
		case <-nd.store().Removed():
		case <-ctx.Done():
			t.Fatalf("node %d never learned it was removed", nd.idx)
		}
		eventually(t, 10*time.Second, "removed store closes", func() error {
			if _, err := nd.store().Get(ctx, "k", WithSerializable()); !errors.Is(err, ErrClosed) {
				return errors.New("still open")
			}
			return nil
		})
		// The store closes itself in the background; Close waits for that
		// to finish (its peer listener included) before the node restarts
		// on the same port.
		nd.store().Close()
		nd.forget()
	}

	l := c.leader()
	var f *testNode
	for _, nd := range c.nodes {
		if nd != cut && nd != l {
			f = nd
			break
		}
	}
	if err := l.store().RemoveMember(ctx, f.store().NodeID()); err != nil {
		t.Fatal(err)
	}
	waitRemoved(f)
	// Started again on its old directory, it finds out again and stops.
	f.restart(false)
	waitRemoved(f)

	// The leader removes itself: it steps down and then stops.
	l = c.leader()
	if l == cut {
		if err := l.store().TransferLeadership(ctx, ""); err != nil {
			t.Fatal(err)
		}
		l = c.leader()
	}
	if err := l.store().RemoveMember(ctx, l.store().NodeID()); err != nil && !errors.Is(err, ErrUnknownOutcome) {
		t.Fatal(err)
	}
	waitRemoved(l)

	// The rest keep serving, and the cut-off member was not removed.
	nl := c.leader()
	if _, err := nl.store().Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cut.store().Removed():
		t.Fatal("a member that was only cut off thinks it was removed")
	default:
	}
	ms, err := nl.store().Members(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("members %+v %v", ms, err)
	}
}

// TestPeerDialsFromLoopbackIP: a node listening on a loopback address
// other than 127.0.0.1 dials its loopback peers from that address.
func TestPeerDialsFromLoopbackIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := testOptions()
	o.PeerAddr = "127.0.0.7:0"
	s := openTestStore(t, "", o)
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	c, err := s.peer.dial(t.Context(), ln.Addr().String(), 'C')
	if err == nil {
		c.Close()
	}
	if ip := <-got; ip != "127.0.0.7" {
		t.Fatalf("peer seen from %s, want 127.0.0.7", ip)
	}
}
