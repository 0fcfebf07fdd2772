package accord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// Leases come in two halves.
//
// leaseTable is replicated state: which leases exist, their granted TTLs
// and the keys attached to them. Only fsm.go changes it, deterministically,
// while applying the log; it is part of every snapshot.
//
// lessor is the leader's private clock: when each lease expires. It is not
// replicated and keep-alives are not logged (they would make every
// keep-alive a disk write on every member). When a lease's time is up the
// leader proposes CmdLeaseExpire through the log, so every member deletes
// the attached keys at the same revision. A new leader does not know how
// long the old one had left, so it extends every lease to its full TTL from
// the moment it takes over (etcd's Promote), rather than expiring them all
// at once.

type leaseEntry struct {
	ttl  time.Duration
	keys map[string]struct{}
}

// leaseTable is guarded by fsm.mu: written only while applying, read by
// readers holding fsm.mu for reading.
type leaseTable struct {
	m map[int64]*leaseEntry
}

func newLeaseTable() *leaseTable { return &leaseTable{m: make(map[int64]*leaseEntry)} }

func (t *leaseTable) exists(id int64) bool { _, ok := t.m[id]; return ok }

func (t *leaseTable) attach(id int64, key string) {
	if e := t.m[id]; e != nil {
		if e.keys == nil {
			e.keys = make(map[string]struct{})
		}
		e.keys[key] = struct{}{}
	}
}

func (t *leaseTable) detach(id int64, key string) {
	if e := t.m[id]; e != nil {
		delete(e.keys, key)
	}
}

// track updates key attachments from the events of one transaction.
func (t *leaseTable) track(events []Event) {
	for i := range events {
		ev := &events[i]
		if ev.hasPrev && ev.prevLease != NoLease &&
			(ev.Type == EventDelete || ev.prevLease != ev.KV.Lease) {
			t.detach(int64(ev.prevLease), ev.KV.Key)
		}
		if ev.Type == EventPut && ev.KV.Lease != NoLease {
			t.attach(int64(ev.KV.Lease), ev.KV.Key)
		}
	}
}

func (t *leaseTable) sortedKeys(id int64) []string {
	e := t.m[id]
	if e == nil {
		return nil
	}
	keys := make([]string, 0, len(e.keys))
	for k := range e.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lessor keeps the leader's expiry clock. Safe for concurrent use.
type lessor struct {
	mu      sync.Mutex          // guards the fields below
	primary bool                // this node is the ready leader
	expiry  map[int64]time.Time // lease -> when it expires (primary only)
	ttl     map[int64]time.Duration
	pending map[int64]time.Time // expiry proposed; retry after this time
}

func newLessor() *lessor {
	return &lessor{expiry: make(map[int64]time.Time), ttl: make(map[int64]time.Duration), pending: make(map[int64]time.Time)}
}

// granted is called by the FSM when a lease is created (on every member).
func (l *lessor) granted(id int64, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ttl[id] = ttl
	l.expiry[id] = time.Now().Add(ttl)
}

// removed is called by the FSM when a lease is revoked or expired.
func (l *lessor) removed(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ttl, id)
	delete(l.expiry, id)
	delete(l.pending, id)
}

// reset forgets everything and reloads from a restored table.
func (l *lessor) reset(t *leaseTable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.expiry = make(map[int64]time.Time, len(t.m))
	l.ttl = make(map[int64]time.Duration, len(t.m))
	l.pending = make(map[int64]time.Time)
	for id, e := range t.m {
		l.ttl[id] = e.ttl
		l.expiry[id] = now.Add(e.ttl)
	}
}

// promote makes this node the one that expires leases, giving every lease
// its full TTL from now.
func (l *lessor) promote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.primary = true
	for id, ttl := range l.ttl {
		l.expiry[id] = now.Add(ttl)
	}
	clear(l.pending)
}

func (l *lessor) demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = false
}

// renew refreshes a lease on the primary. It fails with ErrLeaseNotFound
// for an unknown lease or one whose expiry is already being proposed, and
// with ErrNotLeader when this node is not the primary.
func (l *lessor) renew(id int64) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, &NotLeaderError{}
	}
	ttl, ok := l.ttl[id]
	if !ok {
		return 0, ErrLeaseNotFound
	}
	now := time.Now()
	if _, expiring := l.pending[id]; expiring || !now.Before(l.expiry[id]) {
		return 0, ErrLeaseNotFound
	}
	l.expiry[id] = now.Add(ttl)
	return ttl, nil
}

// remaining returns the time left and the granted TTL of a lease.
func (l *lessor) remaining(id int64) (left, ttl time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, 0, &NotLeaderError{}
	}
	ttl, ok := l.ttl[id]
	if !ok {
		return 0, 0, ErrLeaseNotFound
	}
	left = time.Until(l.expiry[id])
	if left < 0 {
		left = 0
	}
	return left, ttl, nil
}

// expired returns up to max leases whose time is up and that have no expiry
// proposal in flight, marking them pending for retryAfter.
func (l *lessor) expired(max int, retryAfter time.Duration) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil
	}
	now := time.Now()
	var out []int64
	for id, exp := range l.expiry {
		if len(out) >= max {
			break
		}
		if now.Before(exp) {
			continue
		}
		if retry, ok := l.pending[id]; ok && now.Before(retry) {
			continue
		}
		l.pending[id] = now.Add(retryAfter)
		out = append(out, id)
	}
	return out
}

// expiryLoop runs on every member and acts while this node is the primary:
// it proposes the expiry of leases whose time is up. At most
// maxExpirePerTick leases per tick, like etcd's revoke rate limit, so a mass
// expiry does not flood the log.
func (s *Store) expiryLoop() {
	const maxExpirePerTick = 500
	tick := s.opts.minLeaseTTL() / 8
	tick = max(min(tick, 500*time.Millisecond), 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ids := s.lessor.expired(maxExpirePerTick, 2*s.opts.ElectionTimeout)
		for _, id := range ids {
			s.wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*s.opts.ElectionTimeout)
				defer cancel()
				_, err := s.proposeAsLeader(ctx, &wire.Command{Type: wire.CmdLeaseExpire, LeaseID: id})
				if err != nil && !errors.Is(err, ErrLeaseNotFound) && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNotLeader) {
					s.log.Warn("lease expiry not committed; will retry", "lease", id, "err", err)
				}
			})
		}
	}
}

// Grant creates a lease with the given TTL and returns its ID. TTLs below
// 1.5 election timeouts are raised to that (so a lease survives a leader
// change); above MaxLeaseTTL they fail with ErrLeaseTTLTooLarge. With
// WithLeaseID the lease gets that ID, or ErrLeaseExists; WithAppliedRevision
// reports the revision at which the grant was applied. Grant blocks until
// the lease is committed or ctx ends.
func (s *Store) Grant(ctx context.Context, ttl time.Duration, opts ...OpOption) (LeaseID, error) {
	op := newOp(0, "", nil, opts)
	if ttl > MaxLeaseTTL {
		return 0, fmt.Errorf("accord: grant: %w", ErrLeaseTTLTooLarge)
	}
	ttl = max(ttl, s.opts.minLeaseTTL())
	id := int64(op.leaseID)
	if id < 0 {
		return 0, fmt.Errorf("accord: grant: %w: negative lease ID", ErrInvalidArgument)
	}
	for attempt := 0; ; attempt++ {
		cmdID := id
		if cmdID == 0 {
			cmdID = rand.Int64N(1<<62) + 1
		}
		res, err := s.propose(ctx, &wire.Command{Type: wire.CmdLeaseGrant, LeaseID: cmdID, LeaseTTLMillis: ttl.Milliseconds()})
		if errors.Is(err, ErrLeaseExists) && id == 0 && attempt < 3 {
			continue // a random ID collided; draw again
		}
		if err != nil {
			return 0, fmt.Errorf("accord: grant: %w", err)
		}
		op.setAppliedRevision(res.rev)
		return LeaseID(cmdID), nil
	}
}

// Revoke deletes a lease and, in one revision, every key attached to it;
// WithAppliedRevision reports that revision (the current one at the revoke
// if no key was attached). It fails with ErrLeaseNotFound for an unknown
// lease.
func (s *Store) Revoke(ctx context.Context, id LeaseID, opts ...OpOption) error {
	op := newOp(0, "", nil, opts)
	res, err := s.propose(ctx, &wire.Command{Type: wire.CmdLeaseRevoke, LeaseID: int64(id)})
	if err != nil {
		return fmt.Errorf("accord: revoke lease %d: %w", id, err)
	}
	op.setAppliedRevision(res.rev)
	return nil
}

// KeepAliveOnce renews a lease once, to its full TTL. On a follower the
// renewal is sent to the leader, whose clock decides expiry. It fails with
// ErrLeaseNotFound for a lease that does not exist or has expired.
func (s *Store) KeepAliveOnce(ctx context.Context, id LeaseID) (*LeaseStatus, error) {
	resp, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCLeaseKeepAlive, LeaseID: int64(id)})
	if err != nil {
		return nil, fmt.Errorf("accord: keep-alive lease %d: %w", id, err)
	}
	ttl := time.Duration(resp.TTLMillis) * time.Millisecond
	return &LeaseStatus{ID: id, TTL: ttl, GrantedTTL: ttl}, nil
}

// KeepAlive renews a lease now and then every third of its TTL until ctx
// ends, the store closes, or the lease is gone. Each renewal's status is
// sent on the returned channel if the receiver is ready (a slow receiver
// misses statuses, not renewals); the channel is closed when renewing
// stops. The first renewal happens before KeepAlive returns, so an unknown
// lease fails at once with ErrLeaseNotFound.
func (s *Store) KeepAlive(ctx context.Context, id LeaseID) (<-chan LeaseStatus, error) {
	st, err := s.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan LeaseStatus, 1)
	ch <- *st
	started := s.goTracked(func() {
		defer close(ch)
		interval := max(st.GrantedTTL/3, 10*time.Millisecond)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-t.C:
			}
			st, err := s.KeepAliveOnce(ctx, id)
			if errors.Is(err, ErrLeaseNotFound) || errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				continue // transient (no leader yet): try again next tick
			}
			select {
			case ch <- *st:
			default:
			}
		}
	})
	if !started {
		return nil, fmt.Errorf("accord: keep-alive lease %d: %w", id, ErrClosed)
	}
	return ch, nil
}

// TimeToLive reports a lease's remaining and granted TTL, as the leader's
// clock sees them; with WithAttachedKeys also its keys. It fails with
// ErrLeaseNotFound for a lease that does not exist (the etcd API reports
// that as TTL -1).
func (s *Store) TimeToLive(ctx context.Context, id LeaseID, opts ...OpOption) (*LeaseStatus, error) {
	op := newOp(0, "", nil, opts)
	resp, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCLeaseTimeToLive, LeaseID: int64(id), Keys: op.attachedKeys})
	if err != nil {
		return nil, fmt.Errorf("accord: lease %d time-to-live: %w", id, err)
	}
	return &LeaseStatus{
		ID:         id,
		TTL:        time.Duration(resp.TTLMillis) * time.Millisecond,
		GrantedTTL: time.Duration(resp.GrantedTTLMillis) * time.Millisecond,
		Keys:       resp.Keys,
	}, nil
}

// leaseKeepAlive and leaseTimeToLive are the leader's side of the lease
// calls.
func (s *Store) leaseKeepAlive(ctx context.Context, id int64) *wire.Response {
	// Confirm leadership with a quorum first. A leader that lost it
	// (paused, cut off) but has not noticed yet must not promise a TTL: a
	// newer leader may already be counting the lease down from its own
	// promotion. Once a quorum has answered, no newer leader can appear
	// for an election timeout, far longer than the renewal takes (etcd's
	// ensureLeadership before LeaseRenew). Found by the chaos harness.
	if _, err := s.confirmIndex(ctx); err != nil {
		return s.leaderResult(err)
	}
	ttl, err := s.lessor.renew(id)
	if err != nil {
		return errToWire(err)
	}
	return &wire.Response{TTLMillis: ceilMillis(ttl)}
}

func ceilMillis(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

func (s *Store) leaseTimeToLive(ctx context.Context, id int64, keys bool) *wire.Response {
	// As for a keep-alive: a deposed leader that has not noticed must not
	// report a lease alive that a newer leader already expired, nor miss
	// a revoke committed before the call: confirm leadership with a
	// quorum, then wait until everything acknowledged is applied here.
	index, err := s.confirmIndex(ctx)
	if err == nil {
		err = s.waitApplied(ctx, index)
	}
	if err != nil {
		return s.leaderResult(err)
	}
	left, ttl, err := s.lessor.remaining(id)
	if err != nil {
		return errToWire(err)
	}
	// Whole milliseconds on the wire, rounded up: a lease never looks
	// closer to expiry than it is (TTLs are granted in whole ms).
	resp := &wire.Response{TTLMillis: ceilMillis(left), GrantedTTLMillis: ceilMillis(ttl)}
	if keys {
		s.fsm.mu.RLock()
		resp.Keys = s.fsm.leases.sortedKeys(id)
		s.fsm.mu.RUnlock()
	}
	return resp
}

// Leases lists the IDs of every live lease, ascending. The read is
// linearizable.
func (s *Store) Leases(ctx context.Context) ([]LeaseID, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, fmt.Errorf("accord: leases: %w", err)
	}
	s.fsm.mu.RLock()
	ids := make([]LeaseID, 0, len(s.fsm.leases.m))
	for id := range s.fsm.leases.m {
		ids = append(ids, LeaseID(id))
	}
	s.fsm.mu.RUnlock()
	slices.Sort(ids)
	return ids, nil
}
