package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/accordkv/accord"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
	)
}

// openStore opens a single-node store that fsyncs (so that the WAL fsync
// histogram moves) and closes it when the test ends.
func openStore(t *testing.T) *accord.Store {
	t.Helper()
	s, err := accord.Open(t.TempDir(), &accord.Options{ElectionTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// scrape gathers reg and returns its families by name. Gather itself
// fails on two series with the same name and labels, so a collision shows
// here.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the one series of name whose labels include
// want (name=value pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	var found []*dto.Metric
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && labels[want[i]] == want[i+1]
		}
		if match {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	m := found[0]
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("%s: no value", name)
	return 0
}

var allNames = []string{
	"accord_raft_term", "accord_raft_commit_index", "accord_raft_applied_index", "accord_has_leader",
	"accord_is_leader", "accord_leader_changes_seen_total", "accord_proposals_pending",
	"accord_proposals_committed_total", "accord_proposals_failed_total", "accord_proposals_applied_total",
	"accord_forwarded_writes_total", "accord_snapshot_save_duration_seconds",
	"accord_snapshot_restore_duration_seconds", "accord_wal_fsync_duration_seconds", "accord_revision",
	"accord_compact_revision", "accord_keys", "accord_keyspace_size_bytes", "accord_watchers",
	"accord_leases", "accord_gossip_members",
}

// Two stores in one process, each on its own registry: nothing collides
// (no global registration), and each registry follows its own store.
func TestTwoStoresTwoRegistries(t *testing.T) {
	stores := []*accord.Store{openStore(t), openStore(t)}
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for i := range stores {
		if _, err := Register(regs[i], stores[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	before := []map[string]*dto.MetricFamily{scrape(t, regs[0]), scrape(t, regs[1])}
	if len(before[0]) != len(allNames) {
		t.Errorf("%d metric families, want %d", len(before[0]), len(allNames))
	}
	for _, name := range allNames {
		if _, ok := before[0][name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if v := value(t, before[0], "accord_has_leader"); v != 1 {
		t.Fatalf("accord_has_leader %v", v)
	}

	puts := []int{5, 2}
	for i, s := range stores {
		for k := range puts[i] {
			if _, err := s.Put(t.Context(), fmt.Sprintf("k%d", k), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range stores {
		after := scrape(t, regs[i])
		moved := func(name string, labels ...string) float64 {
			return value(t, after, name, labels...) - value(t, before[i], name, labels...)
		}
		if got := moved("accord_proposals_committed_total"); got != float64(puts[i]) {
			t.Errorf("store %d: proposals committed moved by %v, want %d", i, got, puts[i])
		}
		if got := moved("accord_proposals_applied_total"); got < float64(puts[i]) {
			t.Errorf("store %d: proposals applied moved by %v, want >= %d", i, got, puts[i])
		}
		if got := moved("accord_wal_fsync_duration_seconds"); got < float64(puts[i]) {
			t.Errorf("store %d: WAL fsyncs moved by %v, want >= %d", i, got, puts[i])
		}
		if got := value(t, after, "accord_keys"); got != float64(puts[i]) {
			t.Errorf("store %d: %v keys, want %d", i, got, puts[i])
		}
		if got := moved("accord_revision"); got != float64(puts[i]) {
			t.Errorf("store %d: revision moved by %v, want %d", i, got, puts[i])
		}
		if got := value(t, after, "accord_forwarded_writes_total", "outcome", "committed"); got != 0 {
			t.Errorf("store %d: a single node forwarded %v writes", i, got)
		}
		if got := value(t, after, "accord_gossip_members", "status", "alive"); got != 0 {
			t.Errorf("store %d: %v alive gossip members without gossip", i, got)
		}
		checkHistogram(t, after["accord_wal_fsync_duration_seconds"].GetMetric()[0].GetHistogram())
	}
}

// checkHistogram checks the conversion: etcd's bounds, cumulative buckets
// that end at the sample count.
func checkHistogram(t *testing.T, h *dto.Histogram) {
	t.Helper()
	bs := h.GetBucket()
	if len(bs) != 14 || bs[0].GetUpperBound() != 0.001 || bs[13].GetUpperBound() != 8.192 {
		t.Fatalf("WAL fsync buckets %v, want 14 from 0.001 to 8.192", bs)
	}
	var prev uint64
	for _, b := range bs {
		if b.GetCumulativeCount() < prev {
			t.Fatalf("buckets not cumulative: %v", bs)
		}
		prev = b.GetCumulativeCount()
	}
	if prev > h.GetSampleCount() || h.GetSampleCount() == 0 || h.GetSampleSum() <= 0 {
		t.Fatalf("last bucket %d, count %d, sum %v", prev, h.GetSampleCount(), h.GetSampleSum())
	}
}

// Registering a store again on the same registry is an error, not a
// panic; const labels tell two stores apart on one registry.
func TestRegisterErrors(t *testing.T) {
	a, b := openStore(t), openStore(t)
	reg := prometheus.NewRegistry()
	ca, err := Register(reg, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	for _, s := range []*accord.Store{a, b} {
		_, err := Register(reg, s, nil)
		if !errors.As(err, &are) || !strings.Contains(err.Error(), "already registered") {
			t.Fatalf("registering a second time: %v", err)
		}
		t.Logf("registering a second time: %v", err)
	}
	// Once unregistered, the store can be registered again.
	if !reg.Unregister(ca) {
		t.Fatal("Unregister found nothing")
	}
	if _, err := Register(reg, a, nil); err != nil {
		t.Fatalf("after Unregister: %v", err)
	}

	labelled := prometheus.NewRegistry()
	for _, s := range []*accord.Store{a, b} {
		if _, err := Register(labelled, s, &Options{ConstLabels: map[string]string{"member": s.NodeID()}}); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, labelled)
	for _, s := range []*accord.Store{a, b} {
		if v := value(t, fams, "accord_is_leader", "member", s.NodeID()); v != 1 {
			t.Errorf("accord_is_leader{member=%s} %v", s.NodeID(), v)
		}
	}
	if _, err := Register(labelled, a, &Options{ConstLabels: map[string]string{"member": a.NodeID()}}); !errors.As(err, &are) {
		t.Fatalf("the same labels twice: %v", err)
	}

	for _, c := range []struct {
		what string
		reg  prometheus.Registerer
		s    *accord.Store
		opts *Options
	}{
		{"nil registry", nil, a, nil},
		{"nil store", prometheus.NewRegistry(), nil, nil},
		{"empty label name", prometheus.NewRegistry(), a, &Options{ConstLabels: map[string]string{"": "x"}}},
		{"label taken by accord", prometheus.NewRegistry(), a, &Options{ConstLabels: map[string]string{"outcome": "x"}}},
	} {
		if _, err := Register(c.reg, c.s, c.opts); err == nil || !strings.HasPrefix(err.Error(), "accord/metrics: register") {
			t.Errorf("%s: %v, want an error", c.what, err)
		} else {
			t.Logf("%s: %v", c.what, err)
		}
	}
}

// A closed store still scrapes: its final counters, no leader.
func TestClosedStoreScrapes(t *testing.T) {
	s, err := accord.Open(t.TempDir(), &accord.Options{ElectionTimeout: 50 * time.Millisecond, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, s, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, reg)
	if v := value(t, fams, "accord_proposals_committed_total"); v != 1 {
		t.Errorf("committed %v after Close, want 1", v)
	}
	if v := value(t, fams, "accord_is_leader"); v != 0 {
		t.Errorf("is_leader %v after Close", v)
	}
}
