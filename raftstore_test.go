package accord

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestRaftStoreNotMonotonic: raftStore must not claim to be a monotonic
// log store. If it did, raft would delete the whole log after each
// snapshot install and at each Open that restores a snapshot; raftlog
// holds the gap below an installed snapshot instead (see raftStore and
// raftlog's TestGap; TestClusterMoreRestartAfterInstallSnapshot restarts
// a member over such a gap).
func TestRaftStoreNotMonotonic(t *testing.T) {
	var ls raft.LogStore = &raftStore{}
	if m, ok := ls.(raft.MonotonicLogStore); ok && m.IsMonotonic() {
		t.Fatal("raftStore reports IsMonotonic: raft would empty the log after every snapshot install")
	}
}
