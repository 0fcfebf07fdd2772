// Package accord is an embeddable, replicated, strongly consistent
// key-value store in the spirit of etcd: a Go service imports it and runs
// it in-process, with etcd's revisions, watches, transactions and leases,
// on top of hashicorp/raft.
//
// With zero Options, Open starts a single node: a one-voter raft cluster
// that elects itself. With Options.PeerAddr it listens for other members
// and can grow into a cluster (see Cluster below); the data model and its
// guarantees are the same either way.
//
//	s, err := accord.Open("/var/lib/myservice/accord", nil) // nil Options: defaults
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
//	if _, err := s.Put(ctx, "config/feature-x", []byte("on")); err != nil {
//		return err
//	}
//	resp, err := s.Get(ctx, "config/", accord.WithPrefix())
//
// # Data model
//
// The store is one ordered keyspace of string keys and []byte values with
// one global revision counter, as in etcd. An empty store is at revision 1;
// every write (Put, Delete, a writing Txn, a lease revocation that deletes
// keys) that changes something adds exactly 1, shared by all its changes. A
// write that changes nothing (deleting a missing key) leaves the revision
// alone. Every key carries CreateRevision, ModRevision, Version (1 on
// creation, +1 per change) and its Lease. The revision is not the raft log
// index.
//
// Old versions are kept, in memory, until Compact discards them: Get with
// WithRev reads the keyspace as it was at a revision, and Watch with
// WithRev replays changes since one. Below the compacted revision both
// fail with ErrCompacted; beyond the current one Get fails with
// ErrFutureRev. The store never compacts by itself: a service that writes
// continuously should call Compact now and then (etcd's
// --auto-compaction), or memory, snapshots and restarts grow without bound.
//
// # Consistency
//
// Writes go through the raft log. Put, Delete, Txn, Grant, Revoke and
// Compact return once the write is committed (on disk, see Durability) and
// applied to this node's state, so a later read sees it. If leadership is
// lost, the store shuts down or ctx ends after a write was handed to raft,
// its outcome is unknown and the call says so with ErrUnknownOutcome: read
// before retrying a write that is not idempotent.
//
// Reads are linearizable by default: Get (and a Txn that only reads)
// reflects every write acknowledged before it was called, anywhere in the
// cluster. A node serves them only as a leader whose own first entry of its
// term is applied; then, per read, it notes the commit index, confirms its
// leadership with a quorum (one confirmation serves every read that queued
// meanwhile), and waits until that index is applied. WithSerializable skips
// all of that and answers from local state: much faster, and on a follower
// possibly stale.
//
//	resp, err := s.Get(ctx, "config/feature-x", accord.WithSerializable())
//
// A transaction runs atomically at one revision. Compare with ModRevision
// for optimistic concurrency:
//
//	t, err := s.Txn(ctx).
//		If(accord.Compare(accord.ModRevision("counter"), "=", seenRev)).
//		Then(accord.OpPut("counter", []byte("2"))).
//		Else(accord.OpGet("counter")).
//		Commit()
//	// t.Succeeded reports which branch ran.
//
// # Lifecycle
//
// Open creates or reopens a data directory and starts the store. A store
// that is the only voter of its cluster (the default) is ready when Open
// returns: Open waits for it to elect itself and replay its log, so it
// holds every write it acknowledged before, and a Watch started now begins
// after them. Calls made while there is no ready leader wait for one
// within their ctx. Close stops the store promptly: calls in progress return
// ErrClosed (a write in flight ErrUnknownOutcome), watch channels close, and
// every goroutine, file and socket the store owns is released before Close
// returns. Close is idempotent; later calls on the store return ErrClosed.
// Closing is a restart, not a departure: Open on the same directory brings
// back every acknowledged write.
//
// Backup writes a consistent copy of a running store to an io.Writer;
// Restore turns such a copy into a new data directory for Open.
//
// # Concurrency
//
// Every Store method is safe for concurrent use; concurrent writes are
// batched into shared raft log appends and fsyncs, so throughput grows with
// the number of writers. A *Txn under construction is not safe for
// concurrent use. Every call that can block takes a ctx, and the ctx bounds
// the whole wait, including waiting for a leader (ErrNoLeader wrapping the
// ctx error). Values returned to the caller are copies: changing them does
// not change the store.
//
// Options.Logger (a *slog.Logger; nil means no logging) receives only what
// no caller sees as an error: leadership changes, lease expiry failures and
// other background events.
//
// # Watches
//
// Watch returns a channel of changes to a key, a prefix (WithPrefix) or a
// range. It never blocks, and the watch covers every write made after it
// returns; WithRev(r) starts at revision r instead, from history.
//
//	for resp := range s.Watch(ctx, "services/", accord.WithPrefix()) {
//		if resp.Err != nil {
//			break // e.g. ErrCompacted: resume from resp.CompactRevision
//		}
//		for _, ev := range resp.Events {
//			fmt.Println(ev.Type, ev.KV.Key, string(ev.KV.Value))
//		}
//	}
//
// Every revision arrives exactly once, in order, and whole: the events of
// one transaction are in one response. Applying the log never waits for a
// watcher: a consumer that falls behind is fed from retained history
// instead, and if that history is compacted before it catches up, the
// watch ends with a response whose Err is ErrCompacted and whose
// CompactRevision says where a new watch can resume. The channel closes
// when ctx ends or the store closes; cancel ctx to stop a watch you no
// longer read, or its goroutine lives until Close. WithPrevKV, WithFilterPut,
// WithFilterDelete and WithProgressNotify (an empty response every
// Options.WatchProgressNotifyInterval while idle) work as in etcd.
//
// # Leases
//
// A lease is a TTL that keys can be attached to (Put with WithLease); when
// it expires or is revoked, its keys are deleted together, in one revision.
// A process keeps its lease alive for as long as it runs:
//
//	id, err := s.Grant(ctx, 10*time.Second)
//	...
//	_, err = s.Put(ctx, "members/"+name, []byte(addr), accord.WithLease(id))
//	...
//	ka, err := s.KeepAlive(ctx, id) // renews every TTL/3 until ctx ends
//
// TTLs are raised to at least 1.5 election timeouts (1.5s by default), so
// that a lease survives a leader change, and are capped at MaxLeaseTTL.
// Expiry is decided by the leader's clock and goes through the log, so
// every member deletes the same keys at the same revision; keep-alives are
// not logged. A new leader, and a store that restarts, does not know how
// much time a lease had left and gives every lease its full TTL again from
// the moment it takes over: a lease may outlive its TTL across a
// leadership change or restart, but never expires early.
//
// # Cluster
//
// Each member has a peer listener (Options.PeerAddr; optionally mutual TLS
// with Options.PeerTLS) that carries both the raft stream and accord's own
// requests between members. A follower forwards writes, linearizable reads
// (it asks the leader for a read index, then reads locally once it has
// applied that far), lease renewals and membership changes to the leader,
// and retries with jittered backoff within ctx while there is no leader.
// WithSerializable reads are answered locally on any member. A write whose
// connection to the leader broke after it was sent reports
// ErrUnknownOutcome.
//
// With gossip (Options.GossipAddr, Join, BootstrapExpect), members find
// each other by serf: N nodes started with BootstrapExpect N bootstrap
// together once all are visible; a node that joins later is added by the
// leader as a non-voter and promoted once caught up and stable (up to
// MaxVoters); a member that leaves gracefully is removed at once, a failed
// one only after ReapTimeout and only if the rest keep a quorum. Clusters
// with different ClusterName never merge, GossipKey encrypts gossip, and
// with PeerTLS a host without a certificate from the cluster CA is never
// added.
//
// Membership also works as in etcd: AddMember(ctx, peerAddr, asLearner) on a
// running member registers the new node before it starts; the node then
// starts with Options.JoinExisting and Options.Peers, asks the members
// which ID it was added under, and catches up from the leader (by log or
// snapshot). RemoveMember, PromoteMember (learner to voter), UpdateMember
// (new peer address), TransferLeadership, Members and Status complete the
// set. Leave(ctx) decommissions a member; Close only stops it, and it
// rejoins on the next Open. A member that restarts on a new peer address
// tells the leader by itself.
//
// # Durability and data directory
//
// A write is acknowledged only after its raft log entry has been written
// and fsynced to raft-log/ (unless Options.UnsafeNoFsync, which is for
// tests and benchmarks only). The data directory holds:
//
//	accord.manifest  node ID, cluster name and format version
//	raft.db          raft's stable state: current term and vote (bbolt)
//	raft-log/        the raft log: segment files, one fdatasync per batch
//	snapshots/       raft snapshots of the whole keyspace and lease table
//
// A snapshot is taken when SnapshotThreshold entries (default 8192) have
// accumulated, checked about every SnapshotInterval (30s); TrailingLogs entries
// (10240) stay in the log after it and SnapshotRetain snapshots (2) on disk.
// On Open the state is rebuilt from the newest snapshot plus the log after
// it, in memory.
//
// Open checks the whole directory before anything starts. It refuses,
// without changing anything, a directory that is damaged (ErrCorrupt, as a
// *CorruptError naming the file and the problem), one that belongs to
// another node or cluster or was written by a newer format (ErrForeignDir),
// or one that another Store has open (ErrInUse, after waiting up to a
// second for the lock). It never starts silently with fewer
// acknowledged writes than the directory held.
//
// # Typed configuration and discovery
//
// BindVar binds a Var[T] to a key: a value decoded with a Codec (JSON by
// default) and kept current by a watch. Load never blocks, takes no lock
// and does not allocate, so it can be called on every request; Snapshot
// adds the value's revision and error state, and its Changed channel tells
// when a newer value arrives. A version that does not decode keeps the last
// good value and is reported as a *DecodeError. Set writes through the
// store and returns once Load reflects the write; CompareAndSet writes only
// if nothing changed since a revision, failing with ErrConflict otherwise.
// BindPrefixVar binds a whole prefix to a map.
//
//	cfg, err := accord.BindVar[Config](ctx, s, "config/app", nil)
//	...
//	if cfg.Load().Checkout { ... }
//
// Package github.com/accordkv/accord/discovery registers service instances
// under a prefix with leases kept alive in the background, and resolves
// them into a live list that says when it is stale (no quorum).
//
// # Monitoring
//
// Status reports this member's view of the cluster; Metrics returns its
// counters and gauges (raft indexes and leadership, proposals, forwarded
// writes, snapshot and WAL fsync latency histograms, keys, watchers,
// leases, gossip members) as a plain struct, recorded with atomics on the
// write path. The library imports no metrics library and registers
// nothing anywhere; it never sets go-metrics' global sink, through which
// raft, serf and memberlist emit (that global stays the embedding
// service's). Module github.com/accordkv/accord/metrics puts Metrics on a
// prometheus.Registerer the caller passes.
package accord
