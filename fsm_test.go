package accord

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/wire"
)

func newTestFSM(t testing.TB) *fsm {
	ks := newTestKeyspace(t)
	st := &kvState{members: map[string]memberAttrs{}}
	f := newFSM(slog.New(slog.NewTextHandler(io.Discard, nil)), ks, st, newWatchHub(ks), newLessor(), filepath.Dir(ks.be.path), testBackendOptions())
	// A Restore swaps in a backend of its own.
	t.Cleanup(func() { f.ks.be.close() })
	return f
}

func cmdLog(t *testing.T, index uint64, c *wire.Command) *raft.Log {
	t.Helper()
	b, err := wire.EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

func putCmd(key, value string) *wire.Command {
	return &wire.Command{Type: wire.CmdTxn, Txn: &wire.TxnRequest{Success: []wire.RequestOp{{Put: &wire.PutRequest{Key: key, Value: []byte(value)}}}}}
}

// TestFSMVersionGate: an entry written by a newer version (unknown command
// type or codec version) and an undecodable entry are answered with an
// error, change nothing, and do not stop later entries from applying.
func TestFSMVersionGate(t *testing.T) {
	f := newTestFSM(t)
	logs := []*raft.Log{
		cmdLog(t, 1, putCmd("a", "1")),
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte{wire.CodecVersion, 200, 1, 2, 3}}, // future command type
		{Index: 3, Term: 1, Type: raft.LogCommand, Data: []byte{wire.CodecVersion + 1, byte(wire.CmdTxn)}},
		{Index: 4, Term: 1, Type: raft.LogCommand, Data: []byte{wire.CodecVersion, byte(wire.CmdTxn), 0xff}}, // garbage payload
		{Index: 5, Term: 1, Type: raft.LogCommand, Data: nil},
		{Index: 6, Term: 1, Type: raft.LogConfiguration, Data: nil},
		cmdLog(t, 7, putCmd("b", "2")),
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("got %d results for %d logs", len(out), len(logs))
	}
	wantErr := []error{nil, ErrUnsupported, ErrUnsupported, ErrCorrupt, ErrCorrupt, nil, nil}
	for i, want := range wantErr {
		if logs[i].Type != raft.LogCommand {
			if out[i] != nil {
				t.Errorf("entry %d (non-command): result %v, want nil", i+1, out[i])
			}
			continue
		}
		res := out[i].(*applyResult)
		if want == nil && res.err != nil || want != nil && !errors.Is(res.err, want) {
			t.Errorf("entry %d: err %v, want %v", i+1, res.err, want)
		}
	}
	if rev := f.ks.Rev(); rev != 3 {
		t.Fatalf("revision %d after two puts, want 3 (rejected entries must not change it)", rev)
	}
	if idx, _ := f.applied.get(); idx != 7 {
		t.Fatalf("applied index %d, want 7", idx)
	}
}

// TestFSMBatchPublishesBeforeCompaction: events of a revision compacted
// later in the same batch still reach synced watchers.
func TestFSMBatchPublishesBeforeCompaction(t *testing.T) {
	f := newTestFSM(t)
	w := &watcher{key: "a", end: "\x00", in: make(chan WatchResponse, 8), wake: make(chan struct{}, 1)}
	f.hub.register(w, 0)
	f.ApplyBatch([]*raft.Log{
		cmdLog(t, 1, putCmd("a", "1")),
		cmdLog(t, 2, putCmd("a", "2")),
		cmdLog(t, 3, &wire.Command{Type: wire.CmdCompact, Compact: 3}),
	})
	r := <-w.in
	var revs []int64
	for _, ev := range r.Events {
		revs = append(revs, ev.KV.ModRevision)
	}
	if len(revs) != 2 || revs[0] != 2 || revs[1] != 3 {
		t.Fatalf("watcher saw revisions %v, want [2 3]", revs)
	}
}
