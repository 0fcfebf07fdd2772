package accord

import (
	"reflect"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
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

// TestAnswerOnStopFields: the futures the store waits on (ApplyLog's and
// VerifyLeader's) have the ShutdownCh field answerOnStop sets. If a raft
// upgrade renames or drops it, Close could wait forever on a future raft
// never answers (hashicorp/raft#498): this test fails first.
func TestAnswerOnStopFields(t *testing.T) {
	s := openTestStore(t, "", nil)
	futures := map[string]raft.Future{
		"ApplyLog":     s.raft.ApplyLog(raft.Log{Data: mustEncodeNoop(t)}, time.Second),
		"VerifyLeader": s.raft.VerifyLeader(),
	}
	for name, f := range futures {
		s.answerOnStop(f)
		v := reflect.ValueOf(f).Elem()
		idx := shutdownChField(v.Type())
		if idx == nil {
			t.Fatalf("%s's future (%s) has no settable ShutdownCh field", name, v.Type())
		}
		if got := v.FieldByIndex(idx).Interface().(chan struct{}); got != s.stop {
			t.Fatalf("%s's future: ShutdownCh not set to the store's stop channel", name)
		}
		if err := f.Error(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func mustEncodeNoop(t *testing.T) []byte {
	t.Helper()
	data, err := wire.EncodeCommand(&wire.Command{Type: wire.CmdNoop})
	if err != nil {
		t.Fatal(err)
	}
	return data
}
