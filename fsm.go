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
// waits for the backend to commit, then writes a marker). Everything it
// does is deterministic: every member applying the same log reaches the
// same keyspace, revisions and leases. It never blocks on a watcher
// (publish is non-blocking) and never panics on a command: a command it
// cannot decode or does not know is answered with an error and changes
// nothing.
//
// The state lives in kv.db (backend.go), which records the index of the
// last entry it holds. On restart raft does not restore a snapshot
// (NoSnapshotRestoreOnStart): the FSM resumes from kv.db, and raft replays
// the entries after its newest snapshot, of which the FSM skips those kv.db
// already holds (apply is idempotent by index). A raft snapshot is a
// marker: the state is the file (snapshot.go).
type fsm struct {
	log *slog.Logger
	ks  *keyspace
	hub *watchHub
	l   *lessor
	dir string          // the data directory (restore swaps kv.db in it)
	bo  *backendOptions // how kv.db is opened

	// mu is held for writing while a batch is applied or a snapshot
	// restored; it guards leases, members and alarms. Holding it for
	// reading gives a view of keyspace and leases that no apply is halfway
	// through. Lock order: fsm.mu before keyspace.mu; watchHub.mu before
	// keyspace.mu. Nothing takes fsm.mu or watchHub.mu while holding
	// keyspace.mu (the FSM publishes to the hub after unlocking it).
	mu     sync.RWMutex
	leases *leaseTable
	// members holds the attributes members published (CmdMemberAttrs),
	// by node ID. Entries of removed members stay until overwritten; they
	// are only ever read joined with the raft configuration.
	members map[string]memberAttrs
	alarms  map[Alarm]struct{}
	noSpace atomic.Bool // some member has AlarmNoSpace

	// last is the index of the last entry applied (or held by kv.db when
	// it was opened). Only the FSM goroutine touches it.
	last    uint64
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

// newFSM makes the state machine of a keyspace loaded from kv.db with its
// state st.
func newFSM(log *slog.Logger, ks *keyspace, st *kvState, hub *watchHub, l *lessor, dir string, bo *backendOptions) *fsm {
	f := &fsm{log: log, ks: ks, hub: hub, l: l, dir: dir, bo: bo, metrics: newFSMMetrics()}
	f.applied.init()
	f.installState(st)
	return f
}

// installState takes the non-keyspace state loaded from kv.db.
func (f *fsm) installState(st *kvState) {
	leases := newLeaseTable()
	for _, l := range st.leases {
		leases.m[l.id] = &leaseEntry{ttl: time.Duration(l.ttlMillis) * time.Millisecond}
	}
	for id, keys := range st.attached {
		for _, k := range keys {
			leases.attach(id, k)
		}
	}
	alarms := make(map[Alarm]struct{}, len(st.alarms))
	for _, a := range st.alarms {
		alarms[a] = struct{}{}
	}
	f.leases, f.members, f.alarms = leases, st.members, alarms
	f.metrics.leases.Store(int64(len(leases.m)))
	f.noSpace.Store(hasAlarm(alarms, AlarmNoSpace))
	f.l.reset(leases)
	f.last = st.index
	f.applied.reset(st.index)
}

func hasAlarm(m map[Alarm]struct{}, t AlarmType) bool {
	for a := range m {
		if a.Type == t {
			return true
		}
	}
	return false
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
	be := f.ks.be
	for i, l := range logs {
		if l.Index <= f.last {
			// kv.db holds this entry already: raft replays from its newest
			// snapshot, which may be older than the file.
			out[i] = &applyResult{rev: f.ks.rev}
			continue
		}
		if l.Type == raft.LogCommand {
			commands++
			res, evs := f.applyCommand(l)
			out[i] = res
			if len(evs) > 0 {
				pub = append(pub, revEvents{rev: f.ks.rev, events: evs})
			}
		}
		f.last = l.Index
		be.applied(l.Index, l.Term)
	}
	due, full := be.due(), be.full()
	f.ks.mu.Unlock()
	f.metrics.leases.Store(int64(len(f.leases.m)))
	f.mu.Unlock()
	f.metrics.applied.Add(commands)
	f.hub.publish(pub)
	if n := len(logs); n > 0 {
		f.applied.set(logs[n-1].Index)
	}
	if due {
		be.nudge()
	}
	if full {
		be.waitRoom()
	}
	return out
}

// applyCommand applies one log entry and returns its result and the
// events it made. Called with f.mu and ks.mu held.
func (f *fsm) applyCommand(l *raft.Log) (res *applyResult, evs []Event) {
	defer func() {
		// Belt and braces: a bug on some input must not take the node down
		// in a loop. The command fails; state is as the undo log left it.
		if p := recover(); p != nil {
			f.log.Error("panic applying log entry", "index", l.Index, "panic", fmt.Sprint(p))
			res, evs = &applyResult{rev: f.ks.rev, err: fmt.Errorf("accord: internal error applying entry %d", l.Index)}, nil
		}
	}()
	cmd, err := wire.DecodeCommand(l.Data)
	if err != nil {
		if errors.Is(err, wire.ErrUnknownCommand) || errors.Is(err, wire.ErrUnknownVersion) {
			// Written by a newer version; the cluster-version gate keeps
			// this from happening in a healthy cluster.
			f.log.Error("log entry from a newer version skipped", "index", l.Index, "err", err)
			return &applyResult{rev: f.ks.rev, err: fmt.Errorf("%w: %v", ErrUnsupported, err)}, nil
		}
		f.log.Error("undecodable log entry skipped", "index", l.Index, "err", err)
		return &applyResult{rev: f.ks.rev, err: fmt.Errorf("%w: log entry %d: %v", ErrCorrupt, l.Index, err)}, nil
	}
	fail := func(err error) (*applyResult, []Event) { return &applyResult{rev: f.ks.rev, err: err}, nil }
	be := f.ks.be
	switch cmd.Type {
	case wire.CmdTxn:
		if f.noSpace.Load() && txnWrites(cmd.Txn) {
			return fail(ErrSpaceExceeded)
		}
		resp, evs, err := f.ks.applyTxn(cmd.Txn, f.leases.exists)
		if err != nil {
			return fail(err)
		}
		f.leases.track(evs)
		return &applyResult{txn: resp, rev: f.ks.rev}, evs
	case wire.CmdCompact:
		return fail(f.ks.compact(cmd.Compact))
	case wire.CmdLeaseGrant:
		ttl := time.Duration(cmd.LeaseTTLMillis) * time.Millisecond
		switch {
		case f.noSpace.Load():
			return fail(ErrSpaceExceeded)
		case cmd.LeaseID <= 0:
			return fail(ErrInvalidArgument)
		case f.leases.exists(cmd.LeaseID):
			return fail(ErrLeaseExists)
		case cmd.LeaseTTLMillis <= 0 || ttl > MaxLeaseTTL:
			return fail(ErrLeaseTTLTooLarge)
		}
		f.leases.m[cmd.LeaseID] = &leaseEntry{ttl: ttl}
		be.putOp(bucketLease, leaseKey(cmd.LeaseID), appendLeaseRecord(nil, leaseRecord{id: cmd.LeaseID, ttlMillis: cmd.LeaseTTLMillis}))
		f.l.granted(cmd.LeaseID, ttl)
		return &applyResult{rev: f.ks.rev}, nil
	case wire.CmdLeaseRevoke, wire.CmdLeaseExpire:
		if !f.leases.exists(cmd.LeaseID) {
			return fail(ErrLeaseNotFound)
		}
		var evs []Event
		if keys := f.leases.sortedKeys(cmd.LeaseID); len(keys) > 0 {
			txn := &wire.TxnRequest{Success: make([]wire.RequestOp, len(keys))}
			for i, k := range keys {
				txn.Success[i].DeleteRange = &wire.DeleteRangeRequest{Key: k}
			}
			var err error
			if _, evs, err = f.ks.applyTxn(txn, f.leases.exists); err != nil {
				return fail(err)
			}
			f.leases.track(evs)
		}
		delete(f.leases.m, cmd.LeaseID)
		be.putOp(bucketLease, leaseKey(cmd.LeaseID), nil)
		f.l.removed(cmd.LeaseID)
		return &applyResult{rev: f.ks.rev}, evs
	case wire.CmdNoop:
		return &applyResult{rev: f.ks.rev}, nil
	case wire.CmdMemberAttrs:
		if f.members == nil {
			f.members = make(map[string]memberAttrs)
		}
		a := memberAttrs{name: cmd.Member.Name, clientURLs: cmd.Member.ClientURLs}
		f.members[cmd.Member.ID] = a
		be.putOp(bucketMembers, []byte(cmd.Member.ID), encodeMemberAttrs(a))
		return &applyResult{rev: f.ks.rev}, nil
	case wire.CmdAlarm:
		return fail(f.applyAlarm(cmd.Alarm))
	}
	return fail(ErrUnsupported)
}

// applyAlarm raises or clears an alarm. Called with f.mu and ks.mu held.
func (f *fsm) applyAlarm(c *wire.AlarmChange) error {
	a := Alarm{NodeID: c.NodeID, Type: AlarmType(c.Type)}
	if a.Type != AlarmNoSpace && a.Type != AlarmCorrupt {
		return fmt.Errorf("%w: unknown alarm type %d", ErrInvalidArgument, c.Type)
	}
	key := alarmKey(etcdMemberID(a.NodeID), a.Type)
	switch c.Action {
	case wire.AlarmActivate:
		if _, ok := f.alarms[a]; ok {
			return nil
		}
		f.alarms[a] = struct{}{}
		f.ks.be.putOp(bucketAlarm, key, []byte(a.NodeID))
		f.log.Warn("alarm raised", "alarm", a.Type.String(), "member", a.NodeID)
	case wire.AlarmDeactivate:
		if _, ok := f.alarms[a]; !ok {
			return nil
		}
		delete(f.alarms, a)
		f.ks.be.putOp(bucketAlarm, key, nil)
		f.log.Info("alarm cleared", "alarm", a.Type.String(), "member", a.NodeID)
	default:
		return fmt.Errorf("%w: unknown alarm action %d", ErrInvalidArgument, c.Action)
	}
	f.noSpace.Store(hasAlarm(f.alarms, AlarmNoSpace))
	return nil
}

// txnWrites reports whether a transaction could write (etcd's capped
// applier refuses those under NOSPACE; a delete-only one is let through,
// since deleting is how space is freed).
func txnWrites(t *wire.TxnRequest) bool {
	for _, ops := range [][]wire.RequestOp{t.Success, t.Failure} {
		for i := range ops {
			switch {
			case ops[i].Put != nil:
				return true
			case ops[i].Txn != nil && txnWrites(ops[i].Txn):
				return true
			}
		}
	}
	return false
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

// Snapshot implements raft.FSM. The state is kv.db; the snapshot only has
// to make sure the file holds every entry up to the snapshot's index
// before raft trims its log (Persist).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.ks.mu.RLock()
	be := f.ks.be
	f.ks.mu.RUnlock()
	return &fsmSnapshot{be: be, index: f.last, start: time.Now(), took: f.metrics.snapSave}, nil
}

// Restore implements raft.FSM: it replaces the whole state with a
// snapshot (a kv.db from the leader, or the older ACCORDSNAP stream),
// after verifying it completely.
func (f *fsm) Restore(rc io.ReadCloser) error {
	start := time.Now()
	defer rc.Close()
	if err := f.restore(rc); err != nil {
		return err
	}
	f.metrics.snapRestore.observe(time.Since(start))
	return nil
}

// fsmSnapshot makes sure kv.db holds a snapshot's index. start is when
// Snapshot was called; a successful Persist records the time since in took.
type fsmSnapshot struct {
	be    *backend
	index uint64
	start time.Time
	took  *histogram
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.be.flush(s.index); err != nil {
		sink.Cancel()
		return err
	}
	if _, err := sink.Write(liveMarker(s.index)); err != nil {
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
