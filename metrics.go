package accord

import (
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// Metrics is a reading of a Store's counters and gauges, for whatever
// monitoring system the embedding service uses; package
// github.com/accordkv/accord/metrics (a module of its own) exposes it to
// Prometheus. The library itself registers nothing anywhere and imports no
// metrics library.
//
// Counters (the fields whose comment says "counts") start at zero when
// Open starts the store and only grow until Close; they are not kept
// across restarts. Gauges are the value at the time of the call.
type Metrics struct {
	// HasLeader reports whether this member knows a leader (itself or
	// another member).
	HasLeader bool
	// IsLeader reports whether raft on this member is in the leader state.
	// It turns true with the election, a moment before the leader serves
	// linearizable reads (once its first entry of the term is applied).
	IsLeader bool
	// Term is the raft term as this member knows it.
	Term uint64
	// LeaderChanges counts the times this member saw a new leader: raft
	// named a leader other than the one it named before, after an
	// election or when this member first heard from one (etcd's
	// leader_changes_seen_total). Losing sight of a leader alone does not
	// count; A, then none, then A again counts twice.
	LeaderChanges uint64

	// CommitIndex is the index of the last raft log entry this member
	// knows to be committed.
	CommitIndex uint64
	// AppliedIndex is the index of the last log entry this member's state
	// machine has applied (as Status reports it). raft's own no-op and
	// barrier entries are not handed to the state machine, so it can stay
	// a few entries below CommitIndex while the cluster is idle; a gap
	// that keeps growing means applying falls behind.
	AppliedIndex uint64

	// ProposalsPending is the number of writes (Put, Delete, writing Txn,
	// Compact, lease Grant and Revoke, and the leader's own lease expiries)
	// proposed through this member that are waiting for their outcome now:
	// in raft on the leader, or forwarded to it from a follower. Each write
	// counts (here and in the two counters below) on the member it was
	// called on, not again on the leader a follower forwards it to.
	ProposalsPending int64
	// ProposalsCommitted counts writes proposed through this member that
	// were committed to the log and applied. A write that committed but
	// failed as a command (ErrLeaseNotFound, say) counts here too: it is
	// in the log.
	ProposalsCommitted uint64
	// ProposalsFailed counts writes proposed through this member that ended
	// without a known commit: no leader within ctx, the store closing, a
	// full disk, and ErrUnknownOutcome (which may still have committed).
	// Calls refused before proposing (ErrInvalidArgument,
	// ErrRequestTooLarge, ErrClosed before the call began) count nowhere.
	ProposalsFailed uint64
	// ProposalsApplied counts the command entries this member's state
	// machine applied, whichever member proposed them, including those
	// replayed from the log when Open starts the store.
	ProposalsApplied uint64

	// Forwarded counts the attempts of this member, as a follower, to hand
	// a write to the leader, by outcome. One write can take several
	// attempts (a refused or unreachable one is retried).
	Forwarded ForwardedWrites

	// SnapshotSave is the time raft snapshots of this member's state took,
	// from capturing the state to the snapshot file being synced and in
	// place. Its Count is the number of snapshots taken (failed ones are
	// not recorded).
	SnapshotSave Histogram
	// SnapshotRestore is the time restoring a snapshot into the state
	// machine took: one received from the leader (a member too far behind
	// for the log). Its Count is the number of snapshots installed. Open
	// restores none: the state is kv.db, read in place.
	SnapshotRestore Histogram
	// WALFsync is the latency of the fdatasync calls that make raft log
	// appends durable (one per batch of entries, plus one per new segment
	// file), as etcd's wal_fsync_duration_seconds. Nothing is recorded with
	// Options.UnsafeNoFsync.
	WALFsync Histogram

	// Revision and CompactRevision are the keyspace's current and
	// compacted revisions on this member (as Status reports them).
	Revision        int64
	CompactRevision int64
	// Keys is the number of keys that exist at the current revision
	// (deleted keys whose history is still retained are not counted).
	Keys int64
	// SizeBytes is the size of this member's kv.db, every retained
	// version included (Status.DBSize, etcd's db total size). It moves
	// when a batch is committed (about every 100 ms under writes), in
	// whole pages.
	SizeBytes int64
	// Watchers is the number of watches open on this member (Watch calls
	// whose channel has not closed yet).
	Watchers int
	// Leases is the number of leases that exist (granted, not yet revoked
	// or expired).
	Leases int

	// Gossip counts the members of this cluster that gossip knows, this
	// one included, by status. All zero without Options.GossipAddr, and
	// after Close.
	Gossip GossipMembers
}

// ForwardedWrites counts forwarding attempts by outcome (Metrics.Forwarded).
type ForwardedWrites struct {
	// Committed: the leader answered with the outcome of the command; it
	// is in the log (it may still have failed as a command).
	Committed uint64
	// Refused: the leader answered without proposing (it was no longer
	// the leader, had no room on disk, ...). Not-leader answers are
	// retried, toward the new leader.
	Refused uint64
	// Unreachable: no connection to the leader could be made, so nothing
	// was sent; retried.
	Unreachable uint64
	// Unknown: the request was sent but no answer came (the connection
	// broke, ctx ended), or the leader lost leadership with the command in
	// flight; the call returns ErrUnknownOutcome.
	Unknown uint64
}

// GossipMembers counts gossip members by status (Metrics.Gossip), as serf
// reports them: Alive, Leaving (announced its departure, not yet gone),
// Left (departed gracefully) and Failed (stopped answering probes). Left and
// failed members stay counted until gossip reaps them.
type GossipMembers struct {
	Alive, Leaving, Left, Failed int
}

// Histogram is a distribution of durations in fixed buckets, shaped so that
// it converts directly to a Prometheus or OpenTelemetry histogram.
type Histogram struct {
	// Bounds are the buckets' inclusive upper bounds, ascending. The same
	// for every reading of the same metric.
	Bounds []time.Duration
	// Counts holds the number of observations per bucket, not
	// cumulative: Counts[i] those at most Bounds[i] and above Bounds[i-1];
	// the last one, Counts[len(Bounds)], those above the last bound.
	// Prometheus' buckets are the running sums of these.
	Counts []uint64
	// Count is the number of observations: the sum of Counts.
	Count uint64
	// Sum is the sum of the observed durations. Read a moment apart from
	// the counts, it can lag them by the observations made meanwhile.
	Sum time.Duration
}

// Bucket bounds, as etcd's: WAL fsync in 14 doubling buckets from 1 ms to
// 8.192 s (etcd_disk_wal_fsync_duration_seconds). Snapshots from 1 ms to
// 65.5 s in 17: accord's snapshots are an in-memory keyspace written out,
// milliseconds for a configuration store, minutes only for gigabytes
// (etcd's backend_snapshot_duration_seconds spans 10 ms to 655 s).
var (
	walFsyncBounds = exponentialBounds(time.Millisecond, 14)
	snapshotBounds = exponentialBounds(time.Millisecond, 17)
)

// exponentialBounds returns n bounds doubling from start.
func exponentialBounds(start time.Duration, n int) []time.Duration {
	b := make([]time.Duration, n)
	for i := range b {
		b[i] = start << i
	}
	return b
}

// histogram records durations for a Histogram without locks or allocation:
// one atomic add per bucket hit and one for the sum.
type histogram struct {
	bounds []time.Duration // shared and never modified
	counts []atomic.Uint64 // len(bounds)+1
	sum    atomic.Int64    // nanoseconds
}

func newHistogram(bounds []time.Duration) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// observe records d. Safe for concurrent use.
func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// read returns a copy of the distribution recorded so far.
func (h *histogram) read() Histogram {
	out := Histogram{Bounds: slices.Clone(h.bounds), Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// storeMetrics are the Store's own counters, recorded where things happen
// (propose, forward, raft's observer, the WAL); the FSM keeps its own
// (fsmMetrics). All atomics: the write path never takes a lock for them.
type storeMetrics struct {
	leaderChanges atomic.Uint64

	pending   atomic.Int64
	committed atomic.Uint64
	failed    atomic.Uint64

	fwdCommitted   atomic.Uint64
	fwdRefused     atomic.Uint64
	fwdUnreachable atomic.Uint64
	fwdUnknown     atomic.Uint64

	walFsync *histogram
}

func newStoreMetrics() *storeMetrics {
	return &storeMetrics{walFsync: newHistogram(walFsyncBounds)}
}

// proposalDone records the end of a proposal; committed reports that its
// command is known to be in the log.
func (m *storeMetrics) proposalDone(committed bool) {
	m.pending.Add(-1)
	if committed {
		m.committed.Add(1)
	} else {
		m.failed.Add(1)
	}
}

// forwarded records the outcome of one forwarding attempt, classified as
// forward classifies its result.
func (m *storeMetrics) forwarded(res *applyResult, err error, retry bool) {
	switch {
	case res != nil:
		m.fwdCommitted.Add(1)
	case errors.Is(err, errNotSent):
		m.fwdUnreachable.Add(1)
	case retry:
		m.fwdRefused.Add(1)
	case errors.Is(err, ErrUnknownOutcome):
		m.fwdUnknown.Add(1)
	default:
		m.fwdRefused.Add(1)
	}
}

// leaderObserver counts leader changes inside raft's observer filter,
// which raft calls synchronously for every observation: with no channel
// raft delivers nothing, so no goroutine or buffer is needed, and the
// filter only does an atomic add.
func (m *storeMetrics) leaderObserver() *raft.Observer {
	return raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
			m.leaderChanges.Add(1)
		}
		return false
	})
}

// fsmMetrics are the FSM's counters.
type fsmMetrics struct {
	applied     atomic.Uint64 // command entries applied
	leases      atomic.Int64  // len(fsm.leases.m), set under fsm.mu
	snapSave    *histogram
	snapRestore *histogram
}

func newFSMMetrics() fsmMetrics {
	return fsmMetrics{snapSave: newHistogram(snapshotBounds), snapRestore: newHistogram(snapshotBounds)}
}

// Metrics returns a reading of this member's metrics (see Metrics for what
// each field counts). It never waits for raft, the network or another
// member: the counters are atomics, and the gauges take the keyspace's and
// the watch hub's locks as a serializable read does. Safe for concurrent
// use, and after Close (the counters keep their final values).
func (s *Store) Metrics() Metrics {
	_, leader := s.leader()
	rev, compacted := s.ks.Revs()
	keys, size := s.ks.Stats()
	m := Metrics{
		HasLeader:     leader != "",
		IsLeader:      s.raft.State() == raft.Leader,
		Term:          s.raft.CurrentTerm(),
		LeaderChanges: s.metrics.leaderChanges.Load(),

		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.fsm.applied.load(),

		ProposalsPending:   s.metrics.pending.Load(),
		ProposalsCommitted: s.metrics.committed.Load(),
		ProposalsFailed:    s.metrics.failed.Load(),
		ProposalsApplied:   s.fsm.metrics.applied.Load(),

		Forwarded: ForwardedWrites{
			Committed:   s.metrics.fwdCommitted.Load(),
			Refused:     s.metrics.fwdRefused.Load(),
			Unreachable: s.metrics.fwdUnreachable.Load(),
			Unknown:     s.metrics.fwdUnknown.Load(),
		},

		SnapshotSave:    s.fsm.metrics.snapSave.read(),
		SnapshotRestore: s.fsm.metrics.snapRestore.read(),
		WALFsync:        s.metrics.walFsync.read(),

		Revision:        rev,
		CompactRevision: compacted,
		Keys:            keys,
		SizeBytes:       size,
		Watchers:        s.hub.count(),
		Leases:          int(s.fsm.metrics.leases.Load()),
	}
	if s.gossip != nil && !s.isClosed() {
		for _, gm := range s.gossip.members() {
			switch gm.Status {
			case serf.StatusAlive:
				m.Gossip.Alive++
			case serf.StatusLeaving:
				m.Gossip.Leaving++
			case serf.StatusLeft:
				m.Gossip.Left++
			case serf.StatusFailed:
				m.Gossip.Failed++
			}
		}
	}
	return m
}
