package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Run starts a cluster of cfg.Members accordd processes, runs the
// workloads for cfg.Duration while injecting faults, heals the cluster,
// checks everything that was recorded and returns what it found. An error
// means the run could not take place (the cluster did not start); what a
// run finds is in the report. A failing run keeps its directory, with its
// history, and names it in Report.Dirs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rep := newReport()
	rep.Runs, rep.Seeds, rep.Members, rep.Duration = 1, []uint64{cfg.Seed}, []int{cfg.Members}, cfg.Duration
	dir, err := os.MkdirTemp(cfg.Dir, fmt.Sprintf("accord-chaos-%d-%dm-", cfg.Seed, cfg.Members))
	if err != nil {
		return nil, err
	}
	cfg.Logf("run: seed %d, %d members, %v of faults and traffic, in %s", cfg.Seed, cfg.Members, cfg.Duration, dir)
	c, err := startCluster(ctx, cfg, dir, rep, cfg.SnapshotCount)
	if err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	r := &run{cfg: &cfg, c: c, rep: rep, rec: newRecorder(), dir: dir}
	defer c.close()
	r.execute(ctx)
	c.close()
	taken, installed := countSnapshots(dir)
	rep.Snapshots += taken
	rep.SnapshotInstalls += installed
	rep.Elapsed = time.Since(began)
	r.finish()
	return rep, nil
}

// run is the state of one Run.
type run struct {
	cfg *Config
	c   *cluster
	rep *Report
	rec *recorder
	dir string

	faults  *faulter
	leases  []*leaseClient
	regKeys []string
	hist    *history

	wmu      sync.Mutex // guards watchers
	watchers []*watcher // every watcher started, stopped ones too
}

func (r *run) execute(ctx context.Context) {
	cfg, c := r.cfg, r.c
	for _, n := range c.memberList() {
		r.addWatcher(ctx, n)
	}
	roam, err := c.client(-1)
	if err == nil {
		r.wmu.Lock()
		r.watchers = append(r.watchers, startWatcher(ctx, "roaming", nil, roam))
		r.wmu.Unlock()
	}
	c.onAdd = func(n *node) { r.addWatcher(ctx, n) }
	c.onRemove = func(n *node) {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		for _, w := range r.watchers {
			if w.node == n {
				go w.stop() // keeps what it received; checked as a prefix
			}
		}
	}

	for i := range cfg.RegisterKeys {
		r.regKeys = append(r.regKeys, fmt.Sprintf("%s%02d", regPrefix, i))
	}
	var listKeys []string
	for i := range cfg.AppendKeys {
		listKeys = append(listKeys, fmt.Sprintf("%s%02d", listPrefix, i))
	}
	stopAt := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	id := 0
	// Half of the clients talk to one member each (their writes are
	// forwarded by followers), half to every member.
	pin := func(i int) int {
		if i%2 == 0 {
			return i / 2
		}
		return -1
	}
	seeded := func(id int) *rand.Rand { return rand.New(rand.NewPCG(cfg.Seed, uint64(id)+1)) }
	for i := range cfg.RegisterClients {
		cli, err := c.client(pin(i))
		if err != nil {
			r.rep.violate("harness", "client: %v", err)
			continue
		}
		r.rec.pin(id, func() string { return c.pinnedName(pin(i)) })
		w := &regClient{id: id, cli: cli, keys: r.regKeys, rng: seeded(id), rec: r.rec, cfg: cfg, seen: map[string]*KV{}}
		wg.Go(func() { w.run(ctx, stopAt) })
		id++
	}
	for i := range cfg.AppendClients {
		cli, err := c.client(pin(i + 1))
		if err != nil {
			r.rep.violate("harness", "client: %v", err)
			continue
		}
		r.rec.pin(id, func() string { return c.pinnedName(pin(i + 1)) })
		w := &appendClient{id: id, cli: cli, keys: listKeys, rng: seeded(id), rec: r.rec, cfg: cfg}
		wg.Go(func() { w.run(ctx, stopAt) })
		id++
	}
	for i := range cfg.LeaseClients {
		cli, err := c.client(pin(i))
		if err != nil {
			r.rep.violate("harness", "client: %v", err)
			continue
		}
		r.rec.pin(id, func() string { return c.pinnedName(pin(i)) })
		w := &leaseClient{id: id, cli: cli, rng: seeded(id), rec: r.rec, cfg: cfg, rep: r.rep}
		r.leases = append(r.leases, w)
		wg.Go(func() { w.run(ctx, stopAt) })
		id++
	}

	r.faults = &faulter{c: c, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0xfa17)), rep: r.rep, rec: r.rec}
	r.faults.run(ctx, stopAt)
	wg.Wait()
	if ctx.Err() != nil {
		r.rep.violate("harness", "interrupted: %v", ctx.Err())
		return
	}
	r.final(ctx)
}

func (r *run) addWatcher(ctx context.Context, n *node) {
	w := startWatcher(ctx, n.name, n, n.cli)
	r.wmu.Lock()
	r.watchers = append(r.watchers, w)
	r.wmu.Unlock()
}

// final heals the cluster, waits for it to settle, reads the committed
// history and every member's state, and runs the checks.
func (r *run) final(ctx context.Context) {
	cfg, c := r.cfg, r.c
	r.cfg.Logf("  healing; %d faults injected", len(r.faults.records()))
	c.healAll()
	c.waitAllServing(ctx, cfg.RecoverTimeout, "the final heal")

	// Leases that were abandoned expire; their keys must go.
	r.waitLeaseKeysGone(ctx)

	// A barrier write: once every member has applied it, no write a
	// client sent can still take effect.
	barrier := int64(0)
	deadline := time.Now().Add(cfg.RecoverTimeout)
	for barrier == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		op := &Op{Client: -1, Kind: opBarrier, Key: barrierKey, Value: "end"}
		octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		op.Call = r.rec.now()
		resp, err := c.admin.Put(octx, barrierKey, op.Value)
		cancel()
		if err == nil {
			op.Rev, barrier = resp.Header.Revision, resp.Header.Revision
		}
		r.rec.finish(op, err)
		if err != nil {
			pace(ctx, 100*time.Millisecond)
		}
	}
	if barrier == 0 {
		r.rep.violate("final", "no barrier write succeeded within %v of healing", cfg.RecoverTimeout)
		return
	}
	r.waitRevision(ctx, barrier)

	// The last read of each register joins the porcupine history.
	for _, k := range r.regKeys {
		for range 10 {
			op := &Op{Client: -1, Kind: opFinalGet, Key: k}
			octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
			op.Call = r.rec.now()
			resp, err := c.admin.Get(octx, k)
			cancel()
			if err == nil {
				op.Rev, op.KVs = resp.Header.Revision, kvsOf(resp.Kvs)
			}
			r.rec.finish(op, err)
			if err == nil {
				break
			}
		}
	}
	// Everything any client saw is at or below this revision.
	last := barrier
	octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	if resp, err := c.admin.Get(octx, barrierKey); err == nil {
		last = resp.Header.Revision
	}
	cancel()
	r.waitRevision(ctx, last)

	// The committed history, from one member, confirmed by another.
	members := c.live()
	if len(members) == 0 {
		r.rep.violate("final", "no member is left to read the history from")
		return
	}
	events, err := readHistory(ctx, members[0].cli, last, 60*time.Second)
	if err != nil {
		r.rep.violate("final", "reading the committed history from %s: %v", members[0].name, err)
		return
	}
	r.hist = newHistory(events)
	if len(members) > 1 {
		other, err := readHistory(ctx, members[len(members)-1].cli, last, 60*time.Second)
		switch {
		case err != nil:
			r.rep.violate("final", "reading the committed history from %s: %v", members[len(members)-1].name, err)
		case len(other) != len(events):
			r.rep.violate("replicas", "%s's history has %d events up to revision %d, %s's %d", members[0].name, len(events), last, members[len(members)-1].name, len(other))
		default:
			for i := range events {
				if events[i] != other[i] {
					r.rep.violate("replicas", "event %d: %s has %+v, %s has %+v", i, members[0].name, events[i], members[len(members)-1].name, other[i])
					break
				}
			}
		}
	}

	// Every member holds the same state at the last revision, and the
	// history replays to it; a sample of older revisions too.
	r.checkMembers(ctx, last)

	// Every watcher of a member catches up.
	r.wmu.Lock()
	watchers := slices.Clone(r.watchers)
	r.wmu.Unlock()
	for _, w := range watchers {
		if w.node == nil || slices.Contains(members, w.node) {
			w.waitFor(ctx, last, 20*time.Second)
		}
	}
	for _, w := range watchers {
		w.stop()
	}
	r.check(watchers, members)
}

// waitRevision waits until every member has applied rev.
func (r *run) waitRevision(ctx context.Context, rev int64) {
	deadline := time.Now().Add(r.cfg.RecoverTimeout)
	for _, n := range r.c.live() {
		for {
			octx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := n.cli.Get(octx, probeKeyName, clientv3.WithSerializable())
			cancel()
			if err == nil && resp.Header.Revision >= rev {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				r.rep.violate("final", "%s has not applied revision %d %v after healing (%v)", n.name, rev, r.cfg.RecoverTimeout, err)
				break
			}
			pace(ctx, 50*time.Millisecond)
		}
	}
}

// waitLeaseKeysGone waits until no lease key is left: every lease was
// revoked or abandoned, and abandoned leases expire within their TTL once
// the cluster is healthy.
func (r *run) waitLeaseKeysGone(ctx context.Context) {
	d := 3*r.cfg.LeaseTTL + r.cfg.RecoverTimeout
	deadline := time.Now().Add(d)
	var left []string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		resp, err := r.c.admin.Get(octx, leasePrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err == nil {
			left = left[:0]
			for _, kv := range resp.Kvs {
				left = append(left, fmt.Sprintf("%s (lease %x)", kv.Key, kv.Lease))
			}
			if len(left) == 0 {
				return
			}
		}
		pace(ctx, 200*time.Millisecond)
	}
	r.rep.violate("lease", "%d lease keys are still there %v after the last keep-alive, with a healthy cluster: %v", len(left), d, left)
}

// checkMembers compares every member's state at rev, and at a few older
// revisions, with the committed history, and their KV hashes with each
// other.
func (r *run) checkMembers(ctx context.Context, rev int64) {
	h := r.hist
	want := h.rangeAt("", rev)
	hashes := map[uint32][]string{}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0xc4ec))
	for _, n := range r.c.live() {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := n.cli.Get(octx, "", clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithSerializable())
		cancel()
		if err != nil {
			r.rep.violate("final", "reading %s's state at revision %d: %v", n.name, rev, err)
			continue
		}
		if got := kvsOf(resp.Kvs); !slices.Equal(got, want) {
			r.rep.violate("replicas", "%s's state at revision %d differs from the committed history: %s", n.name, rev, diffKVs(got, want))
		}
		octx, cancel = context.WithTimeout(ctx, 5*time.Second)
		hk, err := r.c.admin.HashKV(octx, n.clientURL, rev)
		cancel()
		if err != nil {
			r.rep.violate("final", "HashKV of %s at revision %d: %v", n.name, rev, err)
		} else {
			hashes[hk.Hash] = append(hashes[hk.Hash], n.name)
		}
		for range 5 {
			old := 1 + rng.Int64N(rev)
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := n.cli.Get(octx, "", clientv3.WithPrefix(), clientv3.WithRev(old), clientv3.WithSerializable())
			cancel()
			if err != nil {
				r.rep.violate("final", "reading %s's state at revision %d: %v", n.name, old, err)
				continue
			}
			if got, want := kvsOf(resp.Kvs), h.rangeAt("", old); !slices.Equal(got, want) {
				r.rep.violate("replicas", "%s's state at revision %d differs from the committed history: %s", n.name, old, diffKVs(got, want))
			}
		}
	}
	if len(hashes) > 1 {
		r.rep.violate("replicas", "HashKV at revision %d differs between members: %v", rev, hashes)
	}
}

// diffKVs describes the first difference between two sorted KV lists.
func diffKVs(got, want []KV) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("missing %+v", want[i])
		case i >= len(want):
			return fmt.Sprintf("extra %+v", got[i])
		case got[i] != want[i]:
			return fmt.Sprintf("has %+v, history %+v", got[i], want[i])
		}
	}
	return "equal"
}

// finish saves the history of a failing run, or removes the directory of
// a passing one.
func (r *run) finish() {
	if !r.rep.Failed() {
		if !r.cfg.KeepData {
			os.RemoveAll(r.dir)
		}
		return
	}
	r.rep.Dirs = append(r.rep.Dirs, r.dir)
	save := func(name string, err error) {
		if err != nil {
			r.cfg.Logf("saving %s: %v", name, err)
		}
	}
	meta := map[string]any{
		"seed": r.cfg.Seed, "members": r.cfg.Members, "duration": r.cfg.Duration.String(),
		"election_timeout": r.cfg.ElectionTimeout.String(), "lease_ttl": r.cfg.LeaseTTL.String(),
		// Op and fault times are nanoseconds since this instant; members log wall time.
		"start": r.rec.start.UTC().Format(time.RFC3339Nano),
	}
	save("meta.json", writeJSONLines(filepath.Join(r.dir, "meta.json"), []any{meta}))
	save("ops.jsonl", writeJSONLines(filepath.Join(r.dir, "ops.jsonl"), r.rec.all()))
	if r.faults != nil {
		save("faults.jsonl", writeJSONLines(filepath.Join(r.dir, "faults.jsonl"), r.faults.records()))
	}
	if r.hist != nil {
		save("history.jsonl", writeJSONLines(filepath.Join(r.dir, "history.jsonl"), r.hist.events))
	}
	r.wmu.Lock()
	for i, w := range r.watchers {
		w.mu.Lock()
		save("watch", writeJSONLines(filepath.Join(r.dir, fmt.Sprintf("watch-%d-%s.jsonl", i, w.name)), w.events))
		save("watch progress", writeJSONLines(filepath.Join(r.dir, fmt.Sprintf("watch-%d-%s-progress.jsonl", i, w.name)), w.progress))
		w.mu.Unlock()
	}
	r.wmu.Unlock()
	save("violations.txt", saveViolations(r.dir, r.rep))
	r.cfg.Logf("run failed: history saved in %s", r.dir)
}

// countSnapshots counts the raft snapshots the members of a run logged:
// taken, and installed from a leader (a lagging or new member brought up
// to date by snapshot rather than by the log).
func countSnapshots(dir string) (taken, installed int) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "accordd.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err == nil {
			taken += bytes.Count(b, []byte("snapshot complete up to"))
			installed += bytes.Count(b, []byte("Installed remote snapshot"))
		}
	}
	return taken, installed
}
