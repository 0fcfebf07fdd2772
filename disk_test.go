package accord

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDisk makes s believe its disk has *free bytes left.
func fakeDisk(s *Store, free *atomic.Uint64) {
	f := func(string) (uint64, bool) { return free.Load(), true }
	s.disk.free.Store(&f)
	s.disk.check()
}

// TestDiskFull: with the disk below MinFreeDiskBytes, writes fail with
// ErrNoSpace (also when forwarded from a follower), reads and revokes keep
// working, no election happens, and writes resume by themselves once
// space is back.
func TestDiskFull(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, f := c.leader().store(), c.follower().store()
	lease, err := l.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	term := l.Term()

	var free atomic.Uint64
	free.Store(1 << 20) // 1 MiB, below the 64 MiB default
	fakeDisk(l, &free)
	for name, s := range map[string]*Store{"leader": l, "follower": f} {
		_, err := s.Put(ctx, "k", []byte("v2"))
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("%s: put on a full disk: %v", name, err)
		}
		if _, err := s.Grant(ctx, time.Minute); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("%s: grant on a full disk: %v", name, err)
		}
		r, err := s.Get(ctx, "k")
		if err != nil || string(r.KVs[0].Value) != "v1" {
			t.Fatalf("%s: read on a full disk: %+v %v", name, r, err)
		}
	}
	if err := f.Revoke(ctx, lease); err != nil {
		t.Fatalf("revoke on a full disk: %v", err)
	}
	// No election storm: a few election timeouts pass in the same term.
	pace(ctx, 5*clusterElection)
	if got := l.Term(); got != term {
		t.Fatalf("term moved from %d to %d while the disk was full", term, got)
	}

	free.Store(1 << 40)
	eventually(t, 5*time.Second, "writes resume once space is back", func() error {
		_, err := f.Put(ctx, "k", []byte("v3"))
		return err
	})
	if l.disk.full.Load() {
		t.Fatal("guard still reports a full disk")
	}
}

func TestDiskGuardOff(t *testing.T) {
	o := testOptions()
	o.MinFreeDiskBytes = -1
	s := openTestStore(t, "", o)
	var free atomic.Uint64 // 0 bytes free
	fakeDisk(s, &free)
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("guard off, put: %v", err)
	}
}
