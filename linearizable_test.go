package accord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/accordkv/accord/internal/regmodel"
)

// TestClusterLinearizable runs clients against a 3-node cluster while the
// leader is repeatedly isolated and followers are killed and restarted, and
// checks the recorded history with porcupine against a sequential KV model
// (partitioned by key). Every run is seeded; the seed is logged.
//
//	ACCORD_LIN_SEED=n         replay the choices of a run (scheduling still differs)
//	ACCORD_LIN_DURATION=10s   how long clients run (default 6s)
//	ACCORD_LIN_OUT=dir        where a failing run writes its history visualisation
//	                          (default: a new directory under $TMPDIR, kept)
//
// A write that fails with ErrUnknownOutcome (or any error that does not
// say it was never proposed) may or may not have happened: it is recorded
// with an unknown output and a return time after everything else, so the
// checker may place it anywhere after its call, or nowhere. Writes that
// fail with ErrNoLeader or ErrClosed are documented as never proposed and
// are dropped; if that were wrong, the history would not linearize. Failed
// reads are dropped. After the faults stop, one final linearizable read per
// key joins the history: an acknowledged write that was lost fails it.
func TestClusterLinearizable(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ACCORD_LIN_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ACCORD_LIN_SEED=%q: %v", v, err)
		}
		seed = n
	}
	dur := 6 * time.Second
	if v := os.Getenv("ACCORD_LIN_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ACCORD_LIN_DURATION=%q: %v", v, err)
		}
		dur = d
	}
	t.Logf("seed %d (rerun with ACCORD_LIN_SEED=%d), clients run for %v", seed, seed, dur)
	rng := rand.New(rand.NewPCG(seed, 0))

	const clients = 8
	keys := make([]string, 3+rng.IntN(3))
	for i := range keys {
		keys[i] = fmt.Sprintf("lin/%d", i)
	}

	c := newTestCluster(t, 3, nil)
	c.leader()

	rec := &linRecorder{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	offset := rng.IntN(len(c.nodes))
	for id := range clients {
		cl := &linClient{
			id:   id,
			nd:   c.nodes[(offset+id)%len(c.nodes)], // every node has clients; most are followers
			keys: keys,
			rng:  rand.New(rand.NewPCG(seed, uint64(id)+1)),
			rec:  rec,
			seen: make(map[string]linOutput),
		}
		wg.Go(func() { cl.run(t.Context(), stop) })
	}

	// The fault loop: isolate the leader for a while, heal, and sometimes
	// kill a follower and restart it.
	var partitions, kills int
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		l := c.leader()
		l.partition()
		partitions++
		pace(t.Context(), time.Duration(50+rng.IntN(550))*time.Millisecond)
		l.heal()
		if rng.IntN(3) == 0 {
			f := c.follower()
			f.kill()
			kills++
			pace(t.Context(), time.Duration(100+rng.IntN(300))*time.Millisecond)
			f.restart(false)
		}
		pace(t.Context(), time.Duration(100+rng.IntN(300))*time.Millisecond)
	}
	close(stop)
	wg.Wait()

	// Every node is running and connected again. A write through the
	// leader commits after every entry already in its log, so once every
	// node has applied it, no write a client sent can still take effect.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c.waitConverged()
	if _, err := c.leader().store().Put(ctx, "lin-barrier", nil); err != nil {
		t.Fatalf("barrier write after healing: %v", err)
	}
	c.waitConverged()

	// The final linearizable reads are part of the history; then every
	// replica must hold exactly what they returned.
	leader := c.leader().store()
	for _, k := range keys {
		call := rec.now()
		g, err := leader.Get(ctx, k)
		if err != nil {
			t.Fatalf("final read of %s: %v", k, err)
		}
		out := linOutputOf(g.KVs)
		rec.add(clients, linInput{Kind: linGet, Key: k}, out, call, rec.now())
		for _, nd := range c.running() {
			sg, err := nd.store().Get(ctx, k, WithSerializable())
			if err != nil {
				t.Fatalf("final local read of %s on node %d: %v", k, nd.idx, err)
			}
			if got := linOutputOf(sg.KVs); got != out {
				t.Errorf("node %d holds %s = %s, the leader %s", nd.idx, k, got, out)
			}
		}
	}

	history, st := rec.finish()
	t.Logf("%d keys, %d ops recorded (%d get, %d put, %d delete, %d cas; %d of unknown outcome), %d failed ops dropped, %d other write errors; faults: %d leader isolations, %d follower kills",
		len(keys), len(history), st.kinds[linGet], st.kinds[linPut], st.kinds[linDelete], st.kinds[linCAS],
		st.unknown.Load(), st.dropped.Load(), st.otherErrs.Load(), partitions, kills)
	if st.kinds[linGet] == 0 || st.kinds[linPut]+st.kinds[linCAS] == 0 {
		t.Fatal("no successful reads or writes: the history checks nothing")
	}
	if e := st.firstOther.Load(); e != nil {
		t.Logf("first other write error (recorded as unknown outcome): %v", *e)
	}

	checkStart := time.Now()
	res := porcupine.CheckOperationsTimeout(regmodel.Model, history, 10*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res == porcupine.Ok {
		return
	}
	// Not linearizable (or not decided in time): check again with the
	// details a visualisation needs.
	res, info := porcupine.CheckOperationsVerbose(regmodel.Model, history, 10*time.Second)
	// Not under t.TempDir: that is removed when the test ends.
	dir := os.Getenv("ACCORD_LIN_OUT")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "accord-lin-"); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("linearizable-%d.html", seed))
	if err := porcupine.VisualizePath(regmodel.Model, info, path); err != nil {
		t.Errorf("writing the visualisation: %v", err)
	} else {
		t.Logf("history visualisation: %s", path)
	}
	t.Fatalf("history is not linearizable: porcupine says %s (seed %d)", res, seed)
}

// ---- the clients ----

const (
	linGet    = regmodel.Get
	linPut    = regmodel.Put
	linDelete = regmodel.Delete
	linCAS    = regmodel.CAS
)

// linInput and linOutput are the operations regmodel.Model checks.
type (
	linInput  = regmodel.Input
	linOutput = regmodel.Output
)

func linOutputOf(kvs []KeyValue) linOutput {
	if len(kvs) == 0 {
		return linOutput{}
	}
	return linOutput{Exists: true, Value: string(kvs[0].Value), Rev: kvs[0].ModRevision}
}

type linStats struct {
	kinds      [4]int
	unknown    atomic.Int64
	dropped    atomic.Int64
	otherErrs  atomic.Int64
	firstOther atomic.Pointer[error]
}

// linRecorder collects the history of every client.
type linRecorder struct {
	start time.Time
	stats linStats
	mu    sync.Mutex // guards ops
	ops   []porcupine.Operation
}

// pending marks the return time of an operation of unknown outcome until
// finish replaces it by a time after every other return.
const linPending = int64(-1)

func (r *linRecorder) now() int64 { return int64(time.Since(r.start)) }

func (r *linRecorder) add(client int, in linInput, out linOutput, call, ret int64) {
	r.mu.Lock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
	r.mu.Unlock()
}

// finish returns the history with pending operations returning after
// everything else ("may have happened at any point after its call, or not
// at all").
func (r *linRecorder) finish() ([]porcupine.Operation, *linStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := int64(0)
	for _, op := range r.ops {
		last = max(last, op.Return, op.Call)
	}
	for i := range r.ops {
		if r.ops[i].Return == linPending {
			r.ops[i].Return = last + 1
		}
		r.stats.kinds[r.ops[i].Input.(regmodel.Input).Kind]++
	}
	return r.ops, &r.stats
}

type linClient struct {
	id   int
	nd   *testNode
	keys []string
	rng  *rand.Rand
	rec  *linRecorder
	seq  int
	seen map[string]linOutput // per key, the latest state this client observed (for cas)
}

func (cl *linClient) run(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		s := cl.nd.store()
		if s == nil { // killed; wait for the restart
			pace(ctx, 5*time.Millisecond)
			continue
		}
		// Bounded by its own timeout, not by stop: stopping must not cut
		// an operation short and turn it into one of unknown outcome.
		octx, cancel := context.WithTimeout(ctx, time.Duration(300+cl.rng.IntN(700))*time.Millisecond)
		cl.step(octx, s)
		cancel()
	}
}

func (cl *linClient) step(ctx context.Context, s *Store) {
	key := cl.keys[cl.rng.IntN(len(cl.keys))]
	in := linInput{Key: key}
	switch p := cl.rng.IntN(100); {
	case p < 35:
		in.Kind = linGet
	case p < 65:
		in.Kind = linPut
	case p < 80:
		in.Kind = linDelete
	default:
		in.Kind = linCAS
	}
	if in.Kind == linPut || in.Kind == linCAS {
		cl.seq++
		in.Value = fmt.Sprintf("c%d-%d", cl.id, cl.seq)
	}
	if in.Kind == linCAS {
		if prev := cl.seen[key]; prev.Exists {
			in.ExpRev, in.ExpValue = prev.Rev, prev.Value
		}
	}

	var (
		out linOutput
		err error
	)
	call := cl.rec.now()
	switch in.Kind {
	case linGet:
		var g *GetResponse
		if g, err = s.Get(ctx, key); err == nil {
			out = linOutputOf(g.KVs)
		}
	case linPut:
		var p *PutResponse
		if p, err = s.Put(ctx, key, []byte(in.Value)); err == nil {
			out = linOutput{Rev: p.Revision}
		}
	case linDelete:
		var d *DeleteResponse
		if d, err = s.Delete(ctx, key); err == nil {
			out = linOutput{Deleted: d.Deleted}
			if d.Deleted > 0 {
				out.Rev = d.Revision
			}
		}
	case linCAS:
		var r *TxnResponse
		r, err = s.Txn(ctx).
			If(Compare(ModRevision(key), "=", in.ExpRev)).
			Then(OpPut(key, []byte(in.Value))).
			Else(OpGet(key)).
			Commit()
		if err == nil {
			if r.Succeeded {
				out = linOutput{OK: true, Rev: r.Revision}
			} else {
				out = linOutputOf(r.Responses[0].Get.KVs)
			}
		}
	}
	ret := cl.rec.now()

	if err != nil {
		if in.Kind == linGet || !cl.maybeApplied(err) {
			cl.rec.stats.dropped.Add(1)
			return
		}
		cl.rec.stats.unknown.Add(1)
		cl.rec.add(cl.id, in, linOutput{Unknown: true}, call, linPending)
		delete(cl.seen, key) // no longer sure what is there
		// Fail fast, back off: a forwarded write to a leader that was
		// just cut off fails at once, and every such write stays open to
		// the end of the history; thousands of them make a failing check
		// exponential.
		pace(ctx, time.Duration(20+cl.rng.IntN(30))*time.Millisecond)
		return
	}
	cl.rec.add(cl.id, in, out, call, ret)
	switch {
	case in.Kind == linGet || in.Kind == linCAS && !out.OK:
		cl.seen[key] = out
	case in.Kind == linPut || in.Kind == linCAS:
		cl.seen[key] = linOutput{Exists: true, Value: in.Value, Rev: out.Rev}
	case in.Kind == linDelete:
		cl.seen[key] = linOutput{}
	}
}

// maybeApplied reports whether a failed write may have taken effect.
// ErrUnknownOutcome says so; ErrNoLeader and ErrClosed (without it) say
// the write was never proposed. Anything else is treated as unknown.
func (cl *linClient) maybeApplied(err error) bool {
	switch {
	case errors.Is(err, ErrUnknownOutcome):
		return true
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed):
		return false
	}
	st := &cl.rec.stats
	if st.otherErrs.Add(1) == 1 {
		st.firstOther.Store(&err)
	}
	return true
}
