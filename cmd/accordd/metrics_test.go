package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/accordkv/accord"
)

// /metrics carries accord's metrics beside the etcd-named gauges, and each
// handler has a registry of its own (two for one store do not collide).
func TestMetricsHandler(t *testing.T) {
	s, err := accord.Open(t.TempDir(), &accord.Options{ElectionTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h, err := newMetricsHandler(s)
		if err != nil {
			t.Fatal(err)
		}
		mux := newMetricsMux(h, s, true, false)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %.300s", rec.Code, body)
		}
		for _, want := range []string{
			"\netcd_server_has_leader 1\n",
			"\netcd_debugging_mvcc_current_revision 2\n",
			"\naccord_is_leader 1\n",
			"\naccord_keys 1\n",
			"\naccord_proposals_committed_total 1\n",
			"\naccord_wal_fsync_duration_seconds_bucket{le=\"0.001\"} ",
			"\naccord_gossip_members{status=\"alive\"} 0\n",
			"\ngo_goroutines ",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
			}
		}
		if n := strings.Count(string(body), "\n# TYPE accord_raft_term "); n != 1 {
			t.Errorf("accord_raft_term described %d times", n)
		}
	}
}
