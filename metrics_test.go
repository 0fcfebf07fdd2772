package accord

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	armonmetrics "github.com/armon/go-metrics"
	hashimetrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/serf/serf"
)

func TestHistogramBuckets(t *testing.T) {
	h := newHistogram(exponentialBounds(time.Millisecond, 3)) // 1, 2, 4 ms, then +Inf
	for _, d := range []time.Duration{0, time.Millisecond, time.Millisecond + 1, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, time.Hour} {
		h.observe(d)
	}
	got := h.read()
	want := []uint64{2, 2, 2, 1} // <=1ms: 0, 1ms; <=2ms: 1ms+1ns, 2ms; <=4ms: 3ms, 4ms; above: 1h
	if fmt.Sprint(got.Counts) != fmt.Sprint(want) || got.Count != 7 {
		t.Fatalf("counts %v (count %d), want %v (7)", got.Counts, got.Count, want)
	}
	if wantSum := time.Hour + 11*time.Millisecond + 1; got.Sum != wantSum {
		t.Fatalf("sum %v, want %v", got.Sum, wantSum)
	}
	if fmt.Sprint(got.Bounds) != "[1ms 2ms 4ms]" {
		t.Fatalf("bounds %v", got.Bounds)
	}
	// A reading is a copy.
	got.Counts[0], got.Bounds[0] = 99, time.Minute
	if again := h.read(); again.Counts[0] != 2 || again.Bounds[0] != time.Millisecond {
		t.Fatalf("changing a reading changed the histogram: %+v", again)
	}
	if n := testing.AllocsPerRun(1000, func() { h.observe(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("observe allocates %v times", n)
	}
	if b := walFsyncBounds; len(b) != 14 || b[0] != time.Millisecond || b[13] != 8192*time.Millisecond {
		t.Fatalf("WAL fsync bounds %v, want etcd's 1ms..8.192s in 14", b)
	}
}

// The counters move with the writes, reads, watches and leases that cause
// them, on a store that fsyncs.
func TestMetricsSingleNode(t *testing.T) {
	dir := t.TempDir()
	o := &Options{ElectionTimeout: 50 * time.Millisecond}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	m0 := s.Metrics()
	if !m0.HasLeader || !m0.IsLeader || m0.Term == 0 || m0.LeaderChanges == 0 {
		t.Fatalf("a single node after Open: %+v", m0)
	}
	if m0.CommitIndex == 0 || m0.AppliedIndex == 0 || m0.AppliedIndex > m0.CommitIndex {
		t.Fatalf("indexes: commit %d, applied %d", m0.CommitIndex, m0.AppliedIndex)
	}
	if m0.WALFsync.Count == 0 {
		t.Fatalf("no WAL fsync recorded while bootstrapping: %+v", m0.WALFsync)
	}

	wctx, wcancel := context.WithCancel(ctx)
	events := s.Watch(wctx, "k", WithPrefix())
	for i := range 5 {
		if _, err := s.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "k0", []byte("again")); err != nil { // not a new key
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "k4"); err != nil {
		t.Fatal(err)
	}
	lease, err := s.Grant(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "leased", nil, WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	// Committed, but failed as a command: counts as committed.
	if _, err := s.Put(ctx, "x", nil, WithLease(lease+1)); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with a missing lease: %v", err)
	}
	// Never proposed for lack of time: failed.
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.Put(expired, "late", nil); err == nil {
		t.Fatal("a put with an expired deadline succeeded")
	}
	// Refused by the argument checks: counts nowhere.
	if _, err := s.Put(ctx, "big", make([]byte, 2<<20)); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("oversized put: %v", err)
	}

	m := s.Metrics()
	if got, want := m.ProposalsCommitted-m0.ProposalsCommitted, uint64(10); got != want {
		t.Errorf("ProposalsCommitted moved by %d, want %d (6 puts, 1 delete, 1 grant, 1 leased put, 1 failed command)", got, want)
	}
	if got := m.ProposalsFailed - m0.ProposalsFailed; got != 1 {
		t.Errorf("ProposalsFailed moved by %d, want 1", got)
	}
	if got := m.ProposalsApplied - m0.ProposalsApplied; got < 10 {
		t.Errorf("ProposalsApplied moved by %d, want >= 10", got)
	}
	if m.ProposalsPending != 0 {
		t.Errorf("ProposalsPending %d with nothing in flight", m.ProposalsPending)
	}
	if m.WALFsync.Count-m0.WALFsync.Count < 10 {
		t.Errorf("WAL fsyncs moved by %d over 10 sequential writes", m.WALFsync.Count-m0.WALFsync.Count)
	}
	if m.WALFsync.Sum <= m0.WALFsync.Sum {
		t.Errorf("WAL fsync time did not grow: %v -> %v", m0.WALFsync.Sum, m.WALFsync.Sum)
	}
	if m.Keys != 5 { // k0..k3 and leased
		t.Errorf("Keys %d, want 5", m.Keys)
	}
	if m.Leases != 1 || m.Watchers != 1 {
		t.Errorf("Leases %d, Watchers %d; want 1 and 1", m.Leases, m.Watchers)
	}
	if st, err := s.Status(ctx); err != nil || m.SizeBytes <= 0 || m.SizeBytes != st.DBSize || m.Revision != s.Revision() {
		t.Errorf("size %d (status %+v, %v), revision %d (store at %d)", m.SizeBytes, st, err, m.Revision, s.Revision())
	}
	if m.Gossip != (GossipMembers{}) || m.Forwarded != (ForwardedWrites{}) {
		t.Errorf("a lone node without gossip: gossip %+v, forwarded %+v", m.Gossip, m.Forwarded)
	}

	// Revoking deletes the leased key; the watch ends with its ctx.
	if err := s.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	wcancel()
	for range events {
	}
	eventually(t, 5*time.Second, "the watcher goes", func() error {
		if m := s.Metrics(); m.Watchers != 0 || m.Leases != 0 || m.Keys != 4 {
			return fmt.Errorf("watchers %d, leases %d, keys %d; want 0, 0, 4", m.Watchers, m.Leases, m.Keys)
		}
		return nil
	})

	// A snapshot is timed when taken. Open restores none: the state is
	// kv.db, read in place.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if m := s.Metrics(); m.SnapshotSave.Count != 1 || m.SnapshotSave.Sum <= 0 || m.SnapshotRestore.Count != 0 {
		t.Fatalf("after one snapshot: save %+v, restore %+v", m.SnapshotSave, m.SnapshotRestore)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	final := s.Metrics() // after Close: the last counters
	if final.ProposalsCommitted != m.ProposalsCommitted+1 || final.IsLeader {
		t.Errorf("after Close: committed %d (want %d), leader %v", final.ProposalsCommitted, m.ProposalsCommitted+1, final.IsLeader)
	}

	s = openTestStore(t, dir, o)
	m = s.Metrics()
	if m.SnapshotRestore.Count != 0 || m.SnapshotSave.Count != 0 || m.ProposalsCommitted != 0 {
		t.Fatalf("after reopening: restore %+v, save %+v, committed %d", m.SnapshotRestore, m.SnapshotSave, m.ProposalsCommitted)
	}
	if m.Keys != 4 || m.Leases != 0 {
		t.Fatalf("after restoring the snapshot: keys %d, leases %d; want 4, 0", m.Keys, m.Leases)
	}
}

func TestMetricsNoFsyncRecordsNone(t *testing.T) {
	s := openTestStore(t, "", nil) // UnsafeNoFsync
	if _, err := s.Put(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	if m := s.Metrics(); m.WALFsync.Count != 0 || len(m.WALFsync.Counts) != len(walFsyncBounds)+1 {
		t.Fatalf("WAL fsync without fsync: %+v", m.WALFsync)
	}
}

func TestMetricsForwardOutcome(t *testing.T) {
	m := newStoreMetrics()
	for _, c := range []struct {
		res   *applyResult
		err   error
		retry bool
	}{
		{&applyResult{rev: 2}, nil, false},                                   // committed
		{&applyResult{rev: 2}, ErrLeaseNotFound, false},                      // committed, failed as a command
		{nil, fmt.Errorf("%w: dial: refused", errNotSent), true},             // unreachable
		{nil, &NotLeaderError{LeaderID: "b"}, true},                          // refused
		{nil, ErrNoSpace, false},                                             // refused
		{nil, fmt.Errorf("%w (connection reset)", ErrUnknownOutcome), false}, // unknown
	} {
		m.forwarded(c.res, c.err, c.retry)
	}
	if got := [4]uint64{m.fwdCommitted.Load(), m.fwdRefused.Load(), m.fwdUnreachable.Load(), m.fwdUnknown.Load()}; got != [4]uint64{2, 2, 1, 1} {
		t.Fatalf("committed, refused, unreachable, unknown = %v, want [2 2 1 1]", got)
	}
}

// Followers forward and count it; every member counts leader changes and
// gossip members by status.
func TestMetricsCluster(t *testing.T) {
	c := newGossipCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ln := c.leader()
	fs := c.followersOf(ln)
	eventually(t, 10*time.Second, "every member sees three alive", func() error {
		for _, nd := range c.running() {
			if g := nd.store().Metrics().Gossip; g != (GossipMembers{Alive: 3}) {
				return fmt.Errorf("node %d: %+v", nd.idx, g)
			}
		}
		return nil
	})
	f := fs[0].store()
	before := f.Metrics()
	for i := range 3 {
		if _, err := putSettled(ctx, f, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	fm := f.Metrics()
	if got := fm.Forwarded.Committed - before.Forwarded.Committed; got < 3 {
		t.Errorf("follower forwarded %d committed writes, want >= 3 (%+v)", got, fm.Forwarded)
	}
	if got := fm.ProposalsCommitted - before.ProposalsCommitted; got < 3 {
		t.Errorf("follower's ProposalsCommitted moved by %d, want >= 3", got)
	}
	c.waitConverged()
	for _, nd := range c.running() {
		m := nd.store().Metrics()
		if m.LeaderChanges == 0 || !m.HasLeader || m.IsLeader != (nd == ln) || m.Keys != 3 {
			t.Errorf("node %d: leader changes %d, has leader %v, is leader %v, keys %d", nd.idx, m.LeaderChanges, m.HasLeader, m.IsLeader, m.Keys)
		}
	}
	if lm := ln.store().Metrics(); lm.Forwarded != (ForwardedWrites{}) {
		t.Errorf("the leader forwarded: %+v", lm.Forwarded)
	}

	// A member that leaves gossip is counted as left (or leaving, first).
	if err := fs[1].store().gossip.serf.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the leader sees the member leave", func() error {
		if g := ln.store().Metrics().Gossip; g != (GossipMembers{Alive: 2, Left: 1}) {
			return fmt.Errorf("%+v", g)
		}
		return nil
	})
	if m, ok := gossipMember(ln.store(), fs[1].store().NodeID()); !ok || m.Status != serf.StatusLeft {
		t.Fatalf("serf says %v (known %v)", m.Status, ok)
	}
}

// raft, serf, memberlist and raft-boltdb emit through go-metrics' global
// sink (armon/go-metrics by default, hashicorp/go-metrics with the
// hashicorpmetrics build tag; both start as a blackhole). Nothing in
// accord may point it anywhere: the embedding service owns that global.
func TestGoMetricsGlobalSinkUntouched(t *testing.T) {
	armon, hashi := armonmetrics.Default(), hashimetrics.Default()
	c := newGossipCluster(t, 2, func(i int, o *Options) { o.UnsafeNoFsync = false })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, nd := range c.running() {
		if _, err := putSettled(ctx, nd.store(), "k", []byte(nd.opts.NodeName)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.leader().store().raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.stopAll()
	if armonmetrics.Default() != armon || hashimetrics.Default() != hashi {
		t.Fatal("the go-metrics global was replaced")
	}
}
