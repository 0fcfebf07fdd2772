package raftlog_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// newestLog writes entries 1..120 over several small segments and closes
// the log, returning the segment names.
func newestLog(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 120, 1, 7)
	closeLog(t, l)
	names := walFiles(t, dir)
	if len(names) < 3 {
		t.Fatalf("want at least 3 segments, have %v", names)
	}
	return dir, names
}

// TestNewestSegmentMissing: losing the newest segment file loses entries
// that may have been acknowledged, and nothing else in the directory
// would show it. The newest record does.
func TestNewestSegmentMissing(t *testing.T) {
	dir, names := newestLog(t)
	last := filepath.Join(dir, names[len(names)-1])
	if err := os.Remove(last); err != nil {
		t.Fatal(err)
	}
	expectCorrupt(t, dir, last, -1)
}

// TestNewestAllSegmentsMissing: a directory emptied of its segments is not
// an empty log.
func TestNewestAllSegmentsMissing(t *testing.T) {
	dir, names := newestLog(t)
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	expectCorrupt(t, dir, filepath.Join(dir, names[len(names)-1]), -1)
}

// TestNewestRecordMissingOrDamaged: the record itself gone or damaged next
// to segments is refused.
func TestNewestRecordMissingOrDamaged(t *testing.T) {
	dir, _ := newestLog(t)
	path := filepath.Join(dir, "newest")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 1
	writeFile(t, path, b)
	expectCorrupt(t, dir, path, -1)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expectCorrupt(t, dir, path, -1)
}

// TestNewestOlderThanSegments: a crash after a segment was created but
// before the record moved on leaves a segment newer than recorded; that
// is fine.
func TestNewestOlderThanSegments(t *testing.T) {
	dir, names := newestLog(t)
	// The record as it was before the newest segment was created: copy
	// the log without its newest segment, take that record, and put it
	// back next to all the segments.
	old := t.TempDir()
	l := openLog(t, old, small)
	first := nameFirst(t, names[len(names)-1])
	store(t, l, 1, first-1, 1, 7)
	closeLog(t, l)
	if got := walFiles(t, old); len(got) != len(names)-1 {
		t.Fatalf("rebuilt log has segments %v, want %d", got, len(names)-1)
	}
	rec, err := os.ReadFile(filepath.Join(old, "newest"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "newest"), rec)
	l = openLog(t, dir, small)
	checkEntries(t, l, 1, 120, 1)
}

// TestNewestFollowsDeletes: removing the newest segment by a suffix
// delete, and every segment by a full delete, moves the record with it,
// so the log opens again.
func TestNewestFollowsDeletes(t *testing.T) {
	dir, names := newestLog(t)
	l := openLog(t, dir, small)
	first := nameFirst(t, names[len(names)-1])
	if err := l.DeleteRange(first, 120); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, dir, small)
	checkBounds(t, l, 1, first-1)
	if err := l.DeleteRange(1, first-1); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, dir, small)
	checkBounds(t, l, 0, 0)
	if got := walFiles(t, dir); len(got) != 0 {
		t.Fatalf("segments left after deleting everything: %v", got)
	}
	store(t, l, 100, 110, 2, 3)
	l = reopen(t, l, dir, small)
	checkEntries(t, l, 100, 110, 2)
}

// TestZeroValueDamageNotTorn: a value of zeros is masked on disk, so one
// flipped byte in its record (here its checksum) is damage, not a torn
// write, in the newest segment too: the record and those after it were
// synced, and may have been acknowledged.
func TestZeroValueDamageNotTorn(t *testing.T) {
	dir := t.TempDir()
	o := small
	o.SegmentSize = 64 << 10
	l := openLog(t, dir, o)
	store(t, l, 1, 3, 1, 3)
	zero := &raft.Log{Index: 4, Term: 1, Type: raft.LogCommand, Data: make([]byte, 2048)}
	if err := l.StoreLogs([]*raft.Log{zero}); err != nil {
		t.Fatal(err)
	}
	store(t, l, 5, 8, 1, 2)
	closeLog(t, l)
	names := walFiles(t, dir)
	path := filepath.Join(dir, names[len(names)-1])
	_, recs, data := parseSeg(t, path)
	var r rec
	for _, x := range recs {
		if x.index == 4 {
			r = x
		}
	}
	if r.end-r.off < 2048 {
		t.Fatalf("record of index 4 not found: %+v", recs)
	}
	for off := (r.off/512 + 1) * 512; off+512 <= r.end; off += 512 {
		if allZero(data[off : off+512]) {
			t.Fatalf("a sector of the masked zero value is all zeros on disk (offset %d)", off)
		}
	}
	patch(t, path, func(b []byte) { b[r.off+5] ^= 0x10 })
	expectCorrupt(t, dir, path, r.off)
}
