package accord

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

func TestClusterForming(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader().store()
	ms, err := l.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members = %+v, want 3", ms)
	}
	for _, m := range ms {
		if m.IsLearner {
			t.Errorf("member %s is a learner", m.ID)
		}
	}
	// A write on a follower is forwarded; a linearizable read on another
	// follower sees it.
	f := c.follower().store()
	r, err := f.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatalf("put on follower: %v", err)
	}
	for _, nd := range c.running() {
		g, err := nd.store().Get(ctx, "k")
		if err != nil {
			t.Fatalf("get on node %d: %v", nd.idx, err)
		}
		if len(g.KVs) != 1 || string(g.KVs[0].Value) != "v" || g.KVs[0].ModRevision != r.Revision {
			t.Fatalf("node %d read %+v, want v at %d", nd.idx, g.KVs, r.Revision)
		}
	}
}

func TestClusterLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	old := c.leader()
	if _, err := old.store().Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	old.kill()
	start := time.Now()
	nl := c.leader()
	if nl == old {
		t.Fatal("killed node still leader")
	}
	if _, err := c.running()[0].store().Put(ctx, "after", []byte("2")); err != nil {
		t.Fatalf("put after failover: %v", err)
	}
	t.Logf("leader kill to first write: %v", time.Since(start))
	old.restart(false)
	c.waitConverged()
	g, err := old.store().Get(ctx, "after", WithSerializable())
	if err != nil || len(g.KVs) != 1 {
		t.Fatalf("restarted node: %v %+v", err, g)
	}
}

func TestClusterPartitionedLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	old := c.leader()
	old.partition()
	// The majority elects a new leader and takes writes.
	nl := c.leader()
	if _, err := nl.store().Put(ctx, "k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	// The isolated old leader must not serve a stale linearizable read.
	sctx, scancel := context.WithTimeout(ctx, 2*clusterElection)
	_, err := old.store().Get(sctx, "k")
	scancel()
	if err == nil {
		t.Fatal("isolated node served a linearizable read")
	}
	old.heal()
	c.waitConverged()
	g, err := old.store().Get(ctx, "k")
	if err != nil || len(g.KVs) != 1 || string(g.KVs[0].Value) != "new" {
		t.Fatalf("healed node read %v %+v", err, g)
	}
}

func TestClusterLeaseOnFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	f := c.follower().store()
	id, err := f.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Put(ctx, "svc/a", []byte("x"), WithLease(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.KeepAliveOnce(ctx, id); err != nil {
		t.Fatalf("keep-alive from follower: %v", err)
	}
	st, err := f.TimeToLive(ctx, id, WithAttachedKeys())
	if err != nil || len(st.Keys) != 1 {
		t.Fatalf("ttl from follower: %v %+v", err, st)
	}
	// Leader change: the lease survives with its TTL extended.
	c.leader().kill()
	nl := c.leader().store()
	st, err = nl.TimeToLive(ctx, id)
	if err != nil || st.TTL <= 0 {
		t.Fatalf("lease after leader change: %v %+v", err, st)
	}
	if err := f.Revoke(ctx, id); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

func TestClusterMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l := c.leader().store()
	// A learner: added, started, catches up, promoted.
	nd := &testNode{c: c, idx: len(c.nodes), dir: t.TempDir()}
	nd.opts = Options{Logger: testLogger(t, "n3"), ElectionTimeout: clusterElection, UnsafeNoFsync: true,
		PeerAddr: freePort(t), JoinExisting: true, Peers: []string{l.PeerAddr()}}
	m, err := l.AddMember(ctx, nd.opts.PeerAddr, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddMember(ctx, nd.opts.PeerAddr, true); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("second add: %v, want ErrMemberExists", err)
	}
	c.nodes = append(c.nodes, nd)
	nd.start()
	if nd.store().NodeID() != m.ID {
		t.Fatalf("joined as %s, added as %s", nd.store().NodeID(), m.ID)
	}
	c.waitConverged()
	if err := l.PromoteMember(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	ms, _ := l.Members(ctx)
	for _, mm := range ms {
		if mm.ID == m.ID && mm.IsLearner {
			t.Fatal("still a learner after promote")
		}
	}
	// Leave from a follower: removed, closed.
	f := c.follower()
	if err := f.store().Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if _, err := f.store().Get(ctx, "k", WithSerializable()); !errors.Is(err, ErrClosed) {
		t.Fatalf("store after Leave: %v, want ErrClosed", err)
	}
	f.forget()
	ms, err = c.leader().store().Members(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members after leave: %v %+v", err, ms)
	}
	st, err := c.leader().store().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterVersion != ReleaseVersion || st.Leader == "" {
		t.Fatalf("status %+v", st)
	}
}

// TestClusterRestartOnNewPort: a follower that comes back on another port
// tells the leader, which then replicates to the new address.
func TestClusterRestartOnNewPort(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	f := c.follower()
	old := f.opts.PeerAddr
	f.kill()
	l := c.leader().store()
	if _, err := l.Put(ctx, "while-down", []byte("1")); err != nil {
		t.Fatal(err)
	}
	f.restart(true)
	if f.opts.PeerAddr == old {
		t.Fatal("test bug: same port")
	}
	eventually(t, 20*time.Second, "leader records the new address", func() error {
		srv, err := l.findMember(f.store().NodeID())
		if err != nil {
			return err
		}
		if string(srv.Address) != f.opts.PeerAddr {
			return fmt.Errorf("address %s, want %s", srv.Address, f.opts.PeerAddr)
		}
		return nil
	})
	c.waitConverged()
	g, err := f.store().Get(ctx, "while-down", WithSerializable())
	if err != nil || len(g.KVs) != 1 {
		t.Fatalf("restarted follower: %v %+v", err, g)
	}
	// Membership calls made on a follower reach the leader.
	m, err := f.store().AddMember(ctx, freePort(t), true)
	if err != nil {
		t.Fatalf("add member from a follower: %v", err)
	}
	if err := f.store().RemoveMember(ctx, m.ID); err != nil {
		t.Fatalf("remove member from a follower: %v", err)
	}
}

// A lease expiry is this leader's own decision, by its clock: proposed
// only here, while the ready leader, never forwarded. A deposed leader
// whose expiry loop fired just before it noticed must not have the new
// leader (which renewed the lease meanwhile) commit it. Found by the chaos
// harness as a lease that vanished while kept alive.
func TestClusterLeaseExpiryNotForwarded(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader().store()
	id, err := l.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f := c.follower().store()
	_, err = f.proposeAsLeader(ctx, &wire.Command{Type: wire.CmdLeaseExpire, LeaseID: int64(id)})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("expiry proposed on a follower: %v, want ErrNotLeader", err)
	}
	// Anything the follower had forwarded would be applied by now.
	if _, err := l.Put(ctx, "after", nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{l, f} {
		if st, err := s.TimeToLive(ctx, id); err != nil || st.TTL <= 0 {
			t.Fatalf("node %s: lease after the follower's expiry: %v %+v", s.NodeID(), err, st)
		}
	}
}
