package accord

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
		// serf.Create starts its query goroutine before creating memberlist
		// and, when memberlist.Create fails (a gossip port that cannot be
		// bound), returns without closing the channel that stops it
		// (serf v0.10.2 serf.go:317 vs :423). Nothing of ours can reach it.
		goleak.IgnoreTopFunction("github.com/hashicorp/serf/serf.(*serfQueries).stream"),
	)
}
