package accord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/logbridge"
	"github.com/accordkv/accord/internal/raftlog"
	"github.com/accordkv/accord/internal/wire"
)

// Store is one member of an accord cluster: a replicated, linearizable,
// multi-version key-value store. All methods are safe for concurrent use.
// Create one with Open; release it with Close.
type Store struct {
	opts Options // filled copy; read-only after Open
	log  *slog.Logger
	id   string

	raft   *raft.Raft
	logs   *raftlog.Log
	stores *raftStore     // logs as raft uses them (datadir.go)
	trans  raft.Transport // raft's transport: the peer listener's, or in-memory for a lone node
	peer   *peerTransport // nil without Options.PeerAddr
	gossip *gossip        // nil without Options.GossipAddr (membership.go)
	addr   string         // this node's raft address (advertised peer address)
	fsm    *fsm
	ks     *keyspace
	hub    *watchHub
	lessor *lessor

	metrics *storeMetrics // Metrics' counters; the FSM's are in fsm.metrics

	stop chan struct{} // closed by Close: every loop and waiter ends
	wg   sync.WaitGroup

	disk        *diskGuard
	removed     chan struct{} // closed when the cluster removed this member
	removedOnce sync.Once

	// closeMu is held for reading while starting a goroutine on s.wg and
	// for writing while setting closed, so that no goroutine starts once
	// Close is waiting for them.
	closeMu   sync.RWMutex
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// Leadership readiness: this node serves linearizable reads and
	// proposes only once its own no-op entry of the current term has been
	// applied (so every entry of earlier terms is applied too).
	readyTerm atomic.Uint64 // term in which this node became a ready leader
	readyMu   sync.Mutex    // guards readyCh
	readyCh   chan struct{} // closed and replaced whenever readiness changes
	fastElect bool          // single voter: heartbeat timeout lowered until first leadership
	readMu    sync.Mutex    // guards readBatch
	readBatch *readBatch    // linearizable reads waiting for the next leadership check
	readKick  chan struct{} // cap 1: the read loop has work
}

// Open opens (creating if needed) the data directory dir and starts the
// store. With nil or zero Options it runs a single node that elected itself
// leader. Open refuses, without changing anything, a directory that is
// damaged (ErrCorrupt, with the file and the reason), belongs to another
// node or cluster or to a newer format (ErrForeignDir), or is in use by
// another Store. A store that is the only voter of its cluster (the
// default) is ready when Open returns: Open waits for it to elect itself
// and replay its log (about half an ElectionTimeout; bounded, and logged
// if it takes longer). Calls made while there is no ready leader wait for
// one within their ctx.
func Open(dir string, opts *Options) (s *Store, err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("accord: open: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("accord: open: %w", err)
	}
	// The peer listener first: a port in use fails Open before anything
	// else, and a node joining an existing cluster needs it to ask the
	// members which ID it was added under.
	var peer *peerTransport
	if o.PeerAddr != "" {
		if peer, err = listenPeers(&o); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				peer.close()
			}
		}()
	}
	if _, merr := os.Stat(filepath.Join(dir, manifestName)); errors.Is(merr, os.ErrNotExist) && o.JoinExisting && o.NodeID == "" {
		if o.NodeID, err = lookupMemberID(peer, &o); err != nil {
			return nil, err
		}
	}
	m, err := loadManifest(dir, &o)
	if err != nil {
		return nil, err
	}
	o.NodeID = m.NodeID
	if o.NodeName == "" {
		o.NodeName = m.NodeID
	}

	snap, err := checkSnapshots(dir)
	if err != nil {
		return nil, err
	}
	sm := newStoreMetrics()
	o.onLogSync = sm.walFsync.observe
	logs, latestConf, boltSt, err := openRaftState(dir, m, snap, &o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			logs.Close()
		}
	}()
	ks := newKeyspace()
	kvState, be, err := openKV(dir, snap, ks, o.backendOptions(o.Logger.With("node", m.NodeID)), func(from, to uint64) error { return logHolds(logs, from, to) })
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			be.close()
		}
	}()
	// raft.db last: opening it for writing changes it (openRaftState).
	stable, err := openStable(dir, boltSt, &o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			stable.Close()
		}
	}()
	if m.Format < formatVersion {
		o.Logger.Info("keyspace moved out of memory into kv.db (data directory format 3)", "node", m.NodeID, "index", kvState.index)
		m.Format = formatVersion
		if err := writeManifest(dir, m); err != nil {
			return nil, fmt.Errorf("accord: open: %w", err)
		}
		if err := crashPoint(dir, crashManifest); err != nil {
			return nil, err
		}
	}
	removeSnapshotTemps(dir, o.Logger)
	fss, err := raft.NewFileSnapshotStoreWithLogger(dir, o.SnapshotRetain, logbridge.HCLog(o.Logger, "snapshot"))
	if err != nil {
		return nil, fmt.Errorf("accord: open: %w", err)
	}
	snaps := &snapStore{FileSnapshotStore: fss, dir: dir}

	// Gossip announces this node only once its directory checked out.
	var g *gossip
	if o.GossipAddr != "" {
		if g, err = newGossip(&o, m.NodeID, peer.advertise); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				g.shutdown()
			}
		}()
	}

	var (
		addr  raft.ServerAddress
		trans raft.Transport
	)
	if peer != nil {
		nt := peer.raftTransport(o.Logger.With("node", m.NodeID), g.addrProvider())
		addr, trans = nt.LocalAddr(), nt
	} else {
		addr, trans = raft.NewInmemTransport(localAddress(&o, m.NodeID))
	}
	defer func() {
		if err != nil {
			trans.(raft.WithClose).Close()
		}
	}()

	s = &Store{
		opts:     o,
		log:      o.Logger.With("node", m.NodeID),
		id:       m.NodeID,
		logs:     logs,
		trans:    trans,
		peer:     peer,
		gossip:   g,
		addr:     string(addr),
		ks:       ks,
		lessor:   newLessor(),
		metrics:  sm,
		stop:     make(chan struct{}),
		readyCh:  make(chan struct{}),
		readKick: make(chan struct{}, 1),
		removed:  make(chan struct{}),
		disk:     newDiskGuard(dir, o.MinFreeDiskBytes, o.Logger.With("node", m.NodeID)),
	}
	s.hub = newWatchHub(ks)
	s.hub.log = s.log
	s.fsm = newFSM(s.log, ks, kvState, s.hub, s.lessor, dir, o.backendOptions(s.log))
	snaps.live = s.liveSnapshot
	be.start()
	if snap != nil && kvState.index < snap.meta.Index {
		// openKV found the entries in the log.
		if err := replayToSnapshot(s.fsm, logs, kvState.index+1, snap.meta.Index); err != nil {
			return nil, err
		}
	}

	self := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.NodeID), Address: addr}
	if !m.Initialized {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			return nil, fmt.Errorf("accord: open: %w", err)
		}
		if !has && len(o.InitialCluster) > 0 {
			conf, err := initialConfiguration(o.InitialCluster, self)
			if err != nil {
				return nil, err
			}
			if err := raft.BootstrapCluster(s.raftConfig(), logs, stable, snaps, trans, conf); err != nil {
				return nil, fmt.Errorf("accord: open: bootstrap: %w", err)
			}
			latestConf = &conf
			has = true
		}
		if !has && !o.JoinExisting && o.BootstrapExpect == 1 {
			conf := raft.Configuration{Servers: []raft.Server{self}}
			if err := raft.BootstrapCluster(s.raftConfig(), logs, stable, snaps, trans, conf); err != nil {
				return nil, fmt.Errorf("accord: open: bootstrap: %w", err)
			}
			latestConf = &conf
			has = true
		}
		// A joining node has no state until the leader sends it some; its
		// directory counts as initialized from the first Open that finds
		// state in it.
		if has {
			m.Initialized = true
			if err := writeManifest(dir, m); err != nil {
				return nil, fmt.Errorf("accord: open: %w", err)
			}
		}
	}
	if latestConf == nil && snap != nil {
		latestConf = &snap.meta.Configuration
	}
	s.fastElect = latestConf != nil && len(latestConf.Servers) == 1 && latestConf.Servers[0].ID == self.ID

	var mark func() error
	if !m.Initialized {
		mark = func() error {
			m.Initialized = true
			return writeManifest(dir, m)
		}
	}
	s.stores = newRaftStore(logs, stable, mark, s.disk.noSpace) // see raftStore
	// Recent entries stay in memory: replication to followers reads them
	// back from disk one by one otherwise (Consul does the same).
	cache, err := raft.NewLogCache(raftLogCache, s.stores)
	if err != nil {
		return nil, err
	}
	r, err := newRaft(s.raftConfig(), s.fsm, cache, s.stores, snaps, trans)
	if err != nil {
		return nil, err
	}
	s.raft = r
	r.RegisterObserver(sm.leaderObserver())
	s.hub.reset() // the snapshot restore may have moved the revision
	if peer != nil {
		peer.start(s.serveRequest)
		if latestConf != nil {
			var others []string
			moved := false
			for _, srv := range latestConf.Servers {
				if srv.ID == self.ID {
					moved = string(srv.Address) != s.addr
				} else {
					others = append(others, string(srv.Address))
				}
			}
			if moved && len(others) > 0 {
				s.wg.Go(func() { s.announceAddress(others) })
			}
		}
	}
	if s.fastElect {
		// Alone in the configuration: nobody else can win an election, so
		// don't sit out a full election timeout first. Raft requires the
		// heartbeat timeout to stay >= the leader lease; restored on
		// leadership.
		rc := r.ReloadableConfig()
		rc.HeartbeatTimeout = s.raftConfig().LeaderLeaseTimeout
		if err := r.ReloadConfig(rc); err != nil {
			s.log.Warn("cannot shorten first election", "err", err)
		}
	}
	single := s.fastElect
	s.wg.Go(s.leaderLoop)
	s.wg.Go(s.readLoop)
	s.wg.Go(s.expiryLoop)
	s.wg.Go(s.progressLoop)
	s.wg.Go(s.quotaAtOpen)
	if o.AutoCompaction != (AutoCompaction{}) {
		s.wg.Go(s.autoCompact)
	}
	if o.QuotaBytes > warnQuotaBytes {
		s.log.Warn("QuotaBytes is above the recommended maximum (8 GiB)", "quota", o.QuotaBytes)
	}
	s.wg.Go(func() { s.disk.loop(s.stop) })
	if peer != nil {
		s.wg.Go(s.publishLoop)
		if g == nil {
			s.wg.Go(s.removedLoop)
		}
	}
	if g != nil {
		s.startGossip()
	}
	if single {
		// A single voter elects itself within one shortened timeout and then
		// replays its log. Waiting for that here means that once Open
		// returns, the store holds every write it had acknowledged before,
		// and a Watch started now begins after them, not before a replay.
		ctx, cancel := context.WithTimeout(context.Background(), max(10*time.Second, 20*o.ElectionTimeout))
		err := s.waitLeaderReady(ctx)
		cancel()
		if err != nil {
			s.log.Warn("not ready yet after Open; calls will wait for leadership", "err", err)
		}
	}
	return s, nil
}

// loadManifest reads the manifest of dir, or creates one for a new
// directory, and checks that it belongs to this node and cluster.
func loadManifest(dir string, o *Options) (*manifest, error) {
	path := filepath.Join(dir, manifestName)
	m, err := readManifest(dir)
	if errors.Is(err, os.ErrNotExist) {
		for _, name := range []string{raftDBName, raftLogDir, snapshotsDir} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return nil, &CorruptError{Path: path, Reason: "manifest is missing next to " + name}
			}
		}
		m = &manifest{Format: formatVersion, NodeID: o.NodeID, ClusterName: o.ClusterName, Created: time.Now().UTC()}
		if m.NodeID == "" {
			m.NodeID = newNodeID()
		}
		if err := writeManifest(dir, m); err != nil {
			return nil, fmt.Errorf("accord: open: %w", err)
		}
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	switch {
	case m.Format > formatVersion:
		return nil, fmt.Errorf("%w: %s was written by format version %d; this build reads up to %d", ErrForeignDir, path, m.Format, formatVersion)
	case o.NodeID != "" && o.NodeID != m.NodeID:
		return nil, fmt.Errorf("%w: %s belongs to node %q, not %q", ErrForeignDir, dir, m.NodeID, o.NodeID)
	case m.ClusterName != o.ClusterName:
		return nil, fmt.Errorf("%w: %s belongs to cluster %q, not %q", ErrForeignDir, dir, m.ClusterName, o.ClusterName)
	}
	return m, nil
}

func newRaft(c *raft.Config, f *fsm, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: "raft state", Reason: "raft refused the data directory", Err: fmt.Errorf("%v", p)}
		}
	}()
	r, err = raft.NewRaft(c, f, logs, stable, snaps, trans)
	if err != nil {
		return nil, &CorruptError{Path: "raft state", Reason: "raft could not start from the data directory", Err: err}
	}
	return r, nil
}

// liveSnapshot streams kv.db for raft (a snapshot sent to a follower).
func (s *Store) liveSnapshot() (io.ReadCloser, int64, error) {
	s.ks.mu.RLock()
	be := s.ks.be
	s.ks.mu.RUnlock()
	return be.snapshot()
}

// raftLogCache is how many recent log entries raft keeps in memory.
const raftLogCache = 1024

func (s *Store) raftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(s.id)
	c.Logger = logbridge.HCLog(s.opts.Logger.With("node", s.id), "raft")
	c.HeartbeatTimeout = s.opts.ElectionTimeout
	c.ElectionTimeout = s.opts.ElectionTimeout
	c.LeaderLeaseTimeout = s.opts.ElectionTimeout / 2
	// How soon followers learn a new commit index when no new entry
	// carries it (hashicorp/raft#282): raft waits CommitTimeout to 2x
	// CommitTimeout. A follower serves watches and linearizable reads only
	// up to what it knows is committed, so this is their added latency; an
	// idle follower gets one small AppendEntries per interval.
	c.CommitTimeout = min(5*time.Millisecond, s.opts.ElectionTimeout/10)
	c.MaxAppendEntries = 512
	c.BatchApplyCh = true
	c.SnapshotThreshold = s.opts.SnapshotThreshold
	c.SnapshotInterval = s.opts.SnapshotInterval
	c.TrailingLogs = s.opts.TrailingLogs
	c.NoLegacyTelemetry = true
	// The state is kv.db, which says which entries it holds: raft replays
	// the log after its newest snapshot and the FSM skips what it has.
	c.NoSnapshotRestoreOnStart = true
	// A leader that removes itself steps down and keeps running; the
	// removal check (removedLoop) or Leave then closes the store. raft's
	// own shutdown would leave the Store half alive.
	c.ShutdownOnRemove = false
	return c
}

// Close stops the store: pending calls return ErrClosed (a write in flight
// may or may not have been committed: ErrUnknownOutcome), watch channels
// close, and every goroutine, file and socket of the store is released
// before Close returns. The node stays a member of its cluster: Close is a
// restart, not a departure. Close is idempotent; later calls return nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.snapshotForRestart()
		s.closeMu.Lock()
		s.closed.Store(true)
		close(s.stop)
		s.closeMu.Unlock()
		err := s.raft.Shutdown().Error()
		s.wg.Wait()
		s.trans.(raft.WithClose).Close()
		if s.peer != nil {
			s.peer.close()
		}
		if cerr := s.stores.close(); err == nil {
			err = cerr
		}
		s.ks.mu.RLock()
		be := s.ks.be
		s.ks.mu.RUnlock()
		if cerr := be.close(); err == nil {
			err = cerr
		}
		s.closeErr = err
	})
	return s.closeErr
}

// closeSnapshotMin is how many log entries past the newest snapshot make
// Close take one more.
const closeSnapshotMin = 1024

// snapshotForRestart takes a snapshot before Close stops raft, when the log
// has grown past the newest one: it costs a commit of kv.db, and the next
// Open then reads and replays only the trailing entries instead of every
// entry since the last periodic snapshot. Bounded: after
// closeSnapshotTimeout Close goes on without it.
func (s *Store) snapshotForRestart() {
	st := s.raft.Stats()
	last, _ := strconv.ParseUint(st["last_log_index"], 10, 64)
	snap, _ := strconv.ParseUint(st["last_snapshot_index"], 10, 64)
	if last < snap+closeSnapshotMin {
		return
	}
	done := make(chan struct{})
	f := s.raft.Snapshot()
	go func() { // ends once raft answers, at the latest when Shutdown does
		_ = f.Error()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeSnapshotTimeout):
	}
}

const closeSnapshotTimeout = 5 * time.Second

// initialConfiguration is the raft configuration of Options.InitialCluster.
// This node's entry must carry the address it advertises, or the others
// could never reach it.
func initialConfiguration(members []InitialMember, self raft.Server) (raft.Configuration, error) {
	var conf raft.Configuration
	for _, m := range members {
		if m.ID == string(self.ID) && m.PeerAddr != string(self.Address) {
			return conf, fmt.Errorf("accord: open: InitialCluster gives this node (%s) peer address %s, but it advertises %s", m.ID, m.PeerAddr, self.Address)
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.PeerAddr)})
	}
	return conf, nil
}

// goTracked starts f as a store-owned goroutine, unless the store is
// closed.
func (s *Store) goTracked(f func()) bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Go(f)
	return true
}

func (s *Store) isClosed() bool { return s.closed.Load() }

// NodeID returns this node's permanent ID.
func (s *Store) NodeID() string { return s.id }

// ClusterName returns the name of the cluster this node belongs to
// (Options.ClusterName).
func (s *Store) ClusterName() string { return s.opts.ClusterName }

// Revision returns the current revision of this member's state, without
// contacting the leader (it may lag the cluster's). It never blocks.
func (s *Store) Revision() int64 { return s.ks.Rev() }

// RequestTimeout returns the longest this member waits for another member
// (the leader) to answer one request when the caller's ctx allows more: 5 s
// plus two ElectionTimeouts, etcd's request timeout. A write forwarded to
// the leader that gets no answer by then fails with ErrTimeout (and
// ErrUnknownOutcome). The etcd API server bounds every request by it, as
// etcd does.
func (s *Store) RequestTimeout() time.Duration { return s.opts.requestTimeout() }

// Term returns the raft term as this member knows it. It never blocks.
func (s *Store) Term() uint64 { return s.raft.CurrentTerm() }

// Leader returns the node ID of the leader as this member knows it, "" when
// it knows none. It never blocks and asks no other member.
func (s *Store) Leader() string {
	_, id := s.leader()
	return id
}

// PeerAddr returns the address other members reach this node at (the
// advertised peer address), or "" without a peer listener.
func (s *Store) PeerAddr() string {
	if s.peer == nil {
		return ""
	}
	return s.addr
}

// ---- leadership ----

func (s *Store) isReady() bool {
	t := s.readyTerm.Load()
	return t != 0 && s.raft.State() == raft.Leader && t == s.raft.CurrentTerm()
}

func (s *Store) readinessChanged() {
	s.readyMu.Lock()
	close(s.readyCh)
	s.readyCh = make(chan struct{})
	s.readyMu.Unlock()
}

// waitLeaderReady waits until this node is a ready leader.
func (s *Store) waitLeaderReady(ctx context.Context) error {
	if s.isReady() {
		return nil // the common case, without touching readyMu
	}
	for {
		s.readyMu.Lock()
		ch := s.readyCh
		s.readyMu.Unlock()
		if s.isReady() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-s.stop:
			return ErrClosed
		}
	}
}

// leaderLoop follows leadership changes. On gaining leadership it commits
// a no-op entry of the new term; once that is applied, everything earlier
// is applied too, so reads and lease decisions become safe.
func (s *Store) leaderLoop() {
	leaderCh := s.raft.LeaderCh()
	for {
		select {
		case <-s.stop:
			return
		case isLeader := <-leaderCh:
			s.readyTerm.Store(0)
			s.lessor.demote()
			s.readinessChanged()
			if isLeader {
				s.becomeReady(leaderCh)
			}
		}
	}
}

func (s *Store) becomeReady(leaderCh <-chan bool) {
	data, _ := wire.EncodeCommand(&wire.Command{Type: wire.CmdNoop})
	for attempt := 0; ; attempt++ {
		term := s.raft.CurrentTerm()
		f := s.raft.ApplyLog(raft.Log{Data: data, Extensions: logEntrySum(data)}, s.opts.ElectionTimeout)
		s.answerOnStop(f)
		err := f.Error()
		if err == nil && s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term {
			if s.fastElect {
				s.fastElect = false
				rc := s.raft.ReloadableConfig()
				rc.HeartbeatTimeout = s.opts.ElectionTimeout
				if err := s.raft.ReloadConfig(rc); err != nil {
					s.log.Warn("cannot restore heartbeat timeout", "err", err)
				}
			}
			s.lessor.promote()
			s.readyTerm.Store(term)
			s.readinessChanged()
			s.log.Info("leader ready", "term", term)
			s.fixOwnAddress()
			return
		}
		if s.raft.State() != raft.Leader {
			return // the next notification from leaderCh tells what happened
		}
		s.log.Warn("leader no-op not committed; retrying", "term", term, "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(min(time.Duration(attempt+1)*10*time.Millisecond, s.opts.ElectionTimeout)):
		}
	}
}

// fixOwnAddress updates this leader's entry in the configuration when it
// now listens somewhere else (a restart on a new port, or a store restored
// from a backup and opened with a peer listener), so that members dial the
// right place.
func (s *Store) fixOwnAddress() {
	if s.peer == nil {
		return
	}
	srv, err := s.findMember(s.id)
	if err != nil || string(srv.Address) == s.addr {
		return
	}
	err = s.raft.AddVoter(srv.ID, raft.ServerAddress(s.addr), 0, s.opts.ElectionTimeout).Error()
	s.log.Info("updated own peer address in the configuration", "from", string(srv.Address), "to", s.addr, "err", err)
}

// ---- linearizable reads ----

// readBatch is the set of linearizable reads that one leadership check
// serves. done is closed once index and err are set.
type readBatch struct {
	done  chan struct{}
	index uint64
	err   error
}

// readIndex makes the next local read linearizable: it returns once this
// node's state includes every write acknowledged before readIndex was
// called. The leader notes its commit index and confirms with a quorum
// that it is still the leader (confirmIndex); a follower asks the leader
// for that index over the peer transport. Either then waits until the
// index is applied locally.
//
// The applied index counts only entries raft hands to the FSM; raft's own
// no-op and barrier entries are not. That is safe: a ready leader has
// applied its own no-op command of the current term, after which the only
// entries are commands and configuration changes, both counted, on every
// member.
func (s *Store) readIndex(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}

	for attempt := 0; ; attempt++ {
		var (
			index uint64
			err   error
			retry = true
		)
		if s.isReady() {
			if err := ctx.Err(); err != nil {
				// Else a read batch that completes at once races the done
				// ctx in confirmIndex's select, and a cancelled call can
				// succeed (TestBindVarErrors, now and then).
				return err
			}
			index, err = s.confirmIndex(ctx)
			retry = errors.Is(err, ErrNotLeader)
		} else if addr, id := s.leader(); addr != "" && id != s.id && s.peer != nil {
			var resp *wire.Response
			resp, err = s.peer.call(ctx, addr, &wire.Request{Type: wire.RPCReadIndex, From: s.id})
			if err == nil {
				err = errFromWire(resp)
				index = resp.Index
				retry = errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)
			} else {
				retry = ctx.Err() == nil // a read can always be retried
			}
		}
		if err == nil && !retry {
			return s.waitApplied(ctx, index)
		}
		if !retry {
			return err
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// confirmIndex returns a commit index that covers every write acknowledged
// before it was called, after confirming this node's leadership with a
// quorum. One confirmation serves every call that queued meanwhile.
func (s *Store) confirmIndex(ctx context.Context) (uint64, error) {
	s.readMu.Lock()
	b := s.readBatch
	if b == nil {
		b = &readBatch{done: make(chan struct{})}
		s.readBatch = b
	}
	s.readMu.Unlock()
	select {
	case s.readKick <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.stop:
		return 0, ErrClosed
	}
	return b.index, b.err
}

func (s *Store) readLoop() {
	for {
		select {
		case <-s.stop:
			s.readMu.Lock()
			if b := s.readBatch; b != nil {
				b.err = ErrClosed
				close(b.done)
				s.readBatch = nil
			}
			s.readMu.Unlock()
			return
		case <-s.readKick:
		}
		// Take the batch before reading the commit index: every read in
		// it started before this point, so the index covers its writes.
		s.readMu.Lock()
		b := s.readBatch
		s.readBatch = nil
		s.readMu.Unlock()
		if b == nil {
			continue
		}
		index := s.raft.CommitIndex()
		vf := s.raft.VerifyLeader()
		s.answerOnStop(vf) // Close must not wait on a raft that is shutting down
		err := vf.Error()
		if err == nil && !s.isReady() {
			err = &NotLeaderError{}
		}
		b.index, b.err = index, s.raftError(err)
		close(b.done)
	}
}

// waitApplied waits until the FSM has applied index.
func (s *Store) waitApplied(ctx context.Context, index uint64) error {
	if s.fsm.applied.load() >= index {
		return nil // the common case, without the mutex
	}
	for {
		cur, ch := s.fsm.applied.get()
		if cur >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return ErrClosed
		}
	}
}

// raftError maps raft's errors to ours.
func (s *Store) raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		addr, id := s.raft.LeaderWithID()
		return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
	}
	return err
}

// ---- writes ----

// propose commits cmd through raft and returns the FSM's result. On a
// ready leader it proposes locally; on a follower it forwards the command
// to the leader over the peer transport. It retries, with jittered
// backoff within ctx, while the command provably did not enter the log (no
// leader yet, a leader that stepped down before proposing, a peer that
// could not be reached), and reports ErrUnknownOutcome when it may have.
//
// Every proposal that gets past the argument checks counts in Metrics:
// pending while it runs, then committed (res is set: the command is in the
// log) or failed.
func (s *Store) propose(ctx context.Context, cmd *wire.Command) (res *applyResult, err error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	data, err := wire.EncodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	if len(data) > s.opts.MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRequestTooLarge, len(data), s.opts.MaxRequestBytes)
	}
	s.metrics.pending.Add(1)
	defer func() { s.metrics.proposalDone(res != nil) }()
	if err := s.disk.refuse(cmd.Type); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, cmd, len(data)); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var (
			res   *applyResult
			err   error
			retry = true
		)
		if s.isReady() {
			// Again on every attempt: a retry after a leader change (which a
			// full disk may have caused) must not slip into the reserve.
			if err := s.disk.refuse(cmd.Type); err != nil {
				return nil, err
			}
			res, err, retry = s.applyLocal(ctx, data)
		} else if addr, id := s.leader(); addr != "" && id != s.id && s.peer != nil {
			res, err, retry = s.forward(ctx, addr, data)
			s.metrics.forwarded(res, err, retry)
		}
		if !retry {
			return res, err
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// proposeAsLeader proposes cmd on this node, only while it is the ready
// leader, once: never forwarded, never retried elsewhere. For commands
// that carry this leader's own decision, such as a lease expiry by its
// clock: a deposed leader's stale decision must not reach the new leader,
// whose clock may have renewed the lease since.
func (s *Store) proposeAsLeader(ctx context.Context, cmd *wire.Command) (*applyResult, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if !s.isReady() {
		return nil, &NotLeaderError{}
	}
	data, err := wire.EncodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	s.metrics.pending.Add(1)
	res, err, _ := s.applyLocal(ctx, data)
	s.metrics.proposalDone(res != nil)
	return res, err
}

// leader returns the leader's address and ID as this node knows them.
func (s *Store) leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// backoff waits before the next attempt to reach a leader: a jittered,
// growing delay, cut short when this node's readiness changes. It fails
// with ErrNoLeader (wrapping the ctx error) when ctx ends.
func (s *Store) backoff(ctx context.Context, attempt int) error {
	s.readyMu.Lock()
	ch := s.readyCh
	s.readyMu.Unlock()
	d := min(5*time.Millisecond<<min(attempt, 6), s.opts.ElectionTimeout/2)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
	case <-s.stop:
		return ErrClosed
	}
}

// applyLocal proposes data on this node, which should be the leader.
// retry reports that the command certainly did not enter the log.
func (s *Store) applyLocal(ctx context.Context, data []byte) (res *applyResult, err error, retry bool) {
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, ctx.Err(), false
		}
	}
	start := time.Now()
	f := s.raft.ApplyLog(raft.Log{Data: data, Extensions: logEntrySum(data)}, timeout)
	err = s.waitFuture(ctx, f)
	switch {
	case err == nil:
		res, _ := f.Response().(*applyResult)
		if res == nil {
			return nil, fmt.Errorf("accord: internal error: no result for committed command"), false
		}
		return res, res.err, false
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return nil, s.raftError(err), true // never entered the log
	case errors.Is(err, raft.ErrLeadershipLost):
		return nil, ErrUnknownOutcome, false
	case errors.Is(err, raft.ErrRaftShutdown):
		return nil, fmt.Errorf("%w (%w)", ErrUnknownOutcome, ErrClosed), false
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%w (%w)", ErrUnknownOutcome, ctx.Err()), false
	case s.disk.noSpaceSince(start):
		// The leader's own append failed (raft's log cache flattens the
		// store's error to text): not stored, not replicated.
		return nil, ErrNoSpace, false
	}
	return nil, err, false
}

// forward sends data to the leader at addr. res is set only when the
// command is known to be in the log (even if it failed as a command).
func (s *Store) forward(ctx context.Context, addr string, data []byte) (res *applyResult, err error, retry bool) {
	resp, err := s.peer.call(ctx, addr, &wire.Request{Type: wire.RPCForward, Command: data, From: s.id})
	switch {
	case errors.Is(err, errNotSent):
		return nil, err, true
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("%w (%w)", ErrUnknownOutcome, ctx.Err()), false
	case errors.Is(err, errRPCTimeout):
		// The leader did not answer within the request timeout: the
		// command or its answer may have been lost on the way.
		return nil, fmt.Errorf("%w (%w: forwarding to %s)", ErrUnknownOutcome, ErrTimeout, addr), false
	case err != nil:
		// The request may have reached the leader before the connection
		// broke: its fate is unknown.
		return nil, fmt.Errorf("%w (forwarding to %s: %v)", ErrUnknownOutcome, addr, err), false
	}
	if rerr := errFromWire(resp); rerr != nil {
		if errors.Is(rerr, ErrNotLeader) || errors.Is(rerr, ErrNoLeader) {
			return nil, rerr, true // refused before proposing
		}
		if resp.Revision == 0 {
			// The leader sets the revision only with the result of a
			// committed command: this is a refusal (a full disk, say) or
			// ErrUnknownOutcome, nothing known to be in the log.
			return nil, rerr, false
		}
		return &applyResult{rev: resp.Revision, err: rerr}, rerr, false
	}
	return &applyResult{txn: txnFromWire(resp.Txn), rev: resp.Revision}, nil, false
}

// waitFuture waits for f within ctx. raft futures cannot be selected on,
// so with a cancellable ctx a store-owned goroutine waits for it; once
// Close has begun, f answers raft.ErrRaftShutdown (answerOnStop).
func (s *Store) waitFuture(ctx context.Context, f raft.Future) error {
	s.answerOnStop(f)
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	if !s.goTracked(func() { done <- f.Error() }) {
		return raft.ErrRaftShutdown
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answerOnStop makes f.Error return raft.ErrRaftShutdown once s.stop is
// closed. raft never answers a future that is still queued when it shuts
// down: an ApplyLog waiting in the applyCh buffer that BatchApplyCh gives,
// or a committed entry the FSM loop had not taken yet
// (hashicorp/raft#498). A goroutine waiting for one kept Close waiting for
// s.wg forever. raft's futures embed deferError, whose exported
// ShutdownCh exists for exactly this, but their types are unexported,
// hence reflect; raft itself never touches ShutdownCh of these futures.
// Futures of other shapes (errorFuture) are left alone.
func (s *Store) answerOnStop(f raft.Future) {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	if idx := shutdownChField(v.Elem().Type()); idx != nil {
		if ch := v.Elem().FieldByIndex(idx); ch.CanSet() {
			ch.Set(reflect.ValueOf(s.stop))
		}
	}
}

// shutdownChFields caches, per future type, the index of its settable
// ShutdownCh field (nil: none): FieldByName walks the embedded structs by
// name on every call, which cost 7% of a Put's CPU.
var shutdownChFields sync.Map // reflect.Type -> []int

func shutdownChField(t reflect.Type) []int {
	if idx, ok := shutdownChFields.Load(t); ok {
		return idx.([]int)
	}
	var idx []int
	if f, ok := t.FieldByName("ShutdownCh"); ok && f.IsExported() && f.Type == reflect.TypeFor[chan struct{}]() {
		idx = f.Index
	}
	shutdownChFields.Store(t, idx)
	return idx
}

func (s *Store) proposeTxn(ctx context.Context, txn *wire.TxnRequest) (*TxnResponse, error) {
	res, err := s.propose(ctx, &wire.Command{Type: wire.CmdTxn, Txn: txn})
	if err != nil {
		return nil, err
	}
	return copyTxnResponse(res.txn), nil
}

// Put sets the value of key, creating it if needed. Options: WithLease,
// WithPrevKV, WithIgnoreValue, WithIgnoreLease. It returns after the write
// is committed and applied here, with the revision it created. Errors:
// ErrEmptyKey, ErrRequestTooLarge, ErrLeaseNotFound, ErrKeyNotFound (for
// the ignore options), ErrClosed, ErrNoLeader or the ctx error while
// waiting for a leader, ErrUnknownOutcome when the outcome is not known.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...OpOption) (*PutResponse, error) {
	op := getOp(opPut, key, value, opts)
	req, err := op.putRequest()
	putOp(op)
	if err != nil {
		return nil, fmt.Errorf("accord: put %q: %w", key, err)
	}
	resp, err := s.proposeTxn(ctx, &wire.TxnRequest{Success: []wire.RequestOp{{Put: req}}})
	if err != nil {
		return nil, fmt.Errorf("accord: put %q: %w", key, err)
	}
	return resp.Responses[0].Put, nil
}

// Get reads a key or, with WithPrefix, WithRange or WithFromKey, a range.
// The read is linearizable unless WithSerializable is given: it reflects
// every write acknowledged before Get was called. Errors: ErrEmptyKey,
// ErrCompacted and ErrFutureRev for WithRev, ErrInvalidArgument, ErrClosed,
// ErrNoLeader or the ctx error.
func (s *Store) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	op := getOp(opGet, key, nil, opts)
	req, err := op.rangeRequest()
	putOp(op)
	if err != nil {
		return nil, fmt.Errorf("accord: get %q: %w", key, err)
	}
	if !req.Serializable {
		if err := s.readIndex(ctx); err != nil {
			return nil, fmt.Errorf("accord: get %q: %w", key, err)
		}
	} else if s.isClosed() {
		return nil, fmt.Errorf("accord: get %q: %w", key, ErrClosed)
	}
	resp, err := s.ks.Range(&req)
	if err != nil {
		return nil, fmt.Errorf("accord: get %q: %w", key, err)
	}
	copyKVs(resp.KVs)
	return resp, nil
}

// Delete deletes a key or, with WithPrefix, WithRange or WithFromKey, a
// range. Deleting nothing is not an error (Deleted is 0, and the revision
// does not change). WithPrevKV returns the deleted versions.
func (s *Store) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	op := getOp(opDelete, key, nil, opts)
	req, err := op.deleteRequest()
	putOp(op)
	if err != nil {
		return nil, fmt.Errorf("accord: delete %q: %w", key, err)
	}
	resp, err := s.proposeTxn(ctx, &wire.TxnRequest{Success: []wire.RequestOp{{DeleteRange: req}}})
	if err != nil {
		return nil, fmt.Errorf("accord: delete %q: %w", key, err)
	}
	return resp.Responses[0].Delete, nil
}

// Compact discards history below rev: reads and watches at earlier
// revisions fail with ErrCompacted afterwards. The version of each key that
// was current at rev is kept. WithAppliedRevision reports the revision
// current when the compaction was applied. Errors: ErrCompacted if rev is
// at or below the compacted revision, ErrFutureRev beyond the current one.
func (s *Store) Compact(ctx context.Context, rev int64, opts ...OpOption) error {
	op := newOp(0, "", nil, opts)
	res, err := s.propose(ctx, &wire.Command{Type: wire.CmdCompact, Compact: rev})
	if err != nil {
		return fmt.Errorf("accord: compact %d: %w", rev, err)
	}
	op.setAppliedRevision(res.rev)
	return nil
}

// Txn starts a transaction: If(cmps...).Then(ops...).Else(ops...).Commit().
// The transaction runs atomically at one revision; if it writes anything,
// the revision grows by exactly one.
func (s *Store) Txn(ctx context.Context) *Txn { return &Txn{s: s, ctx: ctx} }

// Txn is a transaction under construction. If, Then and Else may each be
// called once, in that order; Commit runs it. A Txn is not safe for
// concurrent use.
type Txn struct {
	s        *Store
	ctx      context.Context
	cmps     []Cmp
	thenOps  []Op
	elseOps  []Op
	stage    int // 0 new, 1 after If, 2 after Then, 3 after Else
	misorder string
}

// If adds comparisons; all must hold for Then to run.
func (t *Txn) If(cs ...Cmp) *Txn {
	if t.stage >= 1 && t.misorder == "" {
		t.misorder = "If called after If, Then or Else"
	}
	t.stage = 1
	t.cmps = append(t.cmps, cs...)
	return t
}

// Then adds the operations that run when every comparison holds.
func (t *Txn) Then(ops ...Op) *Txn {
	if t.stage >= 2 && t.misorder == "" {
		t.misorder = "Then called after Then or Else"
	}
	t.stage = 2
	t.thenOps = append(t.thenOps, ops...)
	return t
}

// Else adds the operations that run when a comparison fails.
func (t *Txn) Else(ops ...Op) *Txn {
	if t.stage >= 3 && t.misorder == "" {
		t.misorder = "Else called twice"
	}
	t.stage = 3
	t.elseOps = append(t.elseOps, ops...)
	return t
}

// Commit runs the transaction. A transaction that only reads is served like
// Get (linearizable, or local if every read is WithSerializable) without
// going through the log. Errors: ErrTooManyOps, ErrDuplicateKey,
// ErrInvalidArgument, ErrRequestTooLarge, plus those of Put and Get.
func (t *Txn) Commit() (*TxnResponse, error) {
	if t.misorder != "" {
		return nil, fmt.Errorf("accord: txn: %w: %s", ErrInvalidArgument, t.misorder)
	}
	req, err := buildTxn(t.cmps, t.thenOps, t.elseOps, t.s.opts.MaxTxnOps)
	if err != nil {
		return nil, fmt.Errorf("accord: txn: %w", err)
	}
	if readOnly, serializable := txnReadKind(req); readOnly {
		if !serializable {
			if err := t.s.readIndex(t.ctx); err != nil {
				return nil, fmt.Errorf("accord: txn: %w", err)
			}
		} else if t.s.isClosed() {
			return nil, fmt.Errorf("accord: txn: %w", ErrClosed)
		}
		resp, err := t.s.ks.readTxn(req)
		if err != nil {
			return nil, fmt.Errorf("accord: txn: %w", err)
		}
		return copyTxnResponse(resp), nil
	}
	resp, err := t.s.proposeTxn(t.ctx, req)
	if err != nil {
		return nil, fmt.Errorf("accord: txn: %w", err)
	}
	return resp, nil
}

// txnReadKind reports whether req (in both branches, nested included) only
// reads, and whether every read is serializable.
func txnReadKind(req *wire.TxnRequest) (readOnly, serializable bool) {
	readOnly, serializable = true, true
	var walk func(ops []wire.RequestOp)
	walk = func(ops []wire.RequestOp) {
		for _, op := range ops {
			switch {
			case op.Range != nil:
				serializable = serializable && op.Range.Serializable
			case op.Txn != nil:
				walk(op.Txn.Success)
				walk(op.Txn.Failure)
			default:
				readOnly = false
			}
		}
	}
	walk(req.Success)
	walk(req.Failure)
	return readOnly, serializable
}

// readTxn evaluates a read-only transaction against the current state.
func (ks *keyspace) readTxn(req *wire.TxnRequest) (*TxnResponse, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	x := &txnExec{ks: ks, rev: ks.rev + 1, readOnly: true}
	resp, err := x.txn(req, 0)
	if err != nil {
		return nil, err
	}
	setTxnRevision(resp, ks.rev)
	return resp, nil
}

func copyKVs(kvs []KeyValue) {
	for i := range kvs {
		kvs[i].Value = cloneBytes(kvs[i].Value)
	}
}

func copyKV(kv *KeyValue) *KeyValue {
	if kv == nil {
		return nil
	}
	c := *kv
	c.Value = cloneBytes(kv.Value)
	return &c
}

// copyTxnResponse gives the caller its own copy of every value.
func copyTxnResponse(r *TxnResponse) *TxnResponse {
	for i := range r.Responses {
		switch op := &r.Responses[i]; {
		case op.Get != nil:
			copyKVs(op.Get.KVs)
		case op.Put != nil:
			op.Put.PrevKV = copyKV(op.Put.PrevKV)
		case op.Delete != nil:
			copyKVs(op.Delete.PrevKVs)
		case op.Txn != nil:
			copyTxnResponse(op.Txn)
		}
	}
	return r
}
