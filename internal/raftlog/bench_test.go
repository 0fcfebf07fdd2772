package raftlog_test

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/raftlog"
)

// benchEntries returns batch entries from index next, each with size bytes
// of data and the 36 bytes of extensions accord puts on a command.
func benchEntries(next uint64, batch, size int) []*raft.Log {
	es := make([]*raft.Log, batch)
	for i := range es {
		idx := next + uint64(i)
		es[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Extensions: fill(idx, 2, 36), Data: fill(idx, 1, size)}
	}
	return es
}

// BenchmarkStoreLogs is the append path: one StoreLogs call per batch, as
// raft makes it, with and without fdatasync, in default-size segments (so
// that rotations are part of the cost).
func BenchmarkStoreLogs(b *testing.B) {
	for _, sync := range []bool{true, false} {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("sync=%v/batch=%d", sync, batch), func(b *testing.B) {
				l, err := raftlog.Open(b.TempDir(), raftlog.Options{NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				const size = 256
				// Built once: the entries' indexes move on with each call.
				es := benchEntries(1, batch, size)
				b.SetBytes(int64(batch * size))
				b.ReportAllocs()
				next := uint64(1)
				for b.Loop() {
					for i, e := range es {
						e.Index = next + uint64(i)
					}
					if err := l.StoreLogs(es); err != nil {
						b.Fatal(err)
					}
					next += uint64(batch)
				}
			})
		}
	}
}

// BenchmarkGetLog reads entries back at random, as raft's replication does.
func BenchmarkGetLog(b *testing.B) {
	l, err := raftlog.Open(b.TempDir(), raftlog.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const n = 10_000
	for next := uint64(1); next <= n; next += 64 {
		if err := l.StoreLogs(benchEntries(next, 64, 256)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var e raft.Log
	i := uint64(0)
	for b.Loop() {
		i = (i*7919 + 1) % n
		if err := l.GetLog(i+1, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens a log of 100k entries (several default-size
// segments): Open reads and checks every record.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	l, err := raftlog.Open(dir, raftlog.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	for next := uint64(1); next <= n; next += 64 {
		if err := l.StoreLogs(benchEntries(next, 64, 256)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l, err := raftlog.Open(dir, raftlog.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
