package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
	"github.com/accordkv/accord/internal/freeport"
)

// BenchmarkInProcess runs each row against accord clusters of 1 and 3
// members served by etcdapi in this process, with fsync on and the
// daemon's election timeout, so that a CPU profile shows where the server
// spends its time under the load .ci/bench-etcd puts on accordd:
//
//	go test -run='^$' -bench=InProcess/nodes=3/put -benchtime=20000x \
//	    -cpuprofile=cpu.out ./cmd/accordbench
//	go tool pprof -top -focus='accord|etcdapi' cmd/accordbench.test cpu.out
//
// b.N is the number of operations of the row (events, for watch). The
// client runs in the same process: focus the profile on the server's
// packages. Its ops/s are not comparable with etcd's (which runs in its
// own process); .ci/bench-etcd is the comparison.
func BenchmarkInProcess(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			eps := startCluster(b, n, time.Second, false)
			for _, row := range allRows {
				b.Run(row, func(b *testing.B) {
					cfg := config{
						Endpoints: eps, Clients: 3, Workers: 32, Rows: []string{row},
						Ops: int64(b.N), Warmup: 200 * time.Millisecond,
						RowTimeout: 10 * time.Minute, RequestTimeout: 10 * time.Second, DialTimeout: 5 * time.Second,
						Wait: 30 * time.Second, KeySpace: 10000, ValueSize: 256, Prefix: "accordbench/",
					}
					if row == rowWatch {
						// b.N counts events; every put reaches Clients watchers.
						cfg.Ops = max(int64(b.N)/int64(cfg.Clients), 1)
					}
					rep, err := runBench(b.Context(), cfg, io.Discard)
					if err != nil {
						b.Fatal(err)
					}
					r := rep.Rows[0]
					if r.Error != "" || r.Ops == 0 {
						b.Fatalf("%s: %+v", row, r)
					}
					b.ReportMetric(r.OpsPerSec, "ops/s")
					b.ReportMetric(r.P50Ms, "p50-ms")
					b.ReportMetric(r.P99Ms, "p99-ms")
				})
			}
		})
	}
}

// startCluster starts n accord members (fsync on unless noFsync),
// bootstrapped together as etcd's --initial-cluster does,
// each served over the etcd API on a loopback port, and returns the client
// endpoints.
func startCluster(b testing.TB, n int, election time.Duration, noFsync bool) []string {
	b.Helper()
	peers := make([]accord.InitialMember, n)
	for i := range peers {
		peers[i] = accord.InitialMember{ID: fmt.Sprintf("m%d", i+1), PeerAddr: freeAddr(b)}
	}
	var eps []string
	for i := range n {
		opts := &accord.Options{ElectionTimeout: election, UnsafeNoFsync: noFsync}
		if n > 1 {
			opts.NodeID = peers[i].ID
			opts.PeerAddr = peers[i].PeerAddr
			opts.InitialCluster = peers
		}
		store, err := accord.Open(b.TempDir(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		srv, err := etcdapi.New(store, nil)
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			srv.Close()
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		b.Cleanup(func() {
			srv.Close()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Errorf("Serve: %v", err)
			}
		})
		eps = append(eps, ln.Addr().String())
	}
	return eps
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(b testing.TB) string {
	b.Helper()
	addr, err := freeport.Addr() // below the ephemeral range: see package freeport
	if err != nil {
		b.Fatal(err)
	}
	return addr
}
