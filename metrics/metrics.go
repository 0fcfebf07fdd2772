// Package metrics exposes an accord Store's metrics (accord.Store.Metrics)
// to Prometheus, on a registry the caller passes: nothing is ever
// registered on prometheus.DefaultRegisterer, so a service can run several
// stores in one process, or import a library that also uses accord,
// without a duplicate registration panicking at start (as embedded etcd's
// global metrics do).
//
//	reg := prometheus.NewRegistry()
//	if _, err := metrics.Register(reg, store, nil); err != nil {
//		return err
//	}
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It is a module of its own (github.com/accordkv/accord/metrics), so that
// the library's build list stays free of Prometheus.
//
// Every name starts with accord_. Values are read from Store.Metrics once
// per scrape; the Store records them with atomics as it works, so a scrape
// costs the store nothing in between. The metrics and their meaning:
//
//	accord_raft_term                          gauge    Metrics.Term
//	accord_raft_commit_index                  gauge    Metrics.CommitIndex
//	accord_raft_applied_index                 gauge    Metrics.AppliedIndex
//	accord_has_leader                         gauge    1 if Metrics.HasLeader
//	accord_is_leader                          gauge    1 if Metrics.IsLeader
//	accord_leader_changes_seen_total          counter  Metrics.LeaderChanges
//	accord_proposals_pending                  gauge    Metrics.ProposalsPending
//	accord_proposals_committed_total          counter  Metrics.ProposalsCommitted
//	accord_proposals_failed_total             counter  Metrics.ProposalsFailed
//	accord_proposals_applied_total            counter  Metrics.ProposalsApplied
//	accord_forwarded_writes_total{outcome}    counter  Metrics.Forwarded: committed, refused, unreachable, unknown
//	accord_snapshot_save_duration_seconds     histogram Metrics.SnapshotSave
//	accord_snapshot_restore_duration_seconds  histogram Metrics.SnapshotRestore
//	accord_wal_fsync_duration_seconds         histogram Metrics.WALFsync
//	accord_revision                           gauge    Metrics.Revision
//	accord_compact_revision                   gauge    Metrics.CompactRevision
//	accord_keys                               gauge    Metrics.Keys
//	accord_keyspace_size_bytes                gauge    Metrics.SizeBytes
//	accord_watchers                           gauge    Metrics.Watchers
//	accord_leases                             gauge    Metrics.Leases
//	accord_gossip_members{status}             gauge    Metrics.Gossip: alive, leaving, left, failed
//
// The accord.Metrics field comments say exactly what each one counts and
// when it moves.
package metrics

import (
	"errors"
	"fmt"
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/accordkv/accord"
)

// Options configures Register. The zero value (or nil) adds no labels.
type Options struct {
	// ConstLabels are added to every metric, for example
	// {"member": store.NodeID()} to register several stores of one process
	// on one registry. The names "outcome" and "status" are taken by
	// accord's own labels. Default nil: none.
	ConstLabels map[string]string
}

// Register registers the metrics of s on reg. It returns the collector it
// registered, so that the caller can reg.Unregister it (for example before
// registering a store reopened on the same registry). Each store can be
// registered once per registry unless their Options.ConstLabels tell them
// apart: a second registration returns an error wrapping
// prometheus.AlreadyRegisteredError (it never panics). A label name that
// Prometheus does not accept is an error too. Register does not block;
// the collector reads s.Metrics on every scrape, also after s is closed
// (then reporting its final counters).
func Register(reg prometheus.Registerer, s *accord.Store, opts *Options) (prometheus.Collector, error) {
	if reg == nil {
		return nil, errors.New("accord/metrics: register: nil Registerer")
	}
	if s == nil {
		return nil, errors.New("accord/metrics: register: nil Store")
	}
	var labels prometheus.Labels
	if opts != nil && len(opts.ConstLabels) > 0 {
		labels = maps.Clone(opts.ConstLabels)
	}
	c := newCollector(s, labels)
	if err := reg.Register(c); err != nil {
		if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
			return nil, fmt.Errorf("accord/metrics: register store %s: accord's metrics with these const labels are already registered on this registry (give each store its own Options.ConstLabels): %w", s.NodeID(), err)
		}
		return nil, fmt.Errorf("accord/metrics: register store %s: %w", s.NodeID(), err)
	}
	return c, nil
}

// collector is a prometheus.Collector over one Store. Collect may run
// concurrently (Prometheus' Gather calls it from several goroutines, and
// several registries may scrape at once); it only reads s.Metrics.
type collector struct {
	s *accord.Store

	term, commitIndex, appliedIndex, hasLeader, isLeader, leaderChanges *prometheus.Desc
	pending, committed, failed, applied, forwarded                      *prometheus.Desc
	snapSave, snapRestore, walFsync                                     *prometheus.Desc
	revision, compactRevision, keys, size, watchers, leases, gossip     *prometheus.Desc
}

func newCollector(s *accord.Store, labels prometheus.Labels) *collector {
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("accord_"+name, help, variable, labels)
	}
	return &collector{
		s:               s,
		term:            d("raft_term", "The raft term this member knows."),
		commitIndex:     d("raft_commit_index", "Index of the last raft log entry this member knows to be committed."),
		appliedIndex:    d("raft_applied_index", "Index of the last raft log entry this member's state machine applied."),
		hasLeader:       d("has_leader", "1 if this member knows a leader, 0 otherwise."),
		isLeader:        d("is_leader", "1 if this member is the raft leader, 0 otherwise."),
		leaderChanges:   d("leader_changes_seen_total", "Times this member saw a new leader."),
		pending:         d("proposals_pending", "Writes proposed through this member that wait for their outcome."),
		committed:       d("proposals_committed_total", "Writes proposed through this member that were committed to the log."),
		failed:          d("proposals_failed_total", "Writes proposed through this member that ended without a known commit (no leader, closed, full disk, unknown outcome)."),
		applied:         d("proposals_applied_total", "Command entries this member's state machine applied, proposed by any member."),
		forwarded:       d("forwarded_writes_total", "Attempts of this follower to hand a write to the leader, by outcome.", "outcome"),
		snapSave:        d("snapshot_save_duration_seconds", "Time taken to save a raft snapshot of this member's state, until synced."),
		snapRestore:     d("snapshot_restore_duration_seconds", "Time taken to restore a snapshot into this member's state machine."),
		walFsync:        d("wal_fsync_duration_seconds", "Latency of the fdatasync calls that make raft log appends durable."),
		revision:        d("revision", "The current revision of this member's keyspace."),
		compactRevision: d("compact_revision", "The revision below which this member's history is compacted."),
		keys:            d("keys", "Keys that exist at the current revision."),
		size:            d("keyspace_size_bytes", "Approximate memory the keyspace holds, retained history included."),
		watchers:        d("watchers", "Watches open on this member."),
		leases:          d("leases", "Leases that exist."),
		gossip:          d("gossip_members", "Members of this cluster that gossip knows, by status.", "status"),
	}
}

func (c *collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.term, c.commitIndex, c.appliedIndex, c.hasLeader, c.isLeader, c.leaderChanges,
		c.pending, c.committed, c.failed, c.applied, c.forwarded,
		c.snapSave, c.snapRestore, c.walFsync,
		c.revision, c.compactRevision, c.keys, c.size, c.watchers, c.leases, c.gossip,
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Store.Metrics reading per
// call.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.Metrics()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.term, float64(m.Term))
	gauge(c.commitIndex, float64(m.CommitIndex))
	gauge(c.appliedIndex, float64(m.AppliedIndex))
	gauge(c.hasLeader, bool01(m.HasLeader))
	gauge(c.isLeader, bool01(m.IsLeader))
	counter(c.leaderChanges, m.LeaderChanges)
	gauge(c.pending, float64(m.ProposalsPending))
	counter(c.committed, m.ProposalsCommitted)
	counter(c.failed, m.ProposalsFailed)
	counter(c.applied, m.ProposalsApplied)
	counter(c.forwarded, m.Forwarded.Committed, "committed")
	counter(c.forwarded, m.Forwarded.Refused, "refused")
	counter(c.forwarded, m.Forwarded.Unreachable, "unreachable")
	counter(c.forwarded, m.Forwarded.Unknown, "unknown")
	ch <- histogram(c.snapSave, &m.SnapshotSave)
	ch <- histogram(c.snapRestore, &m.SnapshotRestore)
	ch <- histogram(c.walFsync, &m.WALFsync)
	gauge(c.revision, float64(m.Revision))
	gauge(c.compactRevision, float64(m.CompactRevision))
	gauge(c.keys, float64(m.Keys))
	gauge(c.size, float64(m.SizeBytes))
	gauge(c.watchers, float64(m.Watchers))
	gauge(c.leases, float64(m.Leases))
	gauge(c.gossip, float64(m.Gossip.Alive), "alive")
	gauge(c.gossip, float64(m.Gossip.Leaving), "leaving")
	gauge(c.gossip, float64(m.Gossip.Left), "left")
	gauge(c.gossip, float64(m.Gossip.Failed), "failed")
}

// histogram converts an accord.Histogram (per-bucket counts, durations) to
// a Prometheus one (cumulative counts, seconds). The count is the sum of
// the buckets, so the +Inf bucket always equals it.
func histogram(d *prometheus.Desc, h *accord.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
