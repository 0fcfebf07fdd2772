package accord

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A raft append that fails for lack of space (the disk filled between two
// free-space checks) makes the guard refuse writes at once and free its
// reserve for raft's own entries; once there is room again the reserve is
// allocated again and writes resume, without an operator.
func TestDiskReserve(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reserve is preallocated with fallocate, on Linux only")
	}
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	ctx := t.Context()
	reserve := filepath.Join(dir, diskReserveName)
	fi, err := os.Stat(reserve)
	if err != nil || fi.Size() != diskReserveSize {
		t.Fatalf("reserve after Open: %v %v", fi, err)
	}
	if _, err := s.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}

	// What the raft log returns when a write cannot grow a segment.
	enospc := &os.PathError{Op: "write", Path: filepath.Join(dir, raftLogDir, "00000000000000000001.wal"), Err: syscall.ENOSPC}
	if err := s.stores.write(true, func() error { return enospc }); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write error %v, want the ENOSPC passed through", err)
	}
	if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve still there after ENOSPC: %v", err)
	}
	if _, err := s.Put(ctx, "k", []byte("v2")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put after ENOSPC: %v, want ErrNoSpace", err)
	}
	if g, err := s.Get(ctx, "k"); err != nil || string(g.KVs[0].Value) != "v1" {
		t.Fatalf("read after ENOSPC: %+v %v", g, err)
	}

	// The real disk has room: the guard's next check allocates the
	// reserve again and lets writes through.
	eventually(t, 5*time.Second, "writes resume", func() error {
		_, err := s.Put(ctx, "k", []byte("v3"))
		return err
	})
	if fi, err := os.Stat(reserve); err != nil || fi.Size() != diskReserveSize {
		t.Fatalf("reserve after recovery: %v %v", fi, err)
	}
}

// Without room for the reserve above MinFreeDiskBytes, writes stay
// refused after an ENOSPC even though the free space is above the limit.
func TestDiskReserveNeedsRoom(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reserve is preallocated with fallocate, on Linux only")
	}
	o := testOptions()
	o.MinFreeDiskBytes = 64 << 20
	s := openTestStore(t, "", o)
	var free atomic.Uint64
	free.Store(uint64(o.MinFreeDiskBytes + diskReserveSize/2))
	fakeDisk(s, &free)
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("put above the limit: %v", err)
	}
	s.disk.noSpace(syscall.ENOSPC)
	pace(t.Context(), diskRecheckInterval) // so that the Put below rechecks
	if _, err := s.Put(t.Context(), "k", []byte("v")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put with no room for the reserve: %v, want ErrNoSpace", err)
	}
	free.Store(1 << 40)
	eventually(t, 5*time.Second, "writes resume", func() error {
		_, err := s.Put(t.Context(), "k", []byte("v"))
		return err
	})
}

// A write whose append fails for lack of space on the leader was neither
// stored nor replicated: it fails with ErrNoSpace (not raft's flattened
// store error, which names the file), and writes come back by themselves
// once the disk has space again. (The injected failure hits raft's own
// appends too, so the number of elections is cmd/accordd's
// TestDiskFullSudden's business, on a real tmpfs.)
func TestDiskFullAppendFails(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reserve is preallocated with fallocate, on Linux only")
	}
	s := openTestStore(t, "", nil)
	ctx := t.Context()
	if _, err := s.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	var enospc error = &os.PathError{Op: "write", Path: filepath.Join(s.disk.dir, raftDBName), Err: syscall.ENOSPC}
	s.stores.failLogs.Store(&enospc)
	_, err := s.Put(ctx, "k", []byte("v2"))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put whose append failed: %v, want ErrNoSpace", err)
	}
	if strings.Contains(err.Error(), raftDBName) {
		t.Errorf("error names the file: %v", err)
	}
	s.stores.failLogs.Store(nil) // raft's own entries fit in the reserve
	eventually(t, 5*time.Second, "writes resume", func() error {
		_, err := s.Put(ctx, "k", []byte("v3"))
		return err
	})
	g, err := s.Get(ctx, "k")
	if err != nil || string(g.KVs[0].Value) != "v3" || g.KVs[0].Version != 2 {
		t.Fatalf("after recovery: %+v %v (the refused write must not be there)", g, err)
	}
}
