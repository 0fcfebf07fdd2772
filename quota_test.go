package accord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestQuota fills a store past a small quota: the NOSPACE alarm is raised
// through the log, writes that add data fail with ErrSpaceExceeded while
// reads, deletes and Compact work, the alarm survives a restart, and
// Compact + Defragment + DisarmAlarm bring writes back, with every
// acknowledged write still there.
func TestQuota(t *testing.T) {
	dir := t.TempDir()
	o := persistOpts()
	o.UnsafeNoFsync = true
	o.QuotaBytes = 512 << 10
	s := openTestStore(t, dir, o)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	val := bytes.Repeat([]byte("q"), 4096)
	acked := map[string]bool{}
	var full error
	for i := 0; i < 2000; i++ {
		k := fmt.Sprintf("q/%04d", i%64) // 64 keys, many versions: history fills the file
		if _, err := s.Put(ctx, k, val); err != nil {
			full = err
			break
		}
		acked[k] = true
	}
	if !errors.Is(full, ErrSpaceExceeded) {
		st, _ := s.Status(ctx)
		t.Fatalf("writing past the quota: %v, want ErrSpaceExceeded (status %+v)", full, st)
	}
	alarms, err := s.Alarms(ctx)
	if err != nil || len(alarms) != 1 || alarms[0] != (Alarm{NodeID: s.NodeID(), Type: AlarmNoSpace}) {
		t.Fatalf("alarms %+v (%v), want NOSPACE of %s", alarms, err, s.NodeID())
	}
	st, err := s.Status(ctx)
	if err != nil || st.QuotaBytes != o.QuotaBytes || len(st.Alarms) != 1 {
		t.Fatalf("status %+v (%v)", st, err)
	}
	eventually(t, 10*time.Second, "kv.db near the quota", func() error {
		if st, _ := s.Status(ctx); st.DBSize < o.QuotaBytes*8/10 {
			return fmt.Errorf("kv.db %d bytes, quota %d", st.DBSize, o.QuotaBytes)
		}
		return nil
	})
	if _, err := s.Grant(ctx, time.Minute); !errors.Is(err, ErrSpaceExceeded) {
		t.Fatalf("grant under NOSPACE: %v", err)
	}
	if _, err := s.Txn(ctx).Then(OpPut("q/txn", []byte("x"))).Commit(); !errors.Is(err, ErrSpaceExceeded) {
		t.Fatalf("txn with a put under NOSPACE: %v", err)
	}
	if _, err := s.Get(ctx, "q/", WithPrefix(), WithCountOnly()); err != nil {
		t.Fatalf("read under NOSPACE: %v", err)
	}
	if _, err := s.Delete(ctx, "q/0000"); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	delete(acked, "q/0000")

	// The alarm is replicated state: it is there after a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, o)
	if _, err := s.Put(ctx, "q/after-restart", val); !errors.Is(err, ErrSpaceExceeded) {
		t.Fatalf("put after restart under NOSPACE: %v", err)
	}

	// Compaction frees pages; defragmentation gives them back.
	st0, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, s.Revision()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the compaction reaches kv.db", func() error {
		st, err := s.Status(ctx)
		if err != nil {
			return err
		}
		if st.DBSizeInUse > st0.DBSizeInUse*3/4 {
			return fmt.Errorf("in use %d of %d (before the compaction %d)", st.DBSizeInUse, st.DBSize, st0.DBSizeInUse)
		}
		return nil
	})
	before, _ := s.ks.Sizes()
	if err := s.Defragment(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := s.ks.Sizes()
	// (The file itself may run ahead of its used size: bbolt grows it in
	// steps of up to 16 MiB.)
	if after > before*3/4 {
		t.Fatalf("defragment: %d -> %d bytes", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, kvDBName+kvDBDefragSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kv.db.defrag left behind: %v", err)
	}
	if err := s.DisarmAlarm(ctx, Alarm{NodeID: s.NodeID(), Type: AlarmNoSpace}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "q/back", []byte("x")); err != nil {
		t.Fatalf("put after disarm: %v", err)
	}
	for k := range acked {
		r, err := s.Get(ctx, k)
		if err != nil || len(r.KVs) != 1 || !bytes.Equal(r.KVs[0].Value, val) {
			t.Fatalf("acknowledged %s after defragment: %+v %v", k, r, err)
		}
	}
}

// TestQuotaBelowSizeAtOpen: a quota lowered below the file's size across a
// restart raises the alarm at once; a bad quota is refused.
func TestQuotaBelowSizeAtOpen(t *testing.T) {
	dir := t.TempDir()
	o := persistOpts()
	o.UnsafeNoFsync = true
	s := openTestStore(t, dir, o)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := s.Put(ctx, fmt.Sprint("k", i), bytes.Repeat([]byte("v"), 2048)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.QuotaBytes = 16 << 10
	s = openTestStore(t, dir, o)
	eventually(t, 10*time.Second, "the NOSPACE alarm", func() error {
		if a, err := s.Alarms(ctx); err != nil || len(a) != 1 || a[0].Type != AlarmNoSpace {
			return fmt.Errorf("alarms %+v, %v", a, err)
		}
		return nil
	})
	if _, err := s.Put(ctx, "more", []byte("x")); !errors.Is(err, ErrSpaceExceeded) {
		t.Fatalf("put: %v", err)
	}
	s.Close()
	for _, q := range []int64{-1, 2 << 40} {
		bad := *o
		bad.QuotaBytes = q
		if _, err := Open(t.TempDir(), &bad); err == nil || !bytes.Contains([]byte(err.Error()), []byte("QuotaBytes")) {
			t.Errorf("QuotaBytes %d: Open = %v, want a QuotaBytes error", q, err)
		}
	}
}

// TestQuotaBelowAlarmVersion: in a cluster still at 0.2.0 (a rolling
// upgrade), which cannot apply alarm commands, a write past the quota is
// refused on the member it reached but no alarm enters the log, and the
// alarm calls say why they fail.
func TestQuotaBelowAlarmVersion(t *testing.T) {
	o := persistOpts()
	o.UnsafeNoFsync = true
	o.QuotaBytes = 256 << 10
	o.Version = "0.2.0"
	s := openTestStore(t, t.TempDir(), o)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	val := bytes.Repeat([]byte("v"), 4096)
	var full error
	for i := 0; i < 1000 && full == nil; i++ {
		_, full = s.Put(ctx, fmt.Sprintf("v/%03d", i%32), val)
	}
	if !errors.Is(full, ErrSpaceExceeded) {
		t.Fatalf("writing past the quota: %v, want ErrSpaceExceeded", full)
	}
	if alarms, err := s.Alarms(ctx); err != nil || len(alarms) != 0 {
		t.Fatalf("alarms %+v (%v) in a 0.2.0 cluster, want none", alarms, err)
	}
	if err := s.ActivateAlarm(ctx, Alarm{NodeID: s.NodeID(), Type: AlarmNoSpace}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ActivateAlarm in a 0.2.0 cluster: %v, want ErrUnsupported", err)
	}
	if err := s.DisarmAlarm(ctx, Alarm{NodeID: s.NodeID(), Type: AlarmNoSpace}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DisarmAlarm in a 0.2.0 cluster: %v, want ErrUnsupported", err)
	}
	if _, err := s.Get(ctx, "v/000"); err != nil {
		t.Fatal(err)
	}
}
