package accord

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/logbridge"
	"github.com/accordkv/accord/internal/raftlog"
	"github.com/accordkv/accord/internal/wire"
)

// Benchmarks of the public API on a single node with real fsync, and a
// baseline: a bare hashicorp/raft node with the store's own raft settings
// and log store, whose FSM does nothing. Run them together (.ci/bench) so
// that the Put/baseline ratio compares numbers from one machine and one
// moment:
//
//	go test -run='^$' -bench=. -benchtime=2s -count=5 .
//
// Every benchmark reports ops/s besides ns/op; BenchmarkWatchLatency
// reports percentiles in microseconds.

const (
	benchValueSize = 100
	benchKeys      = 1000
	benchElection  = 100 * time.Millisecond // shorter than the default only to speed up startup
)

var benchValue = make([]byte, benchValueSize)

func benchKey(i int) string { return fmt.Sprintf("bench/key/%06d", i%benchKeys) }

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	return keys
}

func benchOptions() *Options {
	return &Options{ElectionTimeout: benchElection} // UnsafeNoFsync: false
}

// openBenchStore opens a store in a fresh temporary directory and waits
// until it accepts writes.
func openBenchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "data"), benchOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	if err := s.waitLeaderReady(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

// runConcurrently runs op b.N times from g goroutines and reports ops/s.
// op gets the goroutine's number and the operation's sequence number.
func runConcurrently(b *testing.B, g int, op func(worker, i int) error) {
	b.Helper()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	b.ResetTimer()
	for w := range g {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(w, int(i)); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(b.N)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	reportOpsPerSec(b)
}

func reportOpsPerSec(b *testing.B) {
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(b.N)/sec, "ops/s")
	}
}

var benchConcurrency = []int{1, 64}

// BenchmarkPut measures single-key Puts of 100-byte values, with fsync,
// from 1 and 64 goroutines. Compare with BenchmarkRaftApplyBaseline.
func BenchmarkPut(b *testing.B) {
	for _, g := range benchConcurrency {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			s := openBenchStore(b)
			keys := benchKeyList()
			ctx := b.Context() // cancellable, as a caller's ctx usually is
			runConcurrently(b, g, func(_, i int) error {
				_, err := s.Put(ctx, keys[i%benchKeys], benchValue)
				return err
			})
		})
	}
}

// benchPutCommand is the log entry a BenchmarkPut Put proposes.
func benchPutCommand(b *testing.B) []byte {
	data, err := wire.EncodeCommand(&wire.Command{Type: wire.CmdTxn, Txn: &wire.TxnRequest{
		Success: []wire.RequestOp{{Put: &wire.PutRequest{Key: benchKey(0), Value: benchValue}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// nopFSM is a raft.BatchingFSM that does nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                       { return nil }
func (nopFSM) ApplyBatch(logs []*raft.Log) []any         { return make([]any, len(logs)) }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error)       { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error            { return rc.Close() }
func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

type nopSnapshot struct{}

// rawRaftStorage gives a raw raft node of a baseline benchmark the store's
// raft settings (raftConfig) and storage: the raft log in raft-log/ and
// the stable store in raft.db, opened and synced as Open does, and a file
// snapshot store. The caller closes the stores after raft's Shutdown.
func rawRaftStorage(b *testing.B, o *Options) (*raft.Config, *raftStore, raft.SnapshotStore) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	conf := (&Store{opts: *o, id: o.NodeID}).raftConfig()
	logs, err := openRawStores(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, o.SnapshotRetain, logbridge.HCLog(o.Logger, "snapshot"))
	if err != nil {
		b.Fatal(err)
	}
	return conf, logs, snaps
}

// openRawRaft starts a bare single-voter raft node configured exactly as
// Open configures the store's: raftConfig() (MaxAppendEntries,
// BatchApplyCh, timeouts, snapshot settings), the same raft log and stable
// store with fsync, a file snapshot store, an in-memory
// transport.
func openRawRaft(b *testing.B) *raft.Raft {
	b.Helper()
	o, err := benchOptions().withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	o.NodeID = "bench-raw"
	conf, logs, snaps := rawRaftStorage(b, &o)
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(o.NodeID))
	servers := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: addr}}}
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, servers); err != nil {
		b.Fatal(err)
	}
	r, err := raft.NewRaft(conf, nopFSM{}, logs, logs, snaps, trans)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			b.Error(err)
		}
		trans.Close()
		logs.close()
	})
	eventually(b, 10*time.Second, "raw raft node becomes leader", func() error {
		if r.State() != raft.Leader {
			return fmt.Errorf("state %v", r.State())
		}
		return nil
	})
	// Like the store's leader no-op: the first write of the term is
	// committed before measuring.
	if err := r.Barrier(10 * time.Second).Error(); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRaftApplyBaseline is the ceiling for BenchmarkPut: raft.Apply
// of a command of the same size as BenchmarkPut's, on the same raft
// settings and log store, to an FSM that does nothing.
func BenchmarkRaftApplyBaseline(b *testing.B) {
	for _, g := range benchConcurrency {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			r := openRawRaft(b)
			cmd := benchPutCommand(b)
			runConcurrently(b, g, func(_, _ int) error {
				data := append([]byte(nil), cmd...) // the store encodes a fresh slice per Put too
				return r.Apply(data, 0).Error()
			})
		})
	}
}

// loadBenchKeys writes benchKeys keys in a few transactions.
func loadBenchKeys(b *testing.B, s *Store) []string {
	b.Helper()
	keys := benchKeyList()
	for chunk := range slices.Chunk(keys, 100) {
		ops := make([]Op, len(chunk))
		for i, k := range chunk {
			ops[i] = OpPut(k, benchValue)
		}
		if _, err := s.Txn(b.Context()).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return keys
}

// BenchmarkGet measures point reads of 100-byte values among 1000 keys:
// linearizable from 64 goroutines (read-index batching), and serializable
// (local) with RunParallel.
func BenchmarkGet(b *testing.B) {
	b.Run("linearizable", func(b *testing.B) {
		s := openBenchStore(b)
		keys := loadBenchKeys(b, s)
		ctx := b.Context()
		runConcurrently(b, 64, func(_, i int) error {
			resp, err := s.Get(ctx, keys[i%benchKeys])
			if err == nil && len(resp.KVs) != 1 {
				err = fmt.Errorf("get %q: %d keys", keys[i%benchKeys], len(resp.KVs))
			}
			return err
		})
	})
	b.Run("serializable", func(b *testing.B) {
		s := openBenchStore(b)
		keys := loadBenchKeys(b, s)
		ctx := b.Context()
		var failed atomic.Pointer[error]
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				resp, err := s.Get(ctx, keys[i%benchKeys], WithSerializable())
				if err == nil && len(resp.KVs) != 1 {
					err = fmt.Errorf("get %q: %d keys", keys[i%benchKeys], len(resp.KVs))
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				i++
			}
		})
		b.StopTimer()
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		reportOpsPerSec(b)
	})
}

// BenchmarkTxn measures compare-and-swap transactions from 64 goroutines:
// each goroutine owns a key and writes it only if its ModRevision is the
// one it last wrote, so every transaction succeeds.
func BenchmarkTxn(b *testing.B) {
	const g = 64
	s := openBenchStore(b)
	ctx := b.Context()
	keys := make([]string, g)
	revs := make([]int64, g) // revs[w] is touched only by worker w
	for w := range keys {
		keys[w] = fmt.Sprintf("bench/txn/%02d", w)
		resp, err := s.Put(ctx, keys[w], benchValue)
		if err != nil {
			b.Fatal(err)
		}
		revs[w] = resp.Revision
	}
	runConcurrently(b, g, func(w, _ int) error {
		resp, err := s.Txn(ctx).
			If(Compare(ModRevision(keys[w]), "=", revs[w])).
			Then(OpPut(keys[w], benchValue)).
			Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("txn on %q: compare failed at mod revision %d", keys[w], revs[w])
		}
		revs[w] = resp.Revision
		return nil
	})
}

// BenchmarkWatchLatency measures how long after a Put its event reaches a
// prefix watcher. One Put at a time; a separate goroutine timestamps each
// event as it arrives. Reported, in microseconds:
//
//	after-put-*   event arrival minus the moment Put returned (0 when the
//	              event arrived first): the cost of the watch beyond the put
//	put-start-*   event arrival minus the moment Put was called
func BenchmarkWatchLatency(b *testing.B) {
	s := openBenchStore(b)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	wch := s.Watch(ctx, "bench/", WithPrefix())

	type arrival struct {
		rev int64
		at  time.Time
		err error
	}
	arrivals := make(chan arrival, 1024)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		defer close(arrivals)
		for resp := range wch {
			now := time.Now()
			if resp.Err != nil {
				arrivals <- arrival{err: resp.Err}
				return
			}
			for _, ev := range resp.Events {
				arrivals <- arrival{rev: ev.KV.ModRevision, at: now}
			}
		}
	})

	after := make([]time.Duration, 0, b.N)
	total := make([]time.Duration, 0, b.N)
	early := 0
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		resp, err := s.Put(ctx, benchKey(i), benchValue)
		done := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		a, ok := <-arrivals
		switch {
		case !ok:
			b.Fatal("watch channel closed")
		case a.err != nil:
			b.Fatal(a.err)
		case a.rev != resp.Revision:
			b.Fatalf("event for revision %d, put created %d", a.rev, resp.Revision)
		}
		d := a.at.Sub(done)
		if d < 0 {
			d, early = 0, early+1
		}
		after = append(after, d)
		total = append(total, a.at.Sub(start))
	}
	b.StopTimer()
	reportOpsPerSec(b)
	reportPercentiles(b, "after-put", after)
	reportPercentiles(b, "put-start", total)
	b.ReportMetric(100*float64(early)/float64(b.N), "%event-before-put-returned")
}

func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	pct := func(p float64) float64 {
		i := int(p * float64(len(ds)-1))
		return float64(ds[i]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), name+"-p50-us")
	b.ReportMetric(pct(0.99), name+"-p99-us")
}

// openRawStores opens a raft log and stable store in a new dir as Open
// does.
func openRawStores(dir string, o *Options) (*raftStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	stable, err := openBolt(filepath.Join(dir, raftDBName), o)
	if err != nil {
		return nil, err
	}
	logs, err := raftlog.Open(filepath.Join(dir, raftLogDir), o.raftLogOptions())
	if err != nil {
		stable.Close()
		return nil, err
	}
	return newRaftStore(logs, stable, nil, nil), nil
}

// BenchmarkHistoryHeap writes revisions of 256-byte values over 10k keys
// (1M revisions with -benchtime=1000000x) and reports how much the live
// heap (after a GC) grew, as a percentage of the bytes written: the
// versions live in kv.db, and only the index of revisions stays in memory.
// Target: below 10. It uses UnsafeNoFsync (only memory is measured) and 64
// writers. ACCORD_HEAP_PROFILE=file writes the heap profile at the end.
func BenchmarkHistoryHeap(b *testing.B) {
	o := benchOptions()
	o.UnsafeNoFsync = true
	s, err := Open(filepath.Join(b.TempDir(), "data"), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := b.Context()
	if err := s.waitLeaderReady(ctx); err != nil {
		b.Fatal(err)
	}
	const keys = 10000
	val := bytes.Repeat([]byte("h"), 256)
	// One version of every key first: the index entries themselves are
	// not history.
	for i := range keys {
		if _, err := s.Put(ctx, fmt.Sprintf("hist/%05d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	heap := func() uint64 {
		// The batch not yet committed to kv.db (at most 100 ms of writes)
		// is bounded, not history: commit it first.
		settleTestKeyspace(b, s.ks)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	runConcurrently(b, 64, func(_, i int) error {
		_, err := s.Put(ctx, fmt.Sprintf("hist/%05d", i%keys), val)
		return err
	})
	after := heap()
	if path := os.Getenv("ACCORD_HEAP_PROFILE"); path != "" {
		// The live heap at this point, for a breakdown (go tool pprof
		// -sample_index=inuse_space); run with -memprofilerate=4096 or so.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	written := float64(b.N) * float64(len(val)+len("hist/00000"))
	b.ReportMetric(100*(float64(after)-float64(before))/written, "heap-growth-%-of-written")
	b.ReportMetric(float64(after-min(after, before))/float64(b.N), "heap-B/revision")
}
