package accord

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/wire"
)

// fsm is the raft state machine. raft calls ApplyBatch, Snapshot and
// Restore from its single FSM goroutine, never concurrently with each
// other; FSMSnapshot.Persist runs concurrently with later applies (it only
// reads an immutable view). Everything it does is deterministic: every
// member applying the same log reaches the same keyspace, revisions and
// leases. It never blocks on a watcher (publish is non-blocking) and never
// panics on a command: a command it cannot decode or does not know is
// answered with an error and changes nothing.
type fsm struct {
	log *slog.Logger
	ks  *keyspace
	hub *watchHub
	l   *lessor

	// mu is held for writing while a batch is applied or a snapshot
	// restored; it guards leases and members. Holding it for reading gives a view of
	// keyspace and leases that no apply is halfway through.
	// Lock order: fsm.mu before keyspace.mu; watchHub.mu before
	// keyspace.mu. Nothing takes fsm.mu or watchHub.mu while holding
	// keyspace.mu (the FSM publishes to the hub after unlocking it).
	mu     sync.RWMutex
	leases *leaseTable
	// members holds the attributes members published (CmdMemberAttrs),
	// by node ID. Entries of removed members stay until overwritten; they
	// are only ever read joined with the raft configuration.
	members map[string]memberAttrs

	applied appliedIndex
	metrics fsmMetrics
}

// applyResult is what Apply returns for a command; raft hands it to the
// proposer through ApplyFuture.Response.
type applyResult struct {
	txn *TxnResponse // for CmdTxn
	rev int64        // the revision after the command
	err error
}

func newFSM(log *slog.Logger, ks *keyspace, hub *watchHub, l *lessor) *fsm {
	f := &fsm{log: log, ks: ks, hub: hub, l: l, leases: newLeaseTable(), metrics: newFSMMetrics()}
	f.applied.init()
	return f
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: one lock for the whole batch, one
// publish to the watchers.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var pub []revEvents
	var commands uint64
	f.mu.Lock()
	f.ks.mu.Lock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue // configuration entries: nothing to apply here
		}
		commands++
		before := f.ks.rev
		out[i] = f.applyCommand(l)
		if f.ks.rev > before {
			// Collected per command: a compaction later in the batch may
			// drop these from the keyspace's log before we publish.
			pub = append(pub, f.ks.events[len(f.ks.events)-1])
		}
	}
	f.ks.mu.Unlock()
	f.metrics.leases.Store(int64(len(f.leases.m)))
	f.mu.Unlock()
	f.metrics.applied.Add(commands)
	f.hub.publish(pub)
	if n := len(logs); n > 0 {
		f.applied.set(logs[n-1].Index)
	}
	return out
}

// applyCommand applies one log entry. Called with f.mu and ks.mu held.
func (f *fsm) applyCommand(l *raft.Log) (res *applyResult) {
	defer func() {
		// Belt and braces: a bug on some input must not take the node down
		// in a loop. The command fails; state is as the undo log left it.
		if p := recover(); p != nil {
			f.log.Error("panic applying log entry", "index", l.Index, "panic", fmt.Sprint(p))
			res = &applyResult{rev: f.ks.rev, err: fmt.Errorf("accord: internal error applying entry %d", l.Index)}
		}
	}()
	cmd, err := wire.DecodeCommand(l.Data)
	if err != nil {
		if errors.Is(err, wire.ErrUnknownCommand) || errors.Is(err, wire.ErrUnknownVersion) {
			// Written by a newer version; the cluster-version gate keeps
			// this from happening in a healthy cluster.
			f.log.Error("log entry from a newer version skipped", "index", l.Index, "err", err)
			return &applyResult{rev: f.ks.rev, err: fmt.Errorf("%w: %v", ErrUnsupported, err)}
		}
		f.log.Error("undecodable log entry skipped", "index", l.Index, "err", err)
		return &applyResult{rev: f.ks.rev, err: fmt.Errorf("%w: log entry %d: %v", ErrCorrupt, l.Index, err)}
	}
	switch cmd.Type {
	case wire.CmdTxn:
		resp, evs, err := f.ks.applyTxn(cmd.Txn, f.leases.exists)
		if err != nil {
			return &applyResult{rev: f.ks.rev, err: err}
		}
		f.leases.track(evs)
		return &applyResult{txn: resp, rev: f.ks.rev}
	case wire.CmdCompact:
		return &applyResult{rev: f.ks.rev, err: f.ks.compact(cmd.Compact)}
	case wire.CmdLeaseGrant:
		ttl := time.Duration(cmd.LeaseTTLMillis) * time.Millisecond
		switch {
		case cmd.LeaseID <= 0:
			return &applyResult{rev: f.ks.rev, err: ErrInvalidArgument}
		case f.leases.exists(cmd.LeaseID):
			return &applyResult{rev: f.ks.rev, err: ErrLeaseExists}
		case cmd.LeaseTTLMillis <= 0 || ttl > MaxLeaseTTL:
			return &applyResult{rev: f.ks.rev, err: ErrLeaseTTLTooLarge}
		}
		f.leases.m[cmd.LeaseID] = &leaseEntry{ttl: ttl}
		f.l.granted(cmd.LeaseID, ttl)
		return &applyResult{rev: f.ks.rev}
	case wire.CmdLeaseRevoke, wire.CmdLeaseExpire:
		if !f.leases.exists(cmd.LeaseID) {
			return &applyResult{rev: f.ks.rev, err: ErrLeaseNotFound}
		}
		keys := f.leases.sortedKeys(cmd.LeaseID)
		if len(keys) > 0 {
			txn := &wire.TxnRequest{Success: make([]wire.RequestOp, len(keys))}
			for i, k := range keys {
				txn.Success[i].DeleteRange = &wire.DeleteRangeRequest{Key: k}
			}
			_, evs, err := f.ks.applyTxn(txn, f.leases.exists)
			if err != nil {
				return &applyResult{rev: f.ks.rev, err: err}
			}
			f.leases.track(evs)
		}
		delete(f.leases.m, cmd.LeaseID)
		f.l.removed(cmd.LeaseID)
		return &applyResult{rev: f.ks.rev}
	case wire.CmdNoop:
		return &applyResult{rev: f.ks.rev}
	case wire.CmdMemberAttrs:
		if f.members == nil {
			f.members = make(map[string]memberAttrs)
		}
		f.members[cmd.Member.ID] = memberAttrs{name: cmd.Member.Name, clientURLs: cmd.Member.ClientURLs}
		return &applyResult{rev: f.ks.rev}
	}
	return &applyResult{rev: f.ks.rev, err: ErrUnsupported}
}

// Snapshot implements raft.FSM. It captures an immutable view in O(keys)
// time; Persist serialises it while applies continue.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{state: f.stateLocked(), start: start, took: f.metrics.snapSave}, nil
}

// stateLocked captures keyspace and leases. Called with f.mu held.
func (f *fsm) stateLocked() *snapState {
	st := &snapState{view: f.ks.view(), leases: make([]snapLease, 0, len(f.leases.m))}
	for id, e := range f.leases.m {
		st.leases = append(st.leases, snapLease{id: id, ttl: e.ttl})
	}
	for id, a := range f.members {
		st.members = append(st.members, snapMember{id: id, attrs: a})
	}
	return st
}

// memberAttrs are what a member published about itself.
type memberAttrs struct {
	name       string
	clientURLs []string // never modified after apply: safe to share
}

// memberAttrs returns the published attributes of member id.
func (f *fsm) memberAttrs(id string) (memberAttrs, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.members[id]
	return a, ok
}

// Restore implements raft.FSM: it replaces the whole state with a
// snapshot, after verifying it completely.
func (f *fsm) Restore(rc io.ReadCloser) error {
	start := time.Now()
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.install(st)
	if i, ok := restoredIndex(rc); ok {
		f.applied.reset(i)
	}
	f.metrics.snapRestore.observe(time.Since(start))
	return nil
}

// restoredIndex finds the index snapStore.Open attached to a snapshot
// reader, under the wrappers raft adds (its restore progress counter).
func restoredIndex(rc io.ReadCloser) (uint64, bool) {
	for range 8 {
		switch r := rc.(type) {
		case interface{ snapshotIndex() uint64 }:
			return r.snapshotIndex(), true
		case raft.ReadCloserWrapper:
			rc = r.WrappedReadCloser()
		default:
			return 0, false
		}
	}
	return 0, false
}

// install swaps in a decoded snapshot state.
func (f *fsm) install(st *snapState) {
	nks := keyspaceFromView(st.view)
	leases := newLeaseTable()
	for _, l := range st.leases {
		leases.m[l.id] = &leaseEntry{ttl: l.ttl}
	}
	for i := range st.view.keys {
		h := &st.view.keys[i]
		if v := h.latest(); v != nil && v.lease != 0 {
			leases.attach(v.lease, h.key)
		}
	}
	var members map[string]memberAttrs
	if len(st.members) > 0 {
		members = make(map[string]memberAttrs, len(st.members))
		for _, m := range st.members {
			members[m.id] = m.attrs
		}
	}
	f.mu.Lock()
	f.ks.replaceWith(nks)
	f.members = members
	f.leases = leases
	f.metrics.leases.Store(int64(len(leases.m)))
	f.l.reset(leases)
	f.mu.Unlock()
	f.hub.reset()
}

// fsmSnapshot is a captured state on its way to disk. start is when
// Snapshot began capturing it; a successful Persist records the time since
// in took.
type fsmSnapshot struct {
	state *snapState
	start time.Time
	took  *histogram
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.state); err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.took.observe(time.Since(s.start))
	return nil
}

func (s *fsmSnapshot) Release() {}

// appliedIndex is the index of the last log entry the FSM has applied, with
// a way to wait for it. Entries raft does not hand to the FSM (its own
// no-op and barrier entries) are not counted; see Store.readIndex for why
// that is safe.
type appliedIndex struct {
	fast  atomic.Uint64 // = index, for lock-free checks
	mu    sync.Mutex    // guards the fields below
	index uint64
	ch    chan struct{} // closed and replaced on every advance
}

func (a *appliedIndex) init() { a.ch = make(chan struct{}) }

func (a *appliedIndex) set(i uint64) {
	a.mu.Lock()
	if i > a.index {
		a.index = i
		a.fast.Store(i)
		close(a.ch)
		a.ch = make(chan struct{})
	}
	a.mu.Unlock()
}

func (a *appliedIndex) reset(i uint64) {
	a.mu.Lock()
	a.index = i
	a.fast.Store(i)
	close(a.ch)
	a.ch = make(chan struct{})
	a.mu.Unlock()
}

// load returns the applied index without waiting for the mutex.
func (a *appliedIndex) load() uint64 { return a.fast.Load() }

func (a *appliedIndex) get() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index, a.ch
}
