package accord

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Var benchmarks: the cost of reading a Var on a hot path, and how long a
// write takes to become visible through it.

func benchVar(b *testing.B) (*Store, *Var[testFlags]) {
	b.Helper()
	s := openTestStore(b, "", nil)
	v, err := BindVar[testFlags](b.Context(), s, "cfg/flags", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close() })
	if _, err := v.Set(b.Context(), testFlags{Checkout: true, Banner: "hello"}); err != nil {
		b.Fatal(err)
	}
	return s, v
}

// BenchmarkVarLoad is the hot path: one atomic load, no lock, no allocation.
func BenchmarkVarLoad(b *testing.B) {
	_, v := benchVar(b)
	b.ReportAllocs()
	var sink testFlags
	for b.Loop() {
		sink = v.Load()
	}
	if !sink.Checkout {
		b.Fatal("wrong value")
	}
}

// BenchmarkVarLoadParallel reads from every P at once: readers share
// nothing they write to, so it scales.
func BenchmarkVarLoadParallel(b *testing.B) {
	_, v := benchVar(b)
	b.ReportAllocs()
	var wrong atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		var n int64
		for pb.Next() {
			if !v.Load().Checkout {
				n++
			}
		}
		wrong.Add(n)
	})
	if wrong.Load() != 0 {
		b.Fatal("wrong value")
	}
}

// BenchmarkVarSnapshot reads value, revision and error state together.
func BenchmarkVarSnapshot(b *testing.B) {
	_, v := benchVar(b)
	b.ReportAllocs()
	var rev int64
	for b.Loop() {
		rev += v.Snapshot().Rev
	}
	if rev == 0 {
		b.Fatal("no revision")
	}
}

// BenchmarkVarUpdateVisible is update-to-visible latency on one node: a
// Put through the Store (no fsync), then wait until Load returns the new
// value. ns/op is the whole round; visible-after-put-ns is the part after
// Put returned (watch delivery, decoding, publishing).
func BenchmarkVarUpdateVisible(b *testing.B) {
	s, v := benchVar(b)
	ctx := b.Context()
	var after time.Duration
	i := 0
	for b.Loop() {
		i++
		banner := strconv.Itoa(i)
		put, err := s.Put(ctx, "cfg/flags", []byte(`{"checkout":true,"banner":"`+banner+`"}`))
		if err != nil {
			b.Fatal(err)
		}
		putDone := time.Now()
		for {
			snap := v.Snapshot()
			if snap.Rev >= put.Revision {
				if snap.Value.Banner != banner {
					b.Fatalf("revision %d has banner %q, want %q", snap.Rev, snap.Value.Banner, banner)
				}
				break
			}
			select {
			case <-snap.Changed():
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
		}
		after += time.Since(putDone)
	}
	b.ReportMetric(float64(after.Nanoseconds())/float64(i), "visible-after-put-ns")
}
