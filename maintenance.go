package accord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// This file holds the space quota, alarms and defragmentation: etcd's
// maintenance calls for kv.db.

// DataFormat is the data directory format this build writes (recorded in
// accord.manifest; see docs/VERSIONS.md).
const DataFormat = formatVersion

// FormatReadBy returns the oldest accord release that reads data
// directories of format f ("" for a format this build does not know):
// what a downgrade must not go below.
func FormatReadBy(f int) string {
	switch f {
	case 1:
		return "0.1.0"
	case 2:
		return "0.2.0"
	case 3:
		return "0.3.0"
	}
	return ""
}

// StorageVersion returns kv.db's storage schema version, etcd's meta
// storageVersion ("3.6.0" in files accord created, etcd's own in a file
// restored from etcd), or "" if the file has none.
func (s *Store) StorageVersion() string {
	s.ks.mu.RLock()
	be := s.ks.be
	s.ks.mu.RUnlock()
	return be.storageVersion()
}

// addsData reports whether a command can make kv.db grow: what the quota
// refuses (etcd's quota check covers Put, Txn and LeaseGrant).
func addsData(cmd *wire.Command) bool {
	switch cmd.Type {
	case wire.CmdTxn:
		return cmd.Txn != nil && txnWrites(cmd.Txn)
	case wire.CmdLeaseGrant:
		return true
	}
	return false
}

// checkQuota refuses a write that adds data while a NOSPACE alarm is on,
// or that would take this member's kv.db past Options.QuotaBytes, in which
// case it raises the alarm first (etcd's quota check on the member the
// request reached). size is the encoded command's.
func (s *Store) checkQuota(ctx context.Context, cmd *wire.Command, size int) error {
	if !addsData(cmd) {
		return nil
	}
	if s.fsm.noSpace.Load() {
		return ErrSpaceExceeded
	}
	if s.ks.projectedSize()+int64(size) <= s.opts.QuotaBytes {
		return nil
	}
	if err := s.raiseAlarm(ctx, AlarmNoSpace); err != nil {
		s.log.Warn("cannot raise the NOSPACE alarm", "err", err)
	}
	return ErrSpaceExceeded
}

// raiseAlarm raises an alarm for this member through the log.
func (s *Store) raiseAlarm(ctx context.Context, t AlarmType) error {
	return s.proposeAlarm(ctx, &wire.AlarmChange{Action: wire.AlarmActivate, Type: int32(t), NodeID: s.id})
}

// proposeAlarm commits an alarm change once every member can apply it
// (versionAlarms): a member of 0.2 would stop at an entry it does not know.
func (s *Store) proposeAlarm(ctx context.Context, a *wire.AlarmChange) error {
	if ok, lowest := s.clusterAtLeast(ctx, versionAlarms); !ok {
		if lowest == "" {
			lowest = "unknown"
		}
		return fmt.Errorf("%w: alarms need every member at %s or later (cluster version %s)", ErrUnsupported, versionAlarms, lowest)
	}
	_, err := s.propose(ctx, &wire.Command{Type: wire.CmdAlarm, Alarm: a})
	return err
}

// quotaAtOpen raises the NOSPACE alarm once the cluster can take it, when
// kv.db is already past the quota at Open (a quota lowered across a
// restart, as etcd does at start). It runs until the alarm is committed or
// the store closes.
func (s *Store) quotaAtOpen() {
	if size, _ := s.ks.Sizes(); size <= s.opts.QuotaBytes || s.fsm.noSpace.Load() {
		return
	}
	s.log.Warn("kv.db is larger than the quota: raising the NOSPACE alarm", "quota", s.opts.QuotaBytes)
	for attempt := 0; ; attempt++ {
		// propose itself ends with ErrClosed when the store closes.
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.opts.ElectionTimeout)
		err := s.raiseAlarm(ctx, AlarmNoSpace)
		cancel()
		if err == nil || errors.Is(err, ErrClosed) {
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second)):
		}
	}
}

// Alarms lists the cluster's active alarms. The read is linearizable.
func (s *Store) Alarms(ctx context.Context) ([]Alarm, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, fmt.Errorf("accord: alarms: %w", err)
	}
	return s.fsm.alarmList(), nil
}

// ActivateAlarm raises an alarm through the log (etcd's alarm ACTIVATE).
// A NOSPACE alarm stops writes that add data on every member. Raising an
// active alarm succeeds and changes nothing.
func (s *Store) ActivateAlarm(ctx context.Context, a Alarm) error {
	if a.NodeID == "" {
		return fmt.Errorf("accord: activate alarm: %w: no member", ErrInvalidArgument)
	}
	if err := s.proposeAlarm(ctx, &wire.AlarmChange{Action: wire.AlarmActivate, Type: int32(a.Type), NodeID: a.NodeID}); err != nil {
		return fmt.Errorf("accord: activate alarm %s of %s: %w", a.Type, a.NodeID, err)
	}
	return nil
}

// DisarmAlarm clears an alarm through the log (etcd's alarm disarm). A
// NOSPACE alarm is raised again by the next write that finds kv.db past
// the quota, so disarm once Compact and Defragment have made room.
// Disarming an alarm that is not active succeeds and changes nothing.
func (s *Store) DisarmAlarm(ctx context.Context, a Alarm) error {
	if a.NodeID == "" {
		return fmt.Errorf("accord: disarm alarm: %w: no member", ErrInvalidArgument)
	}
	if err := s.proposeAlarm(ctx, &wire.AlarmChange{Action: wire.AlarmDeactivate, Type: int32(a.Type), NodeID: a.NodeID}); err != nil {
		return fmt.Errorf("accord: disarm alarm %s of %s: %w", a.Type, a.NodeID, err)
	}
	return nil
}

// Defragment rewrites this member's kv.db into a new file holding only the
// pages in use, giving the space that compaction and deletes freed back to
// the file system (etcd's defrag, which is per member too). Writes keep
// being applied while it runs, and are written to the new file after it;
// none is lost. It blocks until done, or until ctx ends while it waits
// for its turn; once the copy has started it runs to the end.
func (s *Store) Defragment(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("accord: defragment: %w", ErrClosed)
	}
	s.ks.mu.RLock()
	be := s.ks.be
	s.ks.mu.RUnlock()
	type result struct {
		before, after int64
		err           error
	}
	ch := make(chan result, 1)
	if !s.goTracked(func() {
		b, a, err := be.defrag()
		ch <- result{b, a, err}
	}) {
		return fmt.Errorf("accord: defragment: %w", ErrClosed)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("accord: defragment: %w", r.err)
		}
		s.log.Info("kv.db defragmented", "before", r.before, "after", r.after)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("accord: defragment: %w", ctx.Err())
	}
}
