package accord

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/logbridge"
)

// Benchmarks of a 3-node cluster in one process, over real loopback TCP,
// with fsync on, and the matching baseline: a bare 3-node hashicorp/raft
// cluster with the store's raft settings, log store and transport kind,
// applying commands of the same size to an FSM that does nothing. Run
// them together (.ci/bench prints the ClusterPut/baseline ratio):
//
//	go test -run='^$' -bench=Cluster -benchtime=2s -count=3 .
//
// All three members share this machine's CPUs and disk, so the numbers
// measure the software, not a network.

const (
	benchClusterGoroutines = 64

	// benchClusterElection is the election timeout of the throughput
	// benchmarks and their baseline: the default. With the test clusters'
	// 150ms, a busy 2-core machine whose disk stalls an fsync now and then
	// made the leader lose its lease mid-benchmark.
	benchClusterElection = defaultElectionTimeout
)

// newBenchCluster starts a 3-node test cluster with fsync on and the
// given election timeout. Nodes log only with ACCORD_TEST_LOG set:
// benchmark output prints every log line.
func newBenchCluster(b *testing.B, election time.Duration) *testCluster {
	b.Helper()
	return newTestCluster(b, 3, func(_ int, o *Options) {
		o.UnsafeNoFsync = false
		o.ElectionTimeout = election
		if os.Getenv("ACCORD_TEST_LOG") == "" {
			o.Logger = nil
		}
	})
}

// BenchmarkClusterPut measures Puts of 100-byte values among 1000 keys
// from 64 goroutines, on the leader and on a follower (which forwards
// every Put to the leader). Compare with BenchmarkClusterRaftBaseline.
func BenchmarkClusterPut(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run(fmt.Sprintf("%s/goroutines=%d", via, benchClusterGoroutines), func(b *testing.B) {
			c := newBenchCluster(b, benchClusterElection)
			nd := c.leader()
			if via == "follower" {
				nd = c.follower()
			}
			s := nd.store()
			keys := benchKeyList()
			ctx := b.Context()
			runConcurrently(b, benchClusterGoroutines, func(_, i int) error {
				_, err := s.Put(ctx, keys[i%benchKeys], benchValue)
				return err
			})
		})
	}
}

// BenchmarkClusterGet measures linearizable point reads on a follower
// from 64 goroutines: each asks the leader for a read index over the peer
// transport, then reads locally once it has applied that far.
func BenchmarkClusterGet(b *testing.B) {
	b.Run("follower/linearizable", func(b *testing.B) {
		c := newBenchCluster(b, benchClusterElection)
		s := c.follower().store()
		keys := loadBenchKeys(b, s)
		c.waitConverged()
		ctx := b.Context()
		runConcurrently(b, benchClusterGoroutines, func(_, i int) error {
			resp, err := s.Get(ctx, keys[i%benchKeys])
			if err == nil && len(resp.KVs) != 1 {
				err = fmt.Errorf("get %q: %d keys", keys[i%benchKeys], len(resp.KVs))
			}
			return err
		})
	})
}

// BenchmarkClusterRaftBaseline is the ceiling for BenchmarkClusterPut on
// the leader: raft.Apply on the leader of a bare 3-node raft cluster with
// the store's raft settings (raftConfig with benchClusterElection), its raft log and stable store with fsync, raft's NetworkTransport
// over loopback TCP with the peer transport's pool size and timeout, and
// an FSM that does nothing.
func BenchmarkClusterRaftBaseline(b *testing.B) {
	b.Run(fmt.Sprintf("goroutines=%d", benchClusterGoroutines), func(b *testing.B) {
		r := openRawRaftCluster(b, 3)
		cmd := benchPutCommand(b)
		runConcurrently(b, benchClusterGoroutines, func(_, _ int) error {
			data := append([]byte(nil), cmd...) // the store encodes a fresh slice per Put too
			return r.Apply(data, 0).Error()
		})
	})
}

// openRawRaftCluster starts n bare raft nodes on loopback TCP, bootstraps
// them as one cluster and returns the leader once it has committed an
// entry of its term.
func openRawRaftCluster(b *testing.B, n int) *raft.Raft {
	b.Helper()
	type rawNode struct {
		conf  *raft.Config
		logs  *raftStore
		snaps raft.SnapshotStore
		trans *raft.NetworkTransport
		r     *raft.Raft
	}
	nodes := make([]*rawNode, 0, n)
	var servers []raft.Server
	// raft's Shutdown leaves the transport's connections open, and its
	// Close only stops the listener: close the pooled connections too, so
	// that the goroutines serving them on the other nodes end.
	b.Cleanup(func() {
		for _, nd := range nodes {
			if nd.r != nil {
				if err := nd.r.Shutdown().Error(); err != nil {
					b.Error(err)
				}
			}
		}
		for _, nd := range nodes {
			nd.trans.CloseStreams()
			nd.trans.Close()
			nd.logs.close()
		}
	})
	for i := range n {
		o, err := (&Options{ElectionTimeout: benchClusterElection}).withDefaults()
		if err != nil {
			b.Fatal(err)
		}
		o.NodeID = fmt.Sprintf("raw%d", i)
		conf, logs, snaps := rawRaftStorage(b, &o)
		trans, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, &raft.NetworkTransportConfig{
			// As the peer transport's raftTransport: pool, timeout, and no
			// pipelining.
			MaxPool:         5,
			Timeout:         10 * time.Second,
			MaxRPCsInFlight: 1,
			Logger:          logbridge.HCLog(o.Logger, "raft-net"),
		})
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, &rawNode{conf: conf, logs: logs, snaps: snaps, trans: trans})
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: conf.LocalID, Address: trans.LocalAddr()})
	}
	for _, nd := range nodes {
		if err := raft.BootstrapCluster(nd.conf, nd.logs, nd.logs, nd.snaps, nd.trans, raft.Configuration{Servers: servers}); err != nil {
			b.Fatal(err)
		}
		r, err := raft.NewRaft(nd.conf, nopFSM{}, nd.logs, nd.logs, nd.snaps, nd.trans)
		if err != nil {
			b.Fatal(err)
		}
		nd.r = r
	}
	var leader *raft.Raft
	eventually(b, 20*time.Second, "a raw raft leader", func() error {
		for _, nd := range nodes {
			if nd.r.State() == raft.Leader {
				leader = nd.r
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	// Like the store's leader no-op: the first write of the term is
	// committed, on a quorum, before measuring.
	if err := leader.Barrier(10 * time.Second).Error(); err != nil {
		b.Fatal(err)
	}
	return leader
}

// BenchmarkClusterFailover measures, on a fresh cluster per iteration,
// the time from the start of killing the leader (Close) to the first
// successful Put through a surviving member, which keeps retrying
// internally until a new leader is ready. The cluster has the test
// clusters' election timeout (clusterElection, 150ms), so expect a few
// times that. Reported in milliseconds: failover-p50-ms and
// failover-max-ms; ns/op is the mean.
func BenchmarkClusterFailover(b *testing.B) {
	samples := make([]time.Duration, 0, b.N)
	b.StopTimer()
	for range b.N {
		c := newBenchCluster(b, clusterElection)
		ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
		l := c.leader()
		s := c.follower().store()
		if _, err := s.Put(ctx, "failover/before", benchValue); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		l.kill()
		var err error
		for {
			// A Put cut off by the old leader's death may report an
			// unknown outcome; the next one is the one that counts.
			if _, err = s.Put(ctx, "failover/after", benchValue); err == nil || ctx.Err() != nil {
				break
			}
		}
		d := time.Since(start)
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("no successful write after the leader was killed: %v", err)
		}
		samples = append(samples, d)
		c.stopAll()
	}
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(samples[(len(samples)-1)/2]), "failover-p50-ms")
	b.ReportMetric(ms(samples[len(samples)-1]), "failover-max-ms")
}
