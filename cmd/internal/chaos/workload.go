package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key spaces of the workloads.
const (
	regPrefix    = "r/" // registers
	listPrefix   = "a/" // append lists
	leasePrefix  = "l/" // lease keys: l/<client>/<lease seq>/<n>
	crashPrefix  = "c/" // crash loop writes
	barrierKey   = "chaos/barrier"
	probeKeyName = "chaos/probe"
)

// backoffAfterError is how long a client waits after an error: a write
// that fails at once (its member is down) must not flood the history with
// operations of unknown outcome.
func backoffAfterError(ctx context.Context, rng *rand.Rand) {
	pace(ctx, time.Duration(20+rng.IntN(60))*time.Millisecond)
}

// ---- registers ----

// regClient runs Get, Put, Delete and CAS on the register keys.
type regClient struct {
	id   int
	cli  *clientv3.Client
	keys []string
	rng  *rand.Rand
	rec  *recorder
	cfg  *Config
	seq  int
	seen map[string]*KV // per key, the last version this client saw (nil: absent or unknown)
}

func (w *regClient) run(ctx context.Context, stopAt time.Time) {
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		w.step(ctx)
	}
}

func (w *regClient) step(ctx context.Context) {
	key := pick(w.rng, w.keys)
	op := &Op{Client: w.id, Key: key}
	switch p := w.rng.IntN(100); {
	case p < 30:
		op.Kind = opGet
	case p < 40:
		op.Kind = opGetLocal
	case p < 65:
		op.Kind = opPut
	case p < 75:
		op.Kind = opDelete
	default:
		op.Kind = opCAS
	}
	if op.Kind == opPut || op.Kind == opCAS {
		w.seq++
		op.Value = fmt.Sprintf("r%d.%d", w.id, w.seq)
	}
	if op.Kind == opCAS {
		if kv := w.seen[key]; kv != nil {
			op.ExpRev, op.ExpValue = kv.Mod, kv.Value
		}
	}
	octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	var err error
	op.Call = w.rec.now()
	switch op.Kind {
	case opGet, opGetLocal:
		var opts []clientv3.OpOption
		if op.Kind == opGetLocal {
			opts = append(opts, clientv3.WithSerializable())
		}
		var r *clientv3.GetResponse
		if r, err = w.cli.Get(octx, key, opts...); err == nil {
			op.Rev, op.KVs = r.Header.Revision, kvsOf(r.Kvs)
		}
	case opPut:
		var r *clientv3.PutResponse
		if r, err = w.cli.Put(octx, key, op.Value); err == nil {
			op.Rev = r.Header.Revision
		}
	case opDelete:
		var r *clientv3.DeleteResponse
		if r, err = w.cli.Delete(octx, key); err == nil {
			op.Rev, op.Deleted = r.Header.Revision, r.Deleted
		}
	case opCAS:
		var r *clientv3.TxnResponse
		r, err = w.cli.Txn(octx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", op.ExpRev)).
			Then(clientv3.OpPut(key, op.Value)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err == nil {
			op.Rev, op.Succeeded = r.Header.Revision, r.Succeeded
			if !r.Succeeded && len(r.Responses) == 1 && r.Responses[0].GetResponseRange() != nil {
				op.KVs = kvsOf(r.Responses[0].GetResponseRange().Kvs)
			}
		}
	}
	w.rec.finish(op, err)
	if err != nil {
		if op.isWrite() {
			delete(w.seen, key) // no longer sure what is there
		}
		backoffAfterError(ctx, w.rng)
		return
	}
	switch {
	case op.Kind == opGet || op.Kind == opGetLocal || op.Kind == opCAS && !op.Succeeded:
		w.seen[key] = nil
		if len(op.KVs) > 0 {
			w.seen[key] = &op.KVs[0]
		}
	case op.Kind == opPut || op.Kind == opCAS:
		w.seen[key] = &KV{Key: key, Value: op.Value, Mod: op.Rev}
	case op.Kind == opDelete:
		w.seen[key] = nil
	}
}

// ---- append lists ----

// appendClient appends a unique id to 2 or 3 list keys in one
// transaction: it reads them (one read-only Txn), then writes each list
// plus the id guarded by the mod revisions it read.
type appendClient struct {
	id   int
	cli  *clientv3.Client
	keys []string
	rng  *rand.Rand
	rec  *recorder
	cfg  *Config
	seq  int
}

func (w *appendClient) run(ctx context.Context, stopAt time.Time) {
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		w.step(ctx)
	}
}

func (w *appendClient) step(ctx context.Context) {
	keys := slices.Clone(w.keys)
	w.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	keys = keys[:2+w.rng.IntN(2)]
	slices.Sort(keys)

	read := &Op{Client: w.id, Kind: opTxnRead, Keys: keys}
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		gets[i] = clientv3.OpGet(k)
	}
	octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	read.Call = w.rec.now()
	r, err := w.cli.Txn(octx).Then(gets...).Commit()
	cancel()
	if err == nil {
		read.Rev = r.Header.Revision
		for _, resp := range r.Responses {
			if rr := resp.GetResponseRange(); rr != nil {
				read.KVs = append(read.KVs, kvsOf(rr.Kvs)...)
			}
		}
	}
	w.rec.finish(read, err)
	if err != nil {
		backoffAfterError(ctx, w.rng)
		return
	}

	w.seq++
	app := &Op{Client: w.id, Kind: opTxnAppend, Keys: keys, Value: fmt.Sprintf("%d.%d", w.id, w.seq)}
	cmps := make([]clientv3.Cmp, len(keys))
	puts := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		var cur *KV
		for j := range read.KVs {
			if read.KVs[j].Key == k {
				cur = &read.KVs[j]
			}
		}
		mod, val := int64(0), app.Value
		if cur != nil {
			mod, val = cur.Mod, cur.Value+" "+app.Value
		}
		app.ExpRevs = append(app.ExpRevs, mod)
		cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", mod)
		puts[i] = clientv3.OpPut(k, val)
	}
	octx, cancel = context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	app.Call = w.rec.now()
	t, err := w.cli.Txn(octx).If(cmps...).Then(puts...).Commit()
	if err == nil {
		app.Rev, app.Succeeded = t.Header.Revision, t.Succeeded
	}
	w.rec.finish(app, err)
	if err != nil {
		backoffAfterError(ctx, w.rng)
	}
}

// ---- leases ----

// leaseClient grants a lease, attaches one or two keys, keeps the lease
// alive for a while (checking the keys are there), then revokes it or
// abandons it to expire. It checks, as it goes, that keys vanish only
// after the lease expired or was revoked: a key found missing before the
// deadline that the client's own acknowledged keep-alives guarantee is a
// violation, as is a keep-alive or revoke answered "not found" before it.
type leaseClient struct {
	id  int
	cli *clientv3.Client
	rng *rand.Rand
	rec *recorder
	cfg *Config
	rep *Report
	seq int

	mu        sync.Mutex // guards abandoned
	abandoned []*leaseRecord
}

// leaseRecord is what the client knows of one lease.
type leaseRecord struct {
	ID       int64
	Prefix   string
	Keys     []string  // keys whose put was acknowledged
	Unsure   []string  // keys whose put had an unknown outcome
	Deadline time.Time // the lease cannot expire before this
}

// leaseMargin absorbs timestamping slack in the deadline comparisons.
const leaseMargin = 10 * time.Millisecond

func (w *leaseClient) run(ctx context.Context, stopAt time.Time) {
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		w.cycle(ctx, stopAt)
	}
}

func (w *leaseClient) cycle(ctx context.Context, stopAt time.Time) {
	ttl := int64(w.cfg.LeaseTTL / time.Second)
	w.seq++
	lr := &leaseRecord{Prefix: fmt.Sprintf("%s%d/%d/", leasePrefix, w.id, w.seq)}

	grant := &Op{Client: w.id, Kind: opLeaseGrant, TTL: ttl}
	octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	grant.Call = w.rec.now()
	g, err := w.cli.Grant(octx, ttl)
	cancel()
	if err == nil {
		grant.Lease, grant.TTL, grant.Rev = int64(g.ID), g.TTL, g.Revision
	}
	w.rec.finish(grant, err)
	if err != nil {
		grant.Status = statusUnknown // an unknown grant expires by itself; nothing uses it
		backoffAfterError(ctx, w.rng)
		return
	}
	lr.ID = grant.Lease
	lr.Deadline = w.rec.at(grant.Call).Add(time.Duration(g.TTL) * time.Second)

	for i := range 1 + w.rng.IntN(2) {
		key := fmt.Sprintf("%s%d", lr.Prefix, i)
		put := &Op{Client: w.id, Kind: opLeasePut, Key: key, Value: fmt.Sprintf("lease %x", lr.ID), Lease: lr.ID}
		octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		put.Call = w.rec.now()
		p, err := w.cli.Put(octx, key, put.Value, clientv3.WithLease(g.ID))
		cancel()
		if err == nil {
			put.Rev = p.Header.Revision
		}
		w.rec.finish(put, err)
		switch {
		case err == nil:
			lr.Keys = append(lr.Keys, key)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			put.Status = statusFailed
			if ret := w.rec.at(put.Return); ret.Add(leaseMargin).Before(lr.Deadline) {
				w.rep.violate("lease", "put %s with lease %x answered %q at %s, %v before the lease could expire (granted TTL %ds)",
					key, lr.ID, err, stamp(w.rec, ret), lr.Deadline.Sub(ret).Round(time.Millisecond), g.TTL)
			}
		default:
			lr.Unsure = append(lr.Unsure, key)
		}
	}

	// Keep alive for a while, checking the keys.
	hold := time.Duration(1000+w.rng.IntN(3000)) * time.Millisecond
	until := time.Now().Add(hold)
	alive := true
	for alive && ctx.Err() == nil && time.Now().Before(until) && time.Now().Before(stopAt) {
		pace(ctx, w.cfg.LeaseTTL/5)
		alive = w.keepAlive(ctx, lr) && w.checkKeys(ctx, lr, "while kept alive")
	}
	if !alive || ctx.Err() != nil {
		return
	}
	if time.Now().After(stopAt) || w.rng.IntN(2) == 0 {
		w.mu.Lock()
		w.abandoned = append(w.abandoned, lr)
		w.mu.Unlock()
		return
	}
	rv := &Op{Client: w.id, Kind: opLeaseRevoke, Lease: lr.ID}
	octx, cancel = context.WithTimeout(ctx, w.cfg.OpTimeout)
	rv.Call = w.rec.now()
	rr, err := w.cli.Revoke(octx, clientv3.LeaseID(lr.ID))
	cancel()
	if err == nil {
		rv.Rev = rr.Header.Revision
	}
	w.rec.finish(rv, err)
	switch {
	case err == nil:
		// Every attached key is gone for a read that starts now.
		w.checkGone(ctx, lr)
	default:
		// Unknown, or "not found", which may mean that this revoke took
		// effect: clientv3 retries a revoke whose answer was lost (its
		// retry policy treats LeaseRevoke as repeatable), and the retry
		// finds the lease gone. Either way the keys may go from the call
		// on; checkLeases knows.
		rv.Status = statusUnknown
		w.mu.Lock()
		w.abandoned = append(w.abandoned, lr)
		w.mu.Unlock()
	}
}

// keepAlive renews the lease once; it reports whether the lease lives.
func (w *leaseClient) keepAlive(ctx context.Context, lr *leaseRecord) bool {
	ka := &Op{Client: w.id, Kind: opKeepAlive, Lease: lr.ID}
	octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	ka.Call = w.rec.now()
	r, err := w.cli.KeepAliveOnce(octx, clientv3.LeaseID(lr.ID))
	if err == nil {
		ka.TTL, ka.Rev = r.TTL, r.Revision
	}
	w.rec.finish(ka, err)
	switch {
	case err == nil:
		// The leader renewed the lease after this call started.
		if d := w.rec.at(ka.Call).Add(time.Duration(r.TTL) * time.Second); d.After(lr.Deadline) {
			lr.Deadline = d
		}
		return true
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		ka.Status = statusFailed
		w.notFound(ctx, lr, ka, err)
		return false
	}
	return true // transient: try again
}

// notFound handles a keep-alive answered "lease not found":
// fine after the deadline, a violation before it.
func (w *leaseClient) notFound(ctx context.Context, lr *leaseRecord, op *Op, err error) {
	ret := w.rec.at(op.Return)
	if !ret.Add(leaseMargin).Before(lr.Deadline) {
		return // expired: the keep-alives did not get through in time
	}
	w.rep.violate("lease", "%s of lease %x answered %q at %s, %v before its acknowledged keep-alives let it expire (keys %v)",
		op.Kind, lr.ID, err, stamp(w.rec, ret), lr.Deadline.Sub(ret).Round(time.Millisecond), lr.Keys)
	w.checkKeys(ctx, lr, "after a premature not-found")
}

// checkKeys reads the lease's keys (linearizable); a key of an
// acknowledged put missing before the deadline is a violation. It reports
// whether every such key is there.
func (w *leaseClient) checkKeys(ctx context.Context, lr *leaseRecord, when string) bool {
	get := &Op{Client: w.id, Kind: opLeaseGet, Key: lr.Prefix, Lease: lr.ID}
	octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	get.Call = w.rec.now()
	r, err := w.cli.Get(octx, lr.Prefix, clientv3.WithPrefix())
	if err == nil {
		get.Rev, get.KVs = r.Header.Revision, kvsOf(r.Kvs)
	}
	w.rec.finish(get, err)
	if err != nil {
		return true
	}
	ret := w.rec.at(get.Return)
	all := true
	for _, k := range lr.Keys {
		if slices.ContainsFunc(get.KVs, func(kv KV) bool { return kv.Key == k }) {
			continue
		}
		all = false
		if ret.Add(leaseMargin).Before(lr.Deadline) {
			w.rep.violate("lease", "key %s of lease %x is gone at %s (read at revision %d, %s), %v before its acknowledged keep-alives let the lease expire",
				k, lr.ID, stamp(w.rec, ret), get.Rev, when, lr.Deadline.Sub(ret).Round(time.Millisecond))
		}
	}
	return all
}

// checkGone reads the lease's keys after an acknowledged revoke: none may
// be left.
func (w *leaseClient) checkGone(ctx context.Context, lr *leaseRecord) {
	for range 5 {
		get := &Op{Client: w.id, Kind: opLeaseGet, Key: lr.Prefix, Lease: lr.ID}
		octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		get.Call = w.rec.now()
		r, err := w.cli.Get(octx, lr.Prefix, clientv3.WithPrefix())
		cancel()
		if err == nil {
			get.Rev, get.KVs = r.Header.Revision, kvsOf(r.Kvs)
		}
		w.rec.finish(get, err)
		if err != nil {
			backoffAfterError(ctx, w.rng)
			continue
		}
		if len(get.KVs) > 0 {
			w.rep.violate("lease", "lease %x was revoked (acknowledged), yet a read at revision %d after that still returns %s", lr.ID, get.Rev, get.KVs[0].Key)
		}
		return
	}
}

// stamp formats a time as an offset into the run.
func stamp(rec *recorder, t time.Time) string {
	return fmt.Sprintf("t=%v", t.Sub(rec.start).Round(time.Millisecond))
}

// listIDs splits a list value into its ids.
func listIDs(v string) []string { return strings.Fields(v) }
