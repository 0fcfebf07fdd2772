package accord

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRefusingMemberReplaced: a member whose data directory is damaged
// refuses to start; the others remove it, and the same machine joins again
// as a new member with an empty directory and catches up.
func TestRefusingMemberReplaced(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l := c.leader()
	for i := range 20 {
		if _, err := l.store().Put(ctx, "k"+string(rune('a'+i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged()
	bad := c.follower()
	badID := bad.store().NodeID()
	bad.kill()
	if err := os.Remove(filepath.Join(bad.dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(bad.dir, &bad.opts); err == nil {
		s.Close()
		t.Fatal("a member without raft.db started")
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("refusal is not ErrCorrupt: %v", err)
	}

	// From the others: remove it, add its address again, start it empty.
	l = c.leader()
	if err := l.store().RemoveMember(ctx, badID); err != nil {
		t.Fatal(err)
	}
	c.addMember(ctx, l.store(), bad.opts.PeerAddr)
	bad.dir = t.TempDir()
	bad.opts.JoinExisting = true
	bad.opts.Peers = []string{l.opts.PeerAddr}
	bad.restart(false)
	c.waitConverged()
	if bad.store().NodeID() == badID {
		t.Fatal("the replacement reused the removed member's ID")
	}
	r, err := bad.store().Get(ctx, "k", WithPrefix(), WithSerializable())
	if err != nil || r.Count != 20 {
		t.Fatalf("replacement holds %+v %v, want 20 keys", r, err)
	}
	ms, err := l.store().Members(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %+v %v", ms, err)
	}
}
