package raftlog_test

import (
	"testing"
	"time"

	"github.com/accordkv/accord/internal/raftlog"
)

// TestOnSync: OnSync sees every fdatasync of the append path, and only
// those: one per batch, however many entries it holds (the batch is one
// write and one fdatasync), plus one for each new segment. A suffix delete
// and NoSync call it not at all.
func TestOnSync(t *testing.T) {
	var syncs []time.Duration
	o := raftlog.Options{SegmentSize: 4096, OnSync: func(d time.Duration) { syncs = append(syncs, d) }}
	dir := t.TempDir()
	l := openLog(t, dir, o)
	step := func(what string, want int, f func()) {
		t.Helper()
		syncs = syncs[:0]
		f()
		if len(syncs) != want {
			t.Fatalf("%s: OnSync called %d times, want %d", what, len(syncs), want)
		}
		for _, d := range syncs {
			if d < 0 {
				t.Fatalf("%s: OnSync(%v)", what, d)
			}
		}
	}
	step("first batch (new segment)", 2, func() { store(t, l, 1, 10, 1, 10) })
	step("batch of one", 1, func() { store(t, l, 11, 11, 1, 1) })
	step("batch of ten", 1, func() { store(t, l, 12, 21, 1, 10) })
	step("three batches", 3, func() { store(t, l, 22, 24, 1, 1) })
	names := walFiles(t, dir)
	step("batch that needs a new segment", 2, func() { store(t, l, 25, 60, 1, 36) })
	if now := walFiles(t, dir); len(now) != len(names)+1 {
		t.Fatalf("segments %v, then %v: the batch did not start a new one", names, now)
	}
	step("suffix delete", 0, func() {
		if err := l.DeleteRange(50, 60); err != nil {
			t.Fatal(err)
		}
	})
	step("batch after the delete", 1, func() { store(t, l, 50, 51, 2, 2) })
	l = reopen(t, l, dir, o)
	checkBounds(t, l, 1, 51)
	checkRange(t, l, 1, 49, 1)
	checkRange(t, l, 50, 51, 2)
	closeLog(t, l)

	o.NoSync = true
	l = openLog(t, t.TempDir(), o)
	step("NoSync", 0, func() { store(t, l, 1, 20, 1, 5) })
}
