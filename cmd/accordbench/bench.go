package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fillBatch is how many puts one Txn of the key-space fill carries: under
// etcd's default --max-txn-ops (128).
const fillBatch = 64

// bench is one run: its clients and workers.
type bench struct {
	cfg     config
	log     io.Writer
	clients []*clientv3.Client
	workers []*worker
	base    time.Time // origin of the watch row's timestamps
	filled  bool      // the key space has been written (get rows)
}

// worker is one goroutine's state; only that goroutine touches it while a
// phase runs.
type worker struct {
	id    int
	cli   *clientv3.Client
	rng   *rand.Rand
	value []byte
	lats  []time.Duration
	ok    int64
	errs  int64
	err   error // the first error
}

// opFunc is one request of a row.
type opFunc func(ctx context.Context, w *worker) error

func runBench(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	b := &bench{cfg: cfg, log: log, base: time.Now()}
	defer b.close()
	if cfg.Wait > 0 {
		if err := waitReady(ctx, cfg); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Clients {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{cfg.Endpoints[i%len(cfg.Endpoints)]},
			DialTimeout: cfg.DialTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("client %d (%s): %w", i, cfg.Endpoints[i%len(cfg.Endpoints)], err)
		}
		b.clients = append(b.clients, cli)
	}
	valueSize := max(cfg.ValueSize, 8) // the watch row writes a timestamp
	for i := range cfg.Workers {
		w := &worker{
			id:    i,
			cli:   b.clients[i%len(b.clients)],
			rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i))),
			value: make([]byte, valueSize),
		}
		for j := range w.value {
			w.value[j] = 'a' + byte(w.rng.IntN(26))
		}
		b.workers = append(b.workers, w)
	}
	rep := &Report{
		Endpoints: cfg.Endpoints,
		Clients:   cfg.Clients,
		Workers:   cfg.Workers,
		KeySpace:  cfg.KeySpace,
		ValueSize: cfg.ValueSize,
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	if st, err := b.clients[0].Status(sctx, b.clients[0].Endpoints()[0]); err == nil {
		rep.ServerVersion = st.Version
	}
	cancel()
	for _, row := range cfg.Rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res := b.runRow(ctx, row)
		fmt.Fprintf(log, "accordbench: %s: %.1f ops/s, p50 %s, p99 %s, %d ops, %d errors\n",
			res.Row, res.OpsPerSec, fmtMs(res.P50Ms), fmtMs(res.P99Ms), res.Ops, res.Errors)
		rep.Rows = append(rep.Rows, res)
	}
	return rep, nil
}

func (b *bench) close() {
	for _, c := range b.clients {
		c.Close()
	}
}

// waitReady waits until every endpoint answers a linearizable Get (a
// member that has joined a cluster with a leader), within cfg.Wait.
func waitReady(ctx context.Context, cfg config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Wait)
	defer cancel()
	for _, ep := range cfg.Endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: cfg.DialTimeout, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("wait for %s: %w", ep, err)
		}
		var last error
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			_, err := cli.Get(rctx, cfg.Prefix+"ready")
			rcancel()
			if err == nil {
				break
			}
			last = err
			select {
			case <-ctx.Done():
				cli.Close()
				return fmt.Errorf("wait for %s: not ready after %v: %w", ep, cfg.Wait, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
		cli.Close()
	}
	return nil
}

func (b *bench) key(i int) string { return fmt.Sprintf("%skey/%08d", b.cfg.Prefix, i) }

// runRow runs one row: setup, warmup, then the measured phase, all within
// --row-timeout.
func (b *bench) runRow(parent context.Context, row string) Result {
	ctx, cancel := context.WithTimeout(parent, b.cfg.RowTimeout)
	defer cancel()
	for _, w := range b.workers {
		w.lats, w.ok, w.errs, w.err = w.lats[:0], 0, 0, nil
	}
	var op opFunc
	switch row {
	case rowPut:
		op = func(ctx context.Context, w *worker) error {
			_, err := w.cli.Put(ctx, b.key(w.rng.IntN(b.cfg.KeySpace)), string(w.value[:b.cfg.ValueSize]))
			return err
		}
	case rowGetLin, rowGetSer:
		if err := b.fill(ctx); err != nil {
			return Result{Row: row, Error: fmt.Sprintf("filling the key space: %v", err)}
		}
		var opts []clientv3.OpOption
		if row == rowGetSer {
			opts = append(opts, clientv3.WithSerializable())
		}
		op = func(ctx context.Context, w *worker) error {
			k := b.key(w.rng.IntN(b.cfg.KeySpace))
			resp, err := w.cli.Get(ctx, k, opts...)
			if err == nil && len(resp.Kvs) != 1 {
				return fmt.Errorf("get %q: %d keys, want 1", k, len(resp.Kvs))
			}
			return err
		}
	case rowWatch:
		return b.runWatch(ctx)
	default:
		return Result{Row: row, Error: "unknown row"}
	}
	if b.cfg.Warmup > 0 {
		b.phase(ctx, op, b.cfg.Warmup, 0, false)
	}
	for _, w := range b.workers {
		w.lats, w.ok, w.errs, w.err = w.lats[:0], 0, 0, nil
	}
	cpu := cpuMeter{pids: b.cfg.ServerPIDs}
	cpu.begin()
	elapsed := b.phase(ctx, op, b.cfg.Duration, b.cfg.Ops, true)
	var lats []time.Duration
	for _, w := range b.workers {
		lats = append(lats, w.lats...)
	}
	res := b.result(row, lats, elapsed)
	b.serverCPU(&res, &cpu)
	if b.cfg.Ops > 0 && res.Ops+res.Errors < b.cfg.Ops && res.Error == "" {
		res.Error = fmt.Sprintf("stopped after %d of %d ops: %v", res.Ops+res.Errors, b.cfg.Ops, context.Cause(ctx))
	}
	return res
}

// serverCPU sets res.ServerCPUUsPerOp from cpu; a failure to read the
// servers' CPU time is logged, not counted as a row error.
func (b *bench) serverCPU(res *Result, cpu *cpuMeter) {
	us, err := cpu.perOp(res.Ops)
	if err != nil {
		fmt.Fprintf(b.log, "accordbench: %s: server CPU time: %v\n", res.Row, err)
		return
	}
	res.ServerCPUUsPerOp = us
}

// result sums the workers' counts into a Result.
func (b *bench) result(row string, lats []time.Duration, elapsed time.Duration) Result {
	res := Result{Row: row, Ops: int64(len(lats)), Seconds: elapsed.Seconds()}
	for _, w := range b.workers {
		res.Errors += w.errs
		if w.err != nil && res.Error == "" {
			res.Error = w.err.Error()
		}
	}
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		var sum time.Duration
		for _, l := range lats {
			sum += l
		}
		res.P50Ms = ms(percentile(lats, 0.50))
		res.P99Ms = ms(percentile(lats, 0.99))
		res.MeanMs = ms(sum / time.Duration(len(lats)))
		res.MaxMs = ms(lats[len(lats)-1])
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the q-quantile (nearest rank) of sorted, which is
// not empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// phase runs op on every worker until dur has passed or, with maxOps > 0,
// until maxOps operations were started; either way it stops when ctx
// ends. It returns the time from the start until the last operation
// finished. With record it keeps every successful operation's latency in
// the worker. An Unimplemented error stops the phase: the server lacks the
// call, so retrying only spins.
func (b *bench) phase(ctx context.Context, op opFunc, dur time.Duration, maxOps int64, record bool) time.Duration {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started atomic.Int64
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if maxOps > 0 {
					if started.Add(1) > maxOps {
						return
					}
				} else if !time.Now().Before(deadline) {
					return
				}
				t0 := time.Now()
				rctx, rcancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
				err := op(rctx, w)
				rcancel()
				lat := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return // the row timed out or was interrupted: not the server's error
					}
					w.errs++
					if w.err == nil {
						w.err = err
					}
					if status.Code(err) == codes.Unimplemented {
						cancel()
						return
					}
					continue
				}
				if record {
					w.lats = append(w.lats, lat)
				}
				w.ok++
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// fill writes every key of the key space once, in transactions of
// fillBatch puts spread over the workers, so that gets find their key.
func (b *bench) fill(ctx context.Context) error {
	if b.filled {
		return nil
	}
	batches := (b.cfg.KeySpace + fillBatch - 1) / fillBatch
	var next atomic.Int64
	errc := make(chan error, len(b.workers))
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Go(func() {
			for {
				n := int(next.Add(1) - 1)
				if n >= batches || ctx.Err() != nil {
					return
				}
				var ops []clientv3.Op
				for i := n * fillBatch; i < min((n+1)*fillBatch, b.cfg.KeySpace); i++ {
					ops = append(ops, clientv3.OpPut(b.key(i), string(w.value[:b.cfg.ValueSize])))
				}
				rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
				_, err := w.cli.Txn(rctx).Then(ops...).Commit()
				cancel()
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.filled = true
	return nil
}

// watcher is one client's watch on the watch prefix, and what it received.
type watcher struct {
	ch      clientv3.WatchChan
	cancel  context.CancelFunc
	lastRev atomic.Int64 // mod revision of the last event received
	lats    []time.Duration
	err     error // why the watch ended early; written by its goroutine
	done    chan struct{}
}

// runWatch measures the delay from the start of a Put to the arrival of
// its event at each of the watchers (one per client). The workers write
// the timestamp of the Put's start, on b.base's monotonic clock, into the
// first 8 bytes of the value; events of Puts started before the measured
// phase are not counted.
func (b *bench) runWatch(ctx context.Context) Result {
	const row = rowWatch
	prefix := b.cfg.Prefix + "watch/"
	var measureFrom atomic.Int64
	measureFrom.Store(int64(^uint64(0) >> 1)) // nothing is measured during warmup
	var watchers []*watcher
	defer func() {
		for _, wt := range watchers {
			wt.cancel()
			<-wt.done
		}
	}()
	for i, cli := range b.clients {
		wctx, cancel := context.WithCancel(ctx)
		wt := &watcher{cancel: cancel, done: make(chan struct{})}
		wt.ch = cli.Watch(clientv3.WithRequireLeader(wctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		// The first response confirms the watch was created.
		select {
		case resp, ok := <-wt.ch:
			if err := resp.Err(); !ok || err != nil || !resp.Created {
				cancel()
				if err == nil {
					err = errors.New("watch channel closed before the watch was created")
				}
				return Result{Row: row, Error: fmt.Sprintf("watcher %d: create: %v", i, err)}
			}
		case <-time.After(b.cfg.RequestTimeout):
			cancel()
			return Result{Row: row, Error: fmt.Sprintf("watcher %d: not created after %v", i, b.cfg.RequestTimeout)}
		}
		watchers = append(watchers, wt)
		go func() {
			defer close(wt.done)
			for resp := range wt.ch {
				now := int64(time.Since(b.base))
				if err := resp.Err(); err != nil {
					if wctx.Err() == nil {
						wt.err = err
					}
					return
				}
				from := measureFrom.Load()
				for _, ev := range resp.Events {
					if len(ev.Kv.Value) >= 8 {
						if ts := int64(binary.BigEndian.Uint64(ev.Kv.Value)); ts >= from {
							wt.lats = append(wt.lats, time.Duration(now-ts))
						}
					}
					wt.lastRev.Store(ev.Kv.ModRevision)
				}
			}
			if wctx.Err() == nil {
				wt.err = errors.New("watch channel closed")
			}
		}()
	}

	var maxRev atomic.Int64
	op := func(ctx context.Context, w *worker) error {
		binary.BigEndian.PutUint64(w.value, uint64(time.Since(b.base)))
		resp, err := w.cli.Put(ctx, fmt.Sprintf("%s%d", prefix, w.id), string(w.value[:max(b.cfg.ValueSize, 8)]))
		if err != nil {
			return err
		}
		for {
			cur := maxRev.Load()
			if resp.Header.Revision <= cur || maxRev.CompareAndSwap(cur, resp.Header.Revision) {
				return nil
			}
		}
	}
	if b.cfg.Warmup > 0 {
		b.phase(ctx, op, b.cfg.Warmup, 0, false)
	}
	for _, w := range b.workers {
		w.lats, w.ok, w.errs, w.err = w.lats[:0], 0, 0, nil
	}
	cpu := cpuMeter{pids: b.cfg.ServerPIDs}
	cpu.begin()
	measureFrom.Store(int64(time.Since(b.base)))
	elapsed := b.phase(ctx, op, b.cfg.Duration, b.cfg.Ops, false)
	var puts int64
	for _, w := range b.workers {
		puts += w.ok
	}

	// Wait (bounded) until every watcher has seen the last Put.
	target := maxRev.Load()
	deadline := time.Now().Add(b.cfg.RequestTimeout)
	for _, wt := range watchers {
		wt.waitRev(ctx, target, deadline)
	}
	var lats []time.Duration
	var watchErrs []string
	for _, wt := range watchers {
		wt.cancel()
		<-wt.done
		lats = append(lats, wt.lats...)
		if wt.err != nil {
			watchErrs = append(watchErrs, wt.err.Error())
		}
	}
	watchers = nil
	res := b.result(row, lats, elapsed)
	b.serverCPU(&res, &cpu) // per event received
	if lost := puts*int64(len(b.clients)) - res.Ops; lost > 0 {
		res.Errors += lost
		if res.Error == "" {
			res.Error = fmt.Sprintf("%d of %d events not received", lost, puts*int64(len(b.clients)))
		}
	}
	if len(watchErrs) > 0 {
		res.Errors += int64(len(watchErrs))
		if res.Error != "" {
			watchErrs = append(watchErrs, res.Error)
		}
		res.Error = strings.Join(watchErrs, "; ")
	}
	return res
}

// waitRev waits until wt has received an event of revision rev or later,
// its watch ended, ctx ended, or deadline passed.
func (wt *watcher) waitRev(ctx context.Context, rev int64, deadline time.Time) {
	for wt.lastRev.Load() < rev && time.Now().Before(deadline) {
		select {
		case <-wt.done:
			return
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}
