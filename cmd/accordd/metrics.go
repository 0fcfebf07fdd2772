package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
	accordmetrics "github.com/accordkv/accord/metrics"
)

// Metrics are registered on a registry of accordd's own (never the global
// one) and served in the Prometheus text format at /metrics on the client
// URLs and on --listen-metrics-urls. They are the library's accord_*
// metrics (package github.com/accordkv/accord/metrics: raft, proposals,
// forwarding, snapshot and WAL fsync histograms, keys, watchers, leases,
// gossip), and beside them the gauges below under etcd's names where etcd
// has a metric with the same meaning, so that existing etcd dashboards and
// alerts (etcd_server_has_leader above all) keep working. Those are read
// from Store.Status at scrape time.

// statusCollector exposes a Store's Status as gauges.
type statusCollector struct {
	store *accord.Store

	hasLeader, isLeader, isLearner      *prometheus.Desc
	committed, applied                  *prometheus.Desc
	revision, compactRevision, dbSize   *prometheus.Desc
	serverVersion, clusterVersion, info *prometheus.Desc
}

func newStatusCollector(s *accord.Store) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statusCollector{
		store:           s,
		hasLeader:       d("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
		isLeader:        d("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
		isLearner:       d("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."),
		committed:       d("etcd_server_proposals_committed_total", "The total number of consensus proposals committed (raft commit index)."),
		applied:         d("etcd_server_proposals_applied_total", "The total number of consensus proposals applied (raft applied index)."),
		revision:        d("etcd_debugging_mvcc_current_revision", "The current revision of the store."),
		compactRevision: d("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in the store."),
		dbSize:          d("etcd_mvcc_db_total_size_in_bytes", "Approximate size of the keyspace in bytes (accord keeps it in memory)."),
		serverVersion:   d("etcd_server_version", "Which etcd API version this server reports.", "server_version"),
		clusterVersion:  d("accord_cluster_version", "The cluster's accord version: the lowest among its members.", "cluster_version"),
		info:            d("accord_member_info", "This member's identity and accord version.", "member_id", "node_id", "name", "version"),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.isLearner, c.committed, c.applied,
		c.revision, c.compactRevision, c.dbSize, c.serverVersion, c.clusterVersion, c.info} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge(c.serverVersion, 1, etcdapi.Version)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.store.Status(ctx)
	if err != nil {
		gauge(c.hasLeader, 0)
		gauge(c.isLeader, 0)
		return
	}
	gauge(c.hasLeader, b(st.Leader != ""))
	gauge(c.isLeader, b(st.Leader != "" && st.Leader == st.ID))
	gauge(c.isLearner, b(st.IsLearner))
	gauge(c.committed, float64(st.CommitIndex))
	gauge(c.applied, float64(st.AppliedIndex))
	gauge(c.revision, float64(st.Revision))
	gauge(c.compactRevision, float64(st.CompactRevision))
	gauge(c.dbSize, float64(st.DBSize))
	if st.ClusterVersion != "" {
		gauge(c.clusterVersion, 1, st.ClusterVersion)
	}
	gauge(c.info, 1, memberIDHex(st.ID), st.ID, st.Name, st.Version)
}

// newMetricsHandler returns the /metrics handler for store: accord's
// metrics, the etcd-named gauges, and the Go runtime and process
// collectors, on one registry of its own.
func newMetricsHandler(store *accord.Store) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStatusCollector(store),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if _, err := accordmetrics.Register(reg, store, nil); err != nil {
		return nil, err
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// newMetricsMux serves metrics (from newMetricsHandler) at /metrics, for
// --listen-metrics-urls /health as etcd answers it (the client URLs get
// /health from etcdapi), and with --enable-pprof Go's profiles at
// /debug/pprof/, as etcd does.
func newMetricsMux(metrics http.Handler, store *accord.Store, withHealth, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	if withHealth {
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { serveHealth(store, w, r) })
	}
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveHealth answers /health as etcd (and etcdapi on the client port)
// does: {"health":"true","reason":""} with 200 when a linearizable read
// (serializable with ?serializable=true) succeeds within a second, else
// "false" with a reason and 503.
func serveHealth(store *accord.Store, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	opts := []accord.OpOption{accord.WithKeysOnly(), accord.WithLimit(1)}
	if r.URL.Query().Get("serializable") == "true" {
		opts = append(opts, accord.WithSerializable())
	}
	h := struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}{Health: "true"}
	code := http.StatusOK
	if _, err := store.Get(ctx, "health", opts...); err != nil {
		h.Health, code = "false", http.StatusServiceUnavailable
		if errors.Is(err, accord.ErrNoLeader) {
			h.Reason = "RAFT NO LEADER"
		} else {
			h.Reason = "RANGE ERROR:" + err.Error()
		}
	}
	b, _ := json.Marshal(h)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
