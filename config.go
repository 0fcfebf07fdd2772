package accord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Typed configuration: a Var is a value of type T bound to one key (or a
// map bound to a prefix), decoded with a Codec, and kept current by a watch
// in a goroutine of its own.
//
// Readers never wait and never lock: the goroutine decodes each change
// into a new immutable varState and swaps it into an atomic pointer, so
// Load is one atomic load. Each state carries a channel that is closed when
// a newer one replaces it, which is how waiters (Changed, Wait, and Set
// waiting for its own write) learn of changes without registering anything
// and without the goroutine ever blocking on a slow reader.

// Codec turns values into bytes and back for a Var. Marshal and Unmarshal
// may be called concurrently (Unmarshal only from the Var's goroutine,
// Marshal from every caller of Set and CompareAndSet). Unmarshal is given a
// pointer to a fresh zero value of the Var's type.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default Codec: encoding/json. It is safe for concurrent
// use.
type JSONCodec struct{}

// Marshal encodes v with json.Marshal.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data into v with json.Unmarshal.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// VarOptions configures a Var. A nil *VarOptions, like the zero value, uses
// the defaults documented on each field.
type VarOptions struct {
	// Codec encodes and decodes the values. Default nil: JSONCodec.
	Codec Codec
}

// DecodeError reports a version of a key that the Var's Codec could not
// decode. The Var keeps its last good value meanwhile; the error is in
// VarSnapshot.Err until a decodable version (or a deletion) replaces the
// bad one.
type DecodeError struct {
	Key string // the key of the bad version
	Rev int64  // its ModRevision: CompareAndSet at this revision overwrites it
	Err error  // the Codec's error
}

// Error says which version of which key failed to decode, and why.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("accord: decode %q at revision %d: %v", e.Key, e.Rev, e.Err)
}

// Unwrap returns the Codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// VarSnapshot is one consistent view of a Var: its value, the revision of
// that value and its error state, as the Var's watch last saw them.
// A VarSnapshot is immutable; Value is shared with other readers of the
// same snapshot, so a Value that is a map, slice or pointer must not be
// modified.
type VarSnapshot[T any] struct {
	// Value is the last value that decoded successfully: for a key, the
	// zero T while the key does not exist; for a prefix, a map from each
	// key's name (the key without the prefix) to its value, never nil.
	Value T

	// Rev is the revision of Value. For a key it is the ModRevision of the
	// key (0 when it does not exist), ready for CompareAndSet. For a prefix
	// it is a store revision at which the prefix held exactly the keys that
	// Value was decoded from (or a bad version of them, see Err): it only
	// grows.
	Rev int64

	// Err is nil when Value reflects the latest version the Var has seen.
	// A *DecodeError (several joined with errors.Join, for a prefix) says
	// that a newer version could not be decoded and Value is the last good
	// one. An error that matches ErrClosed says the Var has stopped
	// following its key (Close, the ctx given to BindVar ended, or the
	// store closed); when the ctx ended it also matches the ctx's error.
	// Value then stays as it was.
	Err error

	state *varState[T]
}

// Changed returns a channel that is closed when a newer snapshot replaces
// this one, or at once if this is the Var's final snapshot (Err matches
// ErrClosed). It never blocks.
func (s VarSnapshot[T]) Changed() <-chan struct{} {
	if s.state == nil { // the zero VarSnapshot: nothing will ever replace it
		return closedChan
	}
	return s.state.changed
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// varState is what the atomic pointer holds. It is never modified after
// it is published, except that changed is closed once.
type varState[T any] struct {
	value   T
	rev     int64
	err     error
	seen    int64         // every change to the key(s) up to this revision is reflected
	stopped bool          // final state: the goroutine has exited
	changed chan struct{} // closed when the next state is published
}

// Var is a typed value bound to a key (BindVar) or a prefix (BindPrefixVar)
// of a Store, kept current by a watch. Load and Snapshot never block and
// never lock; Set and CompareAndSet write through the Store. All methods
// are safe for concurrent use. Close stops the Var's goroutine; so do the
// end of the ctx given to BindVar and Store.Close (which waits for it).
//
// A Var follows the Store it was bound to, locally: on a follower it sees
// each change once this member has applied it, and while the cluster has no
// quorum it keeps its last value (no write can commit then anyway, except
// on the other side of a partition).
type Var[T any] struct {
	s      *Store
	key    string // the key, or the prefix
	prefix bool
	model  varModel[T]

	cur    atomic.Pointer[varState[T]]
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the goroutine has exited
}

// varModel is what differs between a key Var and a prefix Var: how a Get or
// a watch response becomes a value, and how a value is written. load and
// apply are only called from the Var's goroutine (or before it starts) and
// may keep state; the write methods keep none and are called concurrently.
type varModel[T any] interface {
	load(resp *GetResponse) (val T, rev int64, err error)
	apply(resp WatchResponse) (val T, rev int64, err error)
	set(ctx context.Context, s *Store, v T) (rev, wait int64, err error)
	compareAndSet(ctx context.Context, s *Store, rev int64, v T) (newRev, wait int64, err error)
}

// BindVar binds a Var of type T to key: it reads the key (a linearizable
// Get, blocking until it is served or ctx ends) and then follows it with a
// watch until Close is called, ctx ends or the store closes. Pass a ctx
// that lives as long as the Var should (as with Watch and KeepAlive), not
// one with a deadline meant for the first read only.
//
// A missing key yields the zero T; a version that fails to decode keeps the
// previous value and is reported in VarSnapshot.Err as a *DecodeError.
// BindVar returns an error only if the first read fails: ErrEmptyKey,
// ErrInvalidArgument (nil store), ErrClosed, ErrNoLeader or ctx's error. A first version that does not
// decode is not an error: the Var starts with the zero T and the
// *DecodeError in its snapshot.
func BindVar[T any](ctx context.Context, s *Store, key string, opts *VarOptions) (*Var[T], error) {
	if key == "" {
		return nil, fmt.Errorf("accord: bind var: %w", ErrEmptyKey)
	}
	return bind(ctx, s, key, false, &keyModel[T]{key: key, codec: opts.codec()})
}

// BindPrefixVar binds a Var to every key under prefix, decoded into a map
// from the key's name (the key without prefix) to a value of type E; the
// map is empty, not nil, when no key exists. It blocks, follows the prefix
// and fails like BindVar. A key that fails to decode keeps its previous
// value (or stays out of the map if it never had a good one) and is
// reported in VarSnapshot.Err.
//
// Set and CompareAndSet on a prefix Var write the whole map in one
// transaction: keys whose value changed are put, keys missing from the map
// are deleted. That transaction is subject to Options.MaxTxnOps (one
// compare per existing key, one operation per changed key), so a prefix
// Var suits maps of up to about a hundred entries.
func BindPrefixVar[E any](ctx context.Context, s *Store, prefix string, opts *VarOptions) (*Var[map[string]E], error) {
	if prefix == "" {
		return nil, fmt.Errorf("accord: bind prefix var: %w", ErrEmptyKey)
	}
	return bind(ctx, s, prefix, true, &prefixModel[E]{prefix: prefix, codec: opts.codec()})
}

func (o *VarOptions) codec() Codec {
	if o == nil || o.Codec == nil {
		return JSONCodec{}
	}
	return o.Codec
}

func bind[T any](ctx context.Context, s *Store, key string, prefix bool, m varModel[T]) (*Var[T], error) {
	if s == nil {
		return nil, fmt.Errorf("accord: bind var %q: %w: nil store", key, ErrInvalidArgument)
	}
	v := &Var[T]{s: s, key: key, prefix: prefix, model: m, done: make(chan struct{})}
	resp, err := s.Get(ctx, key, v.rangeOpts()...)
	if err != nil {
		return nil, fmt.Errorf("accord: bind var %q: %w", key, err)
	}
	val, rev, derr := m.load(resp)
	v.publish(&varState[T]{value: val, rev: rev, err: derr, seen: resp.Revision})
	runCtx, cancel := context.WithCancelCause(ctx)
	v.cancel = cancel
	// The goroutine belongs to the Store too: Store.Close waits for it, so
	// closing the store never leaves a Var goroutine behind.
	if !s.goTracked(func() { v.run(runCtx, resp.Revision+1) }) {
		cancel(nil)
		return nil, fmt.Errorf("accord: bind var %q: %w", key, ErrClosed)
	}
	return v, nil
}

func (v *Var[T]) rangeOpts() []OpOption {
	if v.prefix {
		return []OpOption{WithPrefix()}
	}
	return nil
}

// Load returns the current value. It never blocks, takes no lock and does
// not allocate: it is meant for hot paths. A map, slice or pointer value is
// shared with other readers and must not be modified. Load keeps returning
// the last value after the Var stopped.
func (v *Var[T]) Load() T { return v.cur.Load().value }

// Snapshot returns the current value together with its revision and error
// state, all from one consistent view. It never blocks, takes no lock and
// does not allocate.
func (v *Var[T]) Snapshot() VarSnapshot[T] {
	st := v.cur.Load()
	return VarSnapshot[T]{Value: st.value, Rev: st.rev, Err: st.err, state: st}
}

// Err returns the current snapshot's Err: nil, a *DecodeError, or an error
// matching ErrClosed once the Var stopped. It never blocks.
func (v *Var[T]) Err() error { return v.cur.Load().err }

// Changed returns a channel that is closed at the next change of the Var
// (a new value, a new error state, or the Var stopping). It is
// Snapshot().Changed(): to see every change, take a Snapshot, use it, then
// wait on its Changed channel, so that no change slips in between. It
// never blocks.
func (v *Var[T]) Changed() <-chan struct{} { return v.cur.Load().changed }

// Wait blocks until cond holds for the current snapshot and returns that
// snapshot. cond is called on each snapshot, from the calling goroutine.
// Wait fails with ctx's error when ctx ends first, or with the final
// snapshot's error (matching ErrClosed) if the Var stops before cond holds.
func (v *Var[T]) Wait(ctx context.Context, cond func(VarSnapshot[T]) bool) (VarSnapshot[T], error) {
	for {
		snap := v.Snapshot()
		if cond(snap) {
			return snap, nil
		}
		if snap.state.stopped {
			return snap, snap.Err
		}
		select {
		case <-snap.state.changed:
		case <-ctx.Done():
			return snap, ctx.Err()
		}
	}
}

// Set writes v through the Store (a Put for a key Var; one transaction for
// a prefix Var, see BindPrefixVar) and returns the revision of the write.
// It blocks until the write is committed and then until this Var reflects
// it (or ctx ends, or the Var stops), so that a Load after Set sees v or a
// later value: read your own writes. Errors: ErrClosed once the Var has
// stopped; those of Put (ErrNoLeader, ErrUnknownOutcome,
// ErrRequestTooLarge, ErrClosed, ctx's error) or Txn (ErrTooManyOps); or
// the Codec's. Set of a prefix Var retries when a
// concurrent writer changes the prefix between its read and its write, and
// gives up with ErrConflict after a few attempts.
func (v *Var[T]) Set(ctx context.Context, val T) (int64, error) {
	if v.cur.Load().stopped {
		return 0, fmt.Errorf("accord: set %q: %w", v.key, ErrClosed)
	}
	rev, wait, err := v.model.set(ctx, v.s, val)
	if err != nil {
		return 0, err
	}
	v.waitSeen(ctx, wait)
	return rev, nil
}

// CompareAndSet writes v only if the Var's key (or prefix) is still as it
// was at revision rev: take rev from VarSnapshot.Rev (or DecodeError.Rev to
// overwrite a bad version). For a key, rev 0 means "the key does not
// exist". It returns the revision of the write and, like Set, waits until
// the Var reflects it. When something changed since rev it writes nothing
// and fails with an error matching ErrConflict; take a new Snapshot and
// try again. For a prefix Var, a rev that has been compacted away also
// fails with ErrConflict (matching ErrCompacted too), and one beyond the
// current revision with ErrFutureRev. Other errors are those of Set.
func (v *Var[T]) CompareAndSet(ctx context.Context, rev int64, val T) (int64, error) {
	if v.cur.Load().stopped {
		return 0, fmt.Errorf("accord: compare-and-set %q: %w", v.key, ErrClosed)
	}
	newRev, wait, err := v.model.compareAndSet(ctx, v.s, rev, val)
	if err != nil {
		return 0, err
	}
	v.waitSeen(ctx, wait)
	return newRev, nil
}

// waitSeen waits until the Var has seen every change up to rev, the Var
// stopped or ctx ended. The write it waits for is committed either way, so
// it reports nothing.
func (v *Var[T]) waitSeen(ctx context.Context, rev int64) {
	for {
		st := v.cur.Load()
		if st.seen >= rev || st.stopped {
			return
		}
		select {
		case <-st.changed:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops the Var's goroutine and waits for it to exit. Load and
// Snapshot keep returning the last value; its Err then matches ErrClosed.
// Close does not touch the key and does not close the Store. It is
// idempotent, returns nil, and blocks only for as long as the goroutine
// takes to notice (it is never waiting on the network then, but on a
// cancelled context).
func (v *Var[T]) Close() error {
	v.cancel(ErrClosed)
	<-v.done
	return nil
}

// publish makes st the current state and wakes the waiters of the previous
// one. Only the Var's goroutine (and bind, before it starts) publishes.
func (v *Var[T]) publish(st *varState[T]) {
	st.changed = make(chan struct{})
	if st.stopped {
		close(st.changed) // nothing will replace it: waiters must not hang
	}
	if old := v.cur.Swap(st); old != nil {
		close(old.changed)
	}
}

// Reload backoff, for when the watch has to be re-established and the
// store cannot serve a read (no leader): from varRetryMin doubling to
// varRetryMax.
const (
	varRetryMin = 20 * time.Millisecond
	varRetryMax = 2 * time.Second
)

// run follows the key from revision from until ctx ends or the store
// closes. When the watch ends early it resumes from the next revision; when
// its history was compacted away it reads the key again and watches from
// there.
func (v *Var[T]) run(ctx context.Context, from int64) {
	defer close(v.done)
	defer func() {
		cause := context.Cause(ctx)
		var err error
		switch {
		case cause == nil || errors.Is(cause, ErrClosed):
			err = fmt.Errorf("accord: var %q stopped: %w", v.key, ErrClosed)
		default:
			err = fmt.Errorf("accord: var %q stopped: %w: %w", v.key, ErrClosed, cause)
		}
		last := v.cur.Load()
		v.publish(&varState[T]{value: last.value, rev: last.rev, err: err, seen: last.seen, stopped: true})
		v.cancel(nil) // release the context's resources if ctx ended instead of Close
	}()
	retry := varRetryMin
	for {
		reload, progressed, stop := v.follow(ctx, &from)
		if stop || ctx.Err() != nil {
			return
		}
		if progressed {
			retry = varRetryMin
		}
		if reload {
			resp, err := v.s.Get(ctx, v.key, v.rangeOpts()...)
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return
			}
			if err == nil {
				val, rev, derr := v.model.load(resp)
				last := v.cur.Load()
				v.publish(&varState[T]{value: val, rev: rev, err: derr, seen: max(last.seen, resp.Revision)})
				from = resp.Revision + 1
				retry = varRetryMin
				continue
			}
		} else if progressed {
			continue // the watch ended after doing its job: resume at once
		}
		// A failed read, or a watch that ended without delivering anything:
		// wait before trying again, so that nothing spins.
		if !v.sleep(ctx, retry) {
			return
		}
		retry = min(2*retry, varRetryMax)
	}
}

// follow watches from *from, applying and publishing every response, and
// advances *from. It returns when the watch ends: reload when the Var must
// read the key again (its history was compacted, or another error), stop
// when the store is closed, and progressed when it delivered anything.
func (v *Var[T]) follow(ctx context.Context, from *int64) (reload, progressed, stop bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // the watch goroutine exits when wctx ends
	opts := append(v.rangeOpts(), WithRev(*from))
	for resp := range v.s.Watch(wctx, v.key, opts...) {
		if resp.Err != nil {
			if errors.Is(resp.Err, ErrClosed) {
				return false, progressed, true
			}
			return true, progressed, false
		}
		progressed = true
		if len(resp.Events) == 0 {
			continue
		}
		val, rev, derr := v.model.apply(resp)
		v.publish(&varState[T]{value: val, rev: rev, err: derr, seen: resp.Revision})
		*from = resp.Revision + 1
	}
	// The channel closes without an error when ctx ends (the caller sees
	// that) or the store closes.
	return false, progressed, v.s.isClosed()
}

// sleep waits d; it reports false if ctx ends or the store closes first.
func (v *Var[T]) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-v.s.stop:
		return false
	}
}

// ---- one key ----

// keyModel is the model of a Var bound to one key. val, rev and err are
// the goroutine's state.
type keyModel[T any] struct {
	key   string
	codec Codec

	val T
	rev int64
	err error
}

func (m *keyModel[T]) load(resp *GetResponse) (T, int64, error) {
	if len(resp.KVs) == 0 {
		m.deleted()
	} else {
		m.decode(&resp.KVs[0])
	}
	return m.val, m.rev, m.err
}

func (m *keyModel[T]) apply(resp WatchResponse) (T, int64, error) {
	for i := range resp.Events {
		ev := &resp.Events[i]
		if ev.Type == EventDelete {
			m.deleted()
		} else {
			m.decode(&ev.KV)
		}
	}
	return m.val, m.rev, m.err
}

func (m *keyModel[T]) deleted() {
	var zero T
	m.val, m.rev, m.err = zero, 0, nil
}

func (m *keyModel[T]) decode(kv *KeyValue) {
	var x T
	if err := m.codec.Unmarshal(kv.Value, &x); err != nil {
		m.err = &DecodeError{Key: kv.Key, Rev: kv.ModRevision, Err: err}
		return
	}
	m.val, m.rev, m.err = x, kv.ModRevision, nil
}

func (m *keyModel[T]) set(ctx context.Context, s *Store, v T) (int64, int64, error) {
	data, err := m.codec.Marshal(v)
	if err != nil {
		return 0, 0, fmt.Errorf("accord: set %q: encode: %w", m.key, err)
	}
	put, err := s.Put(ctx, m.key, data)
	if err != nil {
		return 0, 0, err
	}
	return put.Revision, put.Revision, nil
}

func (m *keyModel[T]) compareAndSet(ctx context.Context, s *Store, rev int64, v T) (int64, int64, error) {
	data, err := m.codec.Marshal(v)
	if err != nil {
		return 0, 0, fmt.Errorf("accord: compare-and-set %q: encode: %w", m.key, err)
	}
	t, err := s.Txn(ctx).
		If(Compare(ModRevision(m.key), "=", rev)).
		Then(OpPut(m.key, data)).
		Else(OpGet(m.key, WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, 0, fmt.Errorf("accord: compare-and-set %q: %w", m.key, err)
	}
	if !t.Succeeded {
		var now int64
		if g := t.Responses[0].Get; g != nil && len(g.KVs) > 0 {
			now = g.KVs[0].ModRevision
		}
		return 0, 0, fmt.Errorf("accord: compare-and-set %q at revision %d: key is at revision %d: %w", m.key, rev, now, ErrConflict)
	}
	return t.Revision, t.Revision, nil
}

// ---- a prefix ----

// prefixMaxAttempts bounds how often Set of a prefix Var retries after a
// concurrent change.
const prefixMaxAttempts = 8

// prefixModel is the model of a Var bound to a prefix. vals, bad and rev
// are the goroutine's state: the last good value of each key name, the
// names whose latest version did not decode, and the revision seen.
type prefixModel[E any] struct {
	prefix string
	codec  Codec

	vals map[string]E
	bad  map[string]*DecodeError
	rev  int64
}

func (m *prefixModel[E]) name(key string) string { return strings.TrimPrefix(key, m.prefix) }

func (m *prefixModel[E]) load(resp *GetResponse) (map[string]E, int64, error) {
	old := m.vals
	m.vals = make(map[string]E, len(resp.KVs))
	m.bad = make(map[string]*DecodeError)
	for i := range resp.KVs {
		kv := &resp.KVs[i]
		if prev, ok := old[m.name(kv.Key)]; ok {
			m.vals[m.name(kv.Key)] = prev // the fallback if this version does not decode
		}
		m.decode(kv)
	}
	m.rev = max(m.rev, resp.Revision)
	return m.result()
}

func (m *prefixModel[E]) apply(resp WatchResponse) (map[string]E, int64, error) {
	for i := range resp.Events {
		ev := &resp.Events[i]
		if ev.Type == EventDelete {
			delete(m.vals, m.name(ev.KV.Key))
			delete(m.bad, m.name(ev.KV.Key))
		} else {
			m.decode(&ev.KV)
		}
	}
	m.rev = max(m.rev, resp.Revision)
	return m.result()
}

func (m *prefixModel[E]) decode(kv *KeyValue) {
	name := m.name(kv.Key)
	var x E
	if err := m.codec.Unmarshal(kv.Value, &x); err != nil {
		m.bad[name] = &DecodeError{Key: kv.Key, Rev: kv.ModRevision, Err: err}
		return
	}
	m.vals[name] = x
	delete(m.bad, name)
}

// result returns a copy of the state for an immutable snapshot.
func (m *prefixModel[E]) result() (map[string]E, int64, error) {
	var err error
	if len(m.bad) > 0 {
		errs := make([]error, 0, len(m.bad))
		for _, name := range slices.Sorted(maps.Keys(m.bad)) {
			errs = append(errs, m.bad[name])
		}
		if len(errs) == 1 {
			err = errs[0]
		} else {
			err = errors.Join(errs...)
		}
	}
	return maps.Clone(m.vals), m.rev, err
}

func (m *prefixModel[E]) set(ctx context.Context, s *Store, v map[string]E) (int64, int64, error) {
	enc, err := m.encode(v)
	if err != nil {
		return 0, 0, fmt.Errorf("accord: set prefix %q: %w", m.prefix, err)
	}
	for attempt := 1; ; attempt++ {
		cur, err := s.Get(ctx, m.prefix, WithPrefix())
		if err != nil {
			return 0, 0, fmt.Errorf("accord: set prefix %q: %w", m.prefix, err)
		}
		rev, wait, err := m.write(ctx, s, cur.Revision, cur.KVs, enc)
		if errors.Is(err, ErrConflict) && attempt < prefixMaxAttempts {
			continue
		}
		return rev, wait, err
	}
}

func (m *prefixModel[E]) compareAndSet(ctx context.Context, s *Store, rev int64, v map[string]E) (int64, int64, error) {
	enc, err := m.encode(v)
	if err != nil {
		return 0, 0, fmt.Errorf("accord: compare-and-set prefix %q: %w", m.prefix, err)
	}
	// The keys as they were at rev: a key deleted since then leaves no
	// trace in the current state, so the transaction names each one.
	then, err := s.Get(ctx, m.prefix, WithPrefix(), WithRev(rev))
	if errors.Is(err, ErrCompacted) {
		return 0, 0, fmt.Errorf("accord: compare-and-set prefix %q at revision %d: %w (%w)", m.prefix, rev, ErrConflict, err)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("accord: compare-and-set prefix %q at revision %d: %w", m.prefix, rev, err)
	}
	return m.write(ctx, s, rev, then.KVs, enc)
}

// encode encodes every value of v, by full key.
func (m *prefixModel[E]) encode(v map[string]E) (map[string][]byte, error) {
	enc := make(map[string][]byte, len(v))
	for name, x := range v {
		data, err := m.codec.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("encode %q: %w", name, err)
		}
		enc[m.prefix+name] = data
	}
	return enc, nil
}

// write turns the prefix from known (its keys at rev) into enc in one
// transaction, if nothing under the prefix changed after rev: no key has a
// ModRevision above rev (nothing created or changed) and every known key
// still has its ModRevision (nothing deleted). It returns the revision of
// the write and the revision the Var must reach to reflect it.
func (m *prefixModel[E]) write(ctx context.Context, s *Store, rev int64, known []KeyValue, enc map[string][]byte) (int64, int64, error) {
	cmps := []Cmp{Compare(ModRevision(m.prefix).WithPrefix(), "<", rev+1)}
	var ops []Op
	var newest int64
	had := make(map[string][]byte, len(known))
	for _, kv := range known {
		cmps = append(cmps, Compare(ModRevision(kv.Key), "=", kv.ModRevision))
		newest = max(newest, kv.ModRevision)
		had[kv.Key] = kv.Value
		if _, keep := enc[kv.Key]; !keep {
			ops = append(ops, OpDelete(kv.Key))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(enc)) {
		if old, ok := had[key]; ok && bytes.Equal(old, enc[key]) {
			continue // unchanged: no new version
		}
		ops = append(ops, OpPut(key, enc[key]))
	}
	t, err := s.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, 0, fmt.Errorf("accord: write prefix %q: %w", m.prefix, err)
	}
	if !t.Succeeded {
		return 0, 0, fmt.Errorf("accord: write prefix %q at revision %d: changed since: %w", m.prefix, rev, ErrConflict)
	}
	if len(ops) == 0 {
		// Nothing to write: the prefix already holds the map, as of rev.
		return rev, newest, nil
	}
	return t.Revision, t.Revision, nil
}
