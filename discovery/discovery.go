// Package discovery registers service instances in an accord store and
// resolves them, in the manner of etcd's endpoints manager and Consul's
// service catalog, on top of accord's leases and watches.
//
// An instance registers under a prefix with Register: its entry (prefix +
// instance ID, holding a value such as its address) is attached to a lease
// that a background goroutine keeps alive. Close deregisters it at once; if
// the process dies, or stops renewing, the entry disappears when the lease
// expires, one TTL later.
//
//	reg, err := discovery.Register(ctx, store, "services/api/", "api-1", []byte("10.0.0.1:8080"), 10*time.Second)
//	if err != nil {
//		return err
//	}
//	defer reg.Close()
//
// A client follows the prefix with a Resolver, which keeps the list of live
// instances current from a watch and never blocks its readers:
//
//	r, err := discovery.NewResolver(ctx, store, "services/api/", nil)
//	...
//	for _, inst := range r.Instances() {
//		fmt.Println(inst.ID, string(inst.Value))
//	}
//
// # When the cluster loses quorum
//
// Nothing is lost and nothing is invented. Registrations stay until their
// lease expires, and leases do not expire without a leader: a new leader
// gives every lease its full TTL again. Keep-alives fail meanwhile and are
// retried; a registration whose lease did expire registers again with a new
// lease. The Resolver keeps its last list and marks it stale (State.Stale)
// as soon as a linearizable read fails, until it can read the prefix again
// and resync.
package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/accordkv/accord"
)

// ---- registration ----

// Registration is an instance registered under a prefix: the key prefix+ID
// attached to a lease that a background goroutine keeps alive. Its methods
// are safe for concurrent use.
type Registration struct {
	s   *accord.Store
	key string
	ttl time.Duration

	// mu guards value and serialises the writes of the key (Update and
	// re-registration), so that the key is always written with the latest
	// value and the current lease. lease changes only with mu held.
	mu    sync.Mutex
	value []byte
	lease atomic.Int64 // the accord.LeaseID the key is attached to

	cancel    context.CancelFunc
	done      chan struct{} // closed when the keep-alive goroutine exits
	closeOnce sync.Once
	closeErr  error
}

// Register registers an instance: it grants a lease of the given TTL, puts
// prefix+instanceID = value attached to it, and starts a goroutine that
// renews the lease every third of its TTL. If the lease is lost anyway (it
// expired while this process could not reach the leader, or someone
// revoked it) the goroutine registers again with a new lease. (A key
// deleted by someone else while its lease lives is not written again
// until the lease is lost.)
//
// Register blocks until the entry is written or ctx ends. ctx then bounds
// the registration's life, as it does for Store.KeepAlive and etcd's
// sessions: when ctx ends, renewals stop without deregistering, and the
// entry disappears when its lease expires, as if the process had died.
// Close deregisters at once. The TTL is raised to the store's minimum (1.5
// election timeouts) if it is below.
//
// Errors: accord.ErrInvalidArgument for an empty instance ID or a TTL that
// is not positive; otherwise those of Store.Grant and Store.Put
// (accord.ErrNoLeader, accord.ErrClosed, accord.ErrUnknownOutcome, ctx's
// error). On error nothing stays registered (a lease granted before the
// failure is revoked, or expires).
func Register(ctx context.Context, s *accord.Store, prefix, instanceID string, value []byte, ttl time.Duration) (*Registration, error) {
	key := prefix + instanceID
	if s == nil || instanceID == "" || ttl <= 0 {
		return nil, fmt.Errorf("discovery: register %q: %w: need a store, an instance ID and a positive TTL", key, accord.ErrInvalidArgument)
	}
	r := &Registration{s: s, key: key, ttl: ttl, value: bytes.Clone(value), done: make(chan struct{})}
	lease, err := r.register(ctx)
	if err != nil {
		return nil, err
	}
	r.lease.Store(int64(lease))
	runCtx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go r.keepAlive(runCtx)
	return r, nil
}

// register grants a new lease and writes the key with it. Called with mu
// held, or before the goroutine starts.
func (r *Registration) register(ctx context.Context) (accord.LeaseID, error) {
	lease, err := r.s.Grant(ctx, r.ttl)
	if err != nil {
		return 0, fmt.Errorf("discovery: register %q: %w", r.key, err)
	}
	if _, err := r.s.Put(ctx, r.key, r.value, accord.WithLease(lease)); err != nil {
		// Do not leave the lease behind; if the revoke fails too, it
		// expires by itself.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.ttl)
		_ = r.s.Revoke(rctx, lease)
		cancel()
		return 0, fmt.Errorf("discovery: register %q: %w", r.key, err)
	}
	return lease, nil
}

// keepAlive renews the lease every ttl/3 until ctx ends or the store
// closes. A renewal that fails for want of a leader is simply tried again
// at the next tick: the lease cannot expire while there is no leader.
func (r *Registration) keepAlive(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(max(r.ttl/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, r.ttl/3+time.Millisecond)
		lease := r.Lease()
		_, err := r.s.KeepAliveOnce(rctx, lease)
		if errors.Is(err, accord.ErrLeaseNotFound) {
			r.mu.Lock()
			if newLease, rerr := r.register(rctx); rerr == nil {
				r.lease.Store(int64(newLease))
			} else {
				err = rerr
			}
			r.mu.Unlock()
		}
		cancel()
		if errors.Is(err, accord.ErrClosed) {
			return
		}
	}
}

// Key returns the registered key: prefix + instance ID. It never blocks.
func (r *Registration) Key() string { return r.key }

// Lease returns the lease the entry is currently attached to; it changes
// when the registration had to register again. It never blocks.
func (r *Registration) Lease() accord.LeaseID { return accord.LeaseID(r.lease.Load()) }

// Update replaces the registered value (keeping the lease). It blocks until
// the write is committed or ctx ends. Errors: those of Store.Put, and
// accord.ErrClosed once the registration has stopped (Close, or the ctx
// given to Register ended).
func (r *Registration) Update(ctx context.Context, value []byte) error {
	select {
	case <-r.done:
		return fmt.Errorf("discovery: update %q: registration stopped: %w", r.key, accord.ErrClosed)
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.s.Put(ctx, r.key, value, accord.WithLease(r.Lease())); err != nil {
		return fmt.Errorf("discovery: update %q: %w", r.key, err)
	}
	r.value = bytes.Clone(value)
	return nil
}

// Close deregisters the instance: it stops the renewals and revokes the
// lease, which deletes the entry at once. It blocks until the revocation is
// committed, for at most the TTL (after which the lease would have expired
// anyway). A lease already gone is not an error; a revocation that could
// not be committed in time (no leader) is returned, and the entry then
// disappears when its lease expires. Close is idempotent. If the store is
// closed first, the renewal goroutine stops by itself at its next renewal
// and Close reports accord.ErrClosed.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		ctx, cancel := context.WithTimeout(context.Background(), r.ttl)
		defer cancel()
		err := r.s.Revoke(ctx, r.Lease())
		if err != nil && !errors.Is(err, accord.ErrLeaseNotFound) {
			r.closeErr = fmt.Errorf("discovery: deregister %q: %w", r.key, err)
		}
	})
	return r.closeErr
}

// ---- resolution ----

// Instance is one registered instance, as a Resolver sees it.
type Instance struct {
	ID          string         // the key without the prefix
	Value       []byte         // what the instance registered, e.g. its address
	Lease       accord.LeaseID // the lease its entry is attached to
	ModRevision int64          // the revision of this value
}

// State is a Resolver's view of the prefix: the instances, sorted by ID,
// and how fresh that list is. A State is a copy: changing it changes
// nothing else.
type State struct {
	Instances []Instance

	// Rev is the store revision the list reflects.
	Rev int64

	// Stale is true when the list may be out of date: the store could not
	// serve a linearizable read within ResolverOptions.CheckInterval (no
	// quorum, no leader), or the watch broke and the Resolver has not read
	// the prefix again yet, or the Resolver stopped. The list is then the
	// last one known; it is refreshed as soon as the store answers again.
	Stale bool

	// Err says why the list is stale: the failed read's error, or, once
	// the Resolver stopped, an error matching accord.ErrClosed (and ctx's
	// error if ctx ended). Nil when Stale is false.
	Err error

	st *resolverState
}

// Changed returns a channel that is closed when a newer State replaces
// this one (a change of the list or of its staleness), or at once if the
// Resolver has stopped. It never blocks.
func (s State) Changed() <-chan struct{} {
	if s.st == nil {
		return closedChan
	}
	return s.st.changed
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// resolverState is the immutable state a Resolver publishes.
type resolverState struct {
	instances []Instance // sorted by ID; never modified after publication
	rev       int64
	stale     bool
	err       error
	stopped   bool
	changed   chan struct{} // closed when the next state is published
}

// ResolverOptions configures a Resolver. A nil *ResolverOptions, like the
// zero value, uses the defaults documented on each field.
type ResolverOptions struct {
	// CheckInterval is how often the Resolver checks, with a linearizable
	// read, that the store still answers, and how long it lets that read
	// take. A read that fails marks the list stale. Default 1s.
	CheckInterval time.Duration
}

// Resolver keeps a live list of the instances registered under a prefix:
// it reads the prefix, then follows it with a watch, and checks now and
// then that the store can still serve linearizable reads. Reading the list
// never blocks. Its methods are safe for concurrent use.
type Resolver struct {
	s        *accord.Store
	prefix   string
	interval time.Duration

	cur    atomic.Pointer[resolverState]
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the goroutine exits
}

// errResolverClosed is the cause of a Resolver's context when Close stops it.
var errResolverClosed = errors.New("discovery: resolver closed")

// NewResolver reads the instances under prefix (a linearizable read that
// blocks until it is served or ctx ends) and keeps following them until
// Close is called, ctx ends or the store closes; ctx should live as long as
// the Resolver. Errors: accord.ErrEmptyKey for an empty prefix, or those of
// Store.Get (accord.ErrNoLeader, accord.ErrClosed, ctx's error).
func NewResolver(ctx context.Context, s *accord.Store, prefix string, opts *ResolverOptions) (*Resolver, error) {
	if prefix == "" {
		return nil, fmt.Errorf("discovery: resolve: %w", accord.ErrEmptyKey)
	}
	if s == nil {
		return nil, fmt.Errorf("discovery: resolve %q: %w: nil store", prefix, accord.ErrInvalidArgument)
	}
	r := &Resolver{s: s, prefix: prefix, interval: time.Second, done: make(chan struct{})}
	if opts != nil && opts.CheckInterval > 0 {
		r.interval = opts.CheckInterval
	}
	resp, err := s.Get(ctx, prefix, accord.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("discovery: resolve %q: %w", prefix, err)
	}
	list := make(map[string]Instance, len(resp.KVs))
	for _, kv := range resp.KVs {
		list[kv.Key] = r.instance(kv)
	}
	r.publish(&resolverState{instances: sorted(list), rev: resp.Revision})
	runCtx, cancel := context.WithCancelCause(ctx)
	r.cancel = cancel
	go r.run(runCtx, list, resp.Revision)
	return r, nil
}

func (r *Resolver) instance(kv accord.KeyValue) Instance {
	return Instance{ID: strings.TrimPrefix(kv.Key, r.prefix), Value: kv.Value, Lease: kv.Lease, ModRevision: kv.ModRevision}
}

func sorted(list map[string]Instance) []Instance {
	out := make([]Instance, 0, len(list))
	for _, inst := range list {
		out = append(out, inst)
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// State returns the current list with its revision and staleness, as a
// copy. It never blocks and takes no lock.
func (r *Resolver) State() State {
	st := r.cur.Load()
	out := make([]Instance, len(st.instances))
	for i, inst := range st.instances {
		inst.Value = bytes.Clone(inst.Value)
		out[i] = inst
	}
	return State{Instances: out, Rev: st.rev, Stale: st.stale, Err: st.err, st: st}
}

// Instances returns a copy of the current list of instances, sorted by ID.
// It never blocks; while the store is unreachable it returns the last list
// known (see Stale).
func (r *Resolver) Instances() []Instance { return r.State().Instances }

// Stale reports whether the list may be out of date (see State.Stale). It
// never blocks.
func (r *Resolver) Stale() bool { return r.cur.Load().stale }

// Wait blocks until cond holds for the current State and returns that
// State. It fails with ctx's error if ctx ends first, or with the final
// State's Err (matching accord.ErrClosed) if the Resolver stops first.
func (r *Resolver) Wait(ctx context.Context, cond func(State) bool) (State, error) {
	for {
		st := r.State()
		if cond(st) {
			return st, nil
		}
		if st.st.stopped {
			return st, st.Err
		}
		select {
		case <-st.st.changed:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// Close stops the Resolver and waits for its goroutine to exit; the list
// stays readable, marked stale with an error matching accord.ErrClosed.
// It is idempotent and returns nil.
func (r *Resolver) Close() error {
	r.cancel(errResolverClosed)
	<-r.done
	return nil
}

// publish makes st current and wakes the waiters of the previous state.
// Only the Resolver's goroutine (and NewResolver, before it starts)
// publishes.
func (r *Resolver) publish(st *resolverState) {
	st.changed = make(chan struct{})
	if st.stopped {
		close(st.changed)
	}
	if old := r.cur.Swap(st); old != nil {
		close(old.changed)
	}
}

// run follows the prefix: it applies watch events, checks every interval
// that the store answers linearizable reads, and when a check fails or the
// watch breaks marks the list stale and reads the whole prefix again
// (then watches from there) until that succeeds.
func (r *Resolver) run(ctx context.Context, list map[string]Instance, rev int64) {
	defer close(r.done)
	var wcancel context.CancelFunc = func() {}
	defer func() { wcancel() }()
	defer func() {
		cause := context.Cause(ctx)
		err := fmt.Errorf("discovery: resolver %q stopped: %w", r.prefix, accord.ErrClosed)
		if cause != nil && !errors.Is(cause, errResolverClosed) {
			err = fmt.Errorf("discovery: resolver %q stopped: %w: %w", r.prefix, accord.ErrClosed, cause)
		}
		last := r.cur.Load()
		r.publish(&resolverState{instances: last.instances, rev: last.rev, stale: true, err: err, stopped: true})
		r.cancel(nil)
	}()

	var events <-chan accord.WatchResponse
	watch := func(from int64) {
		wcancel()
		var wctx context.Context
		wctx, wcancel = context.WithCancel(ctx)
		events = r.s.Watch(wctx, r.prefix, accord.WithPrefix(), accord.WithRev(from))
	}
	watch(rev + 1)

	stale := false
	var staleErr error
	setStale := func(err error) {
		if !stale {
			stale, staleErr = true, err
			last := r.cur.Load()
			r.publish(&resolverState{instances: last.instances, rev: last.rev, stale: true, err: err})
		}
	}
	// resync reads the whole prefix and watches from there. A failed read
	// marks the list stale; resync reports true when the Resolver must stop
	// (the store is closed or ctx ended).
	resync := func() (stop bool) {
		rctx, cancel := context.WithTimeout(ctx, r.interval)
		defer cancel()
		resp, err := r.s.Get(rctx, r.prefix, accord.WithPrefix())
		if err != nil {
			if errors.Is(err, accord.ErrClosed) || ctx.Err() != nil {
				return true
			}
			setStale(fmt.Errorf("discovery: resolver %q: %w", r.prefix, err))
			return false
		}
		clear(list)
		for _, kv := range resp.KVs {
			list[kv.Key] = r.instance(kv)
		}
		stale, staleErr = false, nil
		r.publish(&resolverState{instances: sorted(list), rev: resp.Revision})
		watch(resp.Revision + 1)
		return false
	}

	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-events:
			if !ok || resp.Err != nil {
				// The watch ended: the store closed, or the history it
				// needed was compacted. Read everything again (until that
				// works, the list is stale).
				events = nil
				if resync() {
					return
				}
				continue
			}
			for _, ev := range resp.Events {
				if ev.Type == accord.EventDelete {
					delete(list, ev.KV.Key)
				} else {
					list[ev.KV.Key] = r.instance(ev.KV)
				}
			}
			r.publish(&resolverState{instances: sorted(list), rev: resp.Revision, stale: stale, err: staleErr})
		case <-tick.C:
			if stale || events == nil {
				if resync() {
					return
				}
				continue
			}
			// The check: can the store serve a linearizable read now? A
			// count-only read of the prefix is cheap.
			cctx, cancel := context.WithTimeout(ctx, r.interval)
			_, err := r.s.Get(cctx, r.prefix, accord.WithPrefix(), accord.WithCountOnly())
			cancel()
			if err != nil {
				if errors.Is(err, accord.ErrClosed) || ctx.Err() != nil {
					return
				}
				setStale(fmt.Errorf("discovery: resolver %q: %w", r.prefix, err))
			}
		}
	}
}
