package raftlog_test

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/raftlog"
)

// The torn-batch rule: only the last batch of the newest segment is ever
// cut, all of it, and only when nothing of a later batch follows.

// encNewest is the newest file: first index of the newest segment, cut,
// flags (1: deleting), CRC-32C.
func encNewest(first, cut uint64, deleting bool) []byte {
	b := binary.BigEndian.AppendUint64(nil, first)
	b = binary.BigEndian.AppendUint64(b, cut)
	var flags uint32
	if deleting {
		flags = 1
	}
	b = binary.BigEndian.AppendUint32(b, flags)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// encNewestV1 is the newest file a version-1 log wrote: first index,
// CRC-32C.
func encNewestV1(first uint64) []byte {
	b := binary.BigEndian.AppendUint64(nil, first)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// wide is entry i with 1100 bytes of data: its record holds at least one
// whole 512-byte sector.
func wide(i, term uint64) *raft.Log {
	e := mkEntry(i, term)
	e.Data = fill(i, term, 1100)
	return e
}

func wideEntries(lo, hi, term uint64) []*raft.Log {
	var es []*raft.Log
	for i := lo; i <= hi; i++ {
		es = append(es, wide(i, term))
	}
	return es
}

// storeWide writes wide entries lo..hi in batches of batch.
func storeWide(t *testing.T, l *raftlog.Log, lo, hi, term uint64, batch int) {
	t.Helper()
	for i := lo; i <= hi; {
		j := min(hi, i+uint64(batch)-1)
		if err := l.StoreLogs(wideEntries(i, j, term)); err != nil {
			t.Fatalf("StoreLogs(%d..%d): %v", i, j, err)
		}
		i = j + 1
	}
}

var roomy = raftlog.Options{SegmentSize: 256 << 10, NoSync: true}

// recOf returns the record of index i among recs.
func recOf(t *testing.T, recs []rec, i uint64) rec {
	t.Helper()
	for _, r := range recs {
		if r.index == i {
			return r
		}
	}
	t.Fatalf("no record of entry %d", i)
	return rec{}
}

// innerSector is the first whole 512-byte sector inside r.
func innerSector(t *testing.T, r rec) int64 {
	t.Helper()
	s := roundUp(r.off+1, sector)
	if s+sector > r.end {
		t.Fatalf("record %d (%d..%d) holds no whole sector", r.index, r.off, r.end)
	}
	return s
}

// recAt returns the record of recs that holds offset off.
func recAt(t *testing.T, recs []rec, off int64) rec {
	t.Helper()
	for _, r := range recs {
		if r.off <= off && off < r.end {
			return r
		}
	}
	t.Fatalf("no record holds offset %d", off)
	return rec{}
}

// expectLaterBatch is expectCorrupt for damage refused because a later
// batch follows it.
func expectLaterBatch(t *testing.T, dir, path string, off int64) {
	t.Helper()
	ce := expectCorrupt(t, dir, path, off)
	if !strings.Contains(ce.Reason, "later batch") {
		t.Errorf("reason %q does not say a later batch follows", ce.Reason)
	}
}

// TestTornRuleHundredBatches is the case that lost acknowledged writes
// under the rule before batches were marked: 100 single-entry batches, the
// sector holding the start of entry 50's record zeroed. Open used to cut
// the log there (LastIndex 48); entries 51..100 were synced after 50 was,
// so it is damage.
func TestTornRuleHundredBatches(t *testing.T) {
	for _, how := range []string{"sector", "record"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, roomy)
			store(t, l, 1, 100, 1, 1)
			closeLog(t, l)
			path := filepath.Join(dir, segName(1))
			_, recs, _ := parseSeg(t, path)
			r := recOf(t, recs, 50)
			var damaged rec
			if how == "sector" {
				s := r.off / sector * sector
				patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
				damaged = recAt(t, recs, s)
			} else {
				// The whole record zeroed: the records seem to end there.
				patch(t, path, func(b []byte) { clear(b[r.off:r.end]) })
				damaged = r
			}
			expectLaterBatch(t, dir, path, damaged.off)
		})
	}
}

// TestDamageInMiddleBatch: damage of every kind a crash could also leave,
// in a batch that later batches follow, is refused.
func TestDamageInMiddleBatch(t *testing.T) {
	cases := []struct {
		name   string
		damage func(b []byte, recs []rec) int64 // returns the damaged record's offset
	}{
		{"zero sector in first record", func(b []byte, recs []rec) int64 {
			r := recOf(t, recs, 16)
			s := innerSector(t, r)
			clear(b[s : s+sector])
			return r.off
		}},
		{"zero sector in middle record", func(b []byte, recs []rec) int64 {
			r := recOf(t, recs, 18)
			s := innerSector(t, r)
			clear(b[s : s+sector])
			return r.off
		}},
		{"zero sector in last record", func(b []byte, recs []rec) int64 {
			r := recOf(t, recs, 20)
			s := innerSector(t, r)
			clear(b[s : s+sector])
			return r.off
		}},
		{"cut short", func(b []byte, recs []rec) int64 {
			// From inside 18 to the end of the batch: as if the rest of
			// the batch never reached the disk.
			r := recOf(t, recs, 18)
			clear(b[innerSector(t, r):recOf(t, recs, 20).end])
			return r.off
		}},
		{"last record missing", func(b []byte, recs []rec) int64 {
			r := recOf(t, recs, 20)
			clear(b[r.off:r.end])
			return r.off
		}},
		{"bad checksum", func(b []byte, recs []rec) int64 {
			r := recOf(t, recs, 17)
			b[r.off+5] ^= 1
			return r.off
		}},
		{"later batch torn too", func(b []byte, recs []rec) int64 {
			// The last batch (36..40) is torn as a crash leaves it, but
			// 36 and 37 of it are whole: they were written after 16..20
			// was synced.
			r := recOf(t, recs, 18)
			s := innerSector(t, r)
			clear(b[s : s+sector])
			clear(b[innerSector(t, recOf(t, recs, 38)):])
			return r.off
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, roomy)
			storeWide(t, l, 1, 40, 1, 5)
			closeLog(t, l)
			path := filepath.Join(dir, segName(1))
			_, recs, _ := parseSeg(t, path)
			var off int64
			patch(t, path, func(b []byte) { off = c.damage(b, recs) })
			if c.name == "bad checksum" {
				expectCorrupt(t, dir, path, off)
				return
			}
			expectLaterBatch(t, dir, path, off)
		})
	}
}

// TestTornLastBatch: every way a crash can tear the last batch (six
// records, after 1..20) cuts all of it, and nothing before it.
func TestTornLastBatch(t *testing.T) {
	cases := []struct {
		name string
		tear func(b []byte, batch []rec)
	}{
		{"cut short inside a record", func(b []byte, batch []rec) {
			clear(b[innerSector(t, batch[2]):])
		}},
		{"cut short at a record boundary", func(b []byte, batch []rec) {
			clear(b[batch[3].off:])
		}},
		{"only the last record missing", func(b []byte, batch []rec) {
			clear(b[batch[5].off:])
		}},
		{"zero sector in first record", func(b []byte, batch []rec) {
			s := innerSector(t, batch[0])
			clear(b[s : s+sector])
		}},
		{"zero sector in middle record", func(b []byte, batch []rec) {
			s := innerSector(t, batch[2])
			clear(b[s : s+sector])
		}},
		{"zero sector in last record", func(b []byte, batch []rec) {
			s := innerSector(t, batch[5])
			clear(b[s : s+sector])
		}},
		{"first sector missing", func(b []byte, batch []rec) {
			clear(b[batch[0].off:roundUp(batch[0].off+1, sector)])
		}},
		{"sectors missing here and there", func(b []byte, batch []rec) {
			for _, r := range []rec{batch[1], batch[4]} {
				s := innerSector(t, r)
				clear(b[s : s+sector])
			}
		}},
	}
	want := func(i uint64) *raft.Log {
		if i > 20 {
			return wide(i, 1)
		}
		return mkEntry(i, 1)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, roomy)
			store(t, l, 1, 20, 1, 4)
			if err := l.StoreLogs(wideEntries(21, 26, 1)); err != nil {
				t.Fatal(err)
			}
			closeLog(t, l)
			path := filepath.Join(dir, segName(1))
			_, recs, _ := parseSeg(t, path)
			batch := recs[20:]
			if len(batch) != 6 || batch[0].index != 21 || batch[0].batch != 0 || batch[5].batch != batchEnd|5 {
				t.Fatalf("last batch %+v", batch)
			}
			patch(t, path, func(b []byte) { c.tear(b, batch) })
			expectTorn(t, dir, path, batch[0].off, 20, roomy, want)
		})
	}
}

// TestTornBatchInSegmentOfItsOwn: a batch that does not fit in the rest of
// the newest segment goes whole into a new one (a batch never straddles
// two segments); torn, that segment goes, and the one before is the newest
// again with all its entries.
func TestTornBatchInSegmentOfItsOwn(t *testing.T) {
	for _, which := range []int{0, 2, 3} {
		t.Run(fmt.Sprint("record ", which), func(t *testing.T) {
			dir := t.TempDir()
			o := raftlog.Options{SegmentSize: 8192, NoSync: true}
			l := openLog(t, dir, o)
			store(t, l, 1, 40, 1, 10)
			if err := l.StoreLogs(wideEntries(41, 44, 1)); err != nil {
				t.Fatal(err)
			}
			closeLog(t, l)
			names := walFiles(t, dir)
			if names[len(names)-1] != segName(41) {
				t.Fatalf("segments %v: the batch did not start a segment", names)
			}
			path := filepath.Join(dir, segName(41))
			_, recs, _ := parseSeg(t, path)
			if len(recs) != 4 {
				t.Fatalf("segment 41 holds %d records", len(recs))
			}
			s := innerSector(t, recs[which])
			patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
			expectTorn(t, dir, path, recs[0].off, 40, o, func(i uint64) *raft.Log { return mkEntry(i, 1) })
		})
	}
}

// TestOldVersionSegments: a log written with segment format 1 (no batch
// field, a 12-byte newest file) opens, its entries read back, and new
// batches go to a new segment of the current format.
func TestOldVersionSegments(t *testing.T) {
	// v1Log writes segments of format 1 for entries 1..10 and 11..20.
	v1Log := func(t *testing.T) (dir string, paths []string) {
		dir = t.TempDir()
		for _, lo := range []uint64{1, 11} {
			seg := encHeaderV(1, lo, 16384)
			for i := lo; i < lo+10; i++ {
				seg = append(seg, encRecord(encPayloadV1(wide(i, 1)))...)
			}
			seg = append(seg, make([]byte, 16384-len(seg))...)
			path := filepath.Join(dir, segName(lo))
			writeFile(t, path, seg)
			paths = append(paths, path)
		}
		writeFile(t, filepath.Join(dir, "newest"), encNewestV1(11))
		return dir, paths
	}
	wideRange := func(t *testing.T, l *raftlog.Log, lo, hi, term uint64) {
		t.Helper()
		for i := lo; i <= hi; i++ {
			checkGet(t, l, wide(i, term))
		}
	}

	t.Run("ReadAndAppend", func(t *testing.T) {
		dir, paths := v1Log(t)
		old, err := os.ReadFile(paths[1])
		if err != nil {
			t.Fatal(err)
		}
		l := openLog(t, dir, small)
		if r := l.Repaired(); r != nil {
			t.Fatalf("Repaired() = %+v", *r)
		}
		checkBounds(t, l, 1, 20)
		wideRange(t, l, 1, 20, 1)
		store(t, l, 21, 25, 2, 5)
		l = reopen(t, l, dir, small)
		checkBounds(t, l, 1, 25)
		wideRange(t, l, 1, 20, 1)
		checkRange(t, l, 21, 25, 2)
		if now, err := os.ReadFile(paths[1]); err != nil || string(now) != string(old) {
			t.Fatalf("the version-1 segment changed (%v)", err)
		}
		b, err := os.ReadFile(filepath.Join(dir, segName(21)))
		if err != nil {
			t.Fatalf("no new segment for 21: %v", err)
		}
		if v := binary.BigEndian.Uint32(b[8:]); v != 2 {
			t.Fatalf("new segment has format version %d", v)
		}
		// A suffix delete inside the version-1 segment cuts it in place;
		// what follows goes to a new segment.
		if err := l.DeleteRange(15, 25); err != nil {
			t.Fatal(err)
		}
		l = reopen(t, l, dir, small)
		checkBounds(t, l, 1, 14)
		wideRange(t, l, 1, 14, 1)
		store(t, l, 15, 16, 3, 2)
		l = reopen(t, l, dir, small)
		checkBounds(t, l, 1, 16)
		wideRange(t, l, 1, 14, 1)
		checkRange(t, l, 15, 16, 3)
		closeLog(t, l)
		checkFiles(t, dir)
	})

	t.Run("OldRuleForTornRecord", func(t *testing.T) {
		// Version 1 has no batches: a torn record of the newest segment
		// and everything after it go, valid records after it or not (the
		// rule that version wrote the segment under).
		dir, paths := v1Log(t)
		_, recs, _ := parseSeg(t, paths[1])
		r := recOf(t, recs, 15)
		s := innerSector(t, r)
		patch(t, paths[1], func(b []byte) { clear(b[s : s+sector]) })
		l := openLog(t, dir, small)
		rp := l.Repaired()
		if rp == nil || rp.Path != paths[1] || rp.Offset != r.off {
			t.Fatalf("Repaired() = %+v, want %s from %d", rp, paths[1], r.off)
		}
		checkBounds(t, l, 1, 14)
		wideRange(t, l, 1, 14, 1)
		store(t, l, 15, 16, 2, 2)
		l = reopen(t, l, dir, small)
		checkBounds(t, l, 1, 16)
	})

	t.Run("DamageRefused", func(t *testing.T) {
		dir, paths := v1Log(t)
		_, recs, _ := parseSeg(t, paths[1])
		r := recOf(t, recs, 15)
		patch(t, paths[1], func(b []byte) { b[r.off+recHdrSize+40] ^= 1 })
		expectCorrupt(t, dir, paths[1], r.off)

		dir, paths = v1Log(t)
		_, recs, _ = parseSeg(t, paths[0])
		r = recOf(t, recs, 5)
		s := innerSector(t, r)
		patch(t, paths[0], func(b []byte) { clear(b[s : s+sector]) })
		expectCorrupt(t, dir, paths[0], r.off)
	})
}

// TestSuffixDeleteInterrupted: a suffix delete zeroes in place under the
// deleting flag of the newest file. What a crash leaves halfway (zeroed
// sectors between deleted records, which would read as damage followed by
// later batches) is finished by Open.
func TestSuffixDeleteInterrupted(t *testing.T) {
	setup := func(t *testing.T) (string, string, []rec) {
		dir := t.TempDir()
		l := openLog(t, dir, roomy)
		storeWide(t, l, 1, 30, 1, 5)
		closeLog(t, l)
		path := filepath.Join(dir, segName(1))
		_, recs, _ := parseSeg(t, path)
		return dir, path, recs
	}
	zeroIn := func(t *testing.T, path string, r rec) {
		s := innerSector(t, r)
		patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
	}
	newest := func(dir string) string { return filepath.Join(dir, "newest") }

	for _, halfway := range []bool{false, true} {
		t.Run(fmt.Sprint("zeroed halfway=", halfway), func(t *testing.T) {
			// A delete of 13..30 (from inside the batch 11..15) had set
			// the flag, and zeroed some sectors, or none yet.
			dir, path, recs := setup(t)
			writeFile(t, newest(dir), encNewest(1, 12, true))
			if halfway {
				zeroIn(t, path, recOf(t, recs, 20))
				zeroIn(t, path, recOf(t, recs, 13))
			}
			l := openLog(t, dir, roomy)
			r := l.Repaired()
			if r == nil || !r.Deleted || r.Path != path || r.Offset != recOf(t, recs, 13).off {
				t.Fatalf("Repaired() = %+v, want the deleted entries from %d", r, recOf(t, recs, 13).off)
			}
			checkBounds(t, l, 1, 12)
			for i := uint64(1); i <= 12; i++ {
				checkGet(t, l, wide(i, 1))
			}
			b, err := os.ReadFile(newest(dir))
			if err != nil || string(b) != string(encNewest(1, 12, false)) {
				t.Fatalf("newest file after Open: % x (%v)", b, err)
			}
			store(t, l, 13, 17, 2, 5)
			l = reopen(t, l, dir, roomy)
			checkBounds(t, l, 1, 17)
			checkRange(t, l, 13, 17, 2)
			closeLog(t, l)
			checkFiles(t, dir)
		})
	}

	t.Run("without the flag it is damage", func(t *testing.T) {
		dir, path, recs := setup(t)
		zeroIn(t, path, recOf(t, recs, 20))
		expectLaterBatch(t, dir, path, recOf(t, recs, 20).off)
	})

	t.Run("damage before the cut", func(t *testing.T) {
		// The entries up to the cut were synced: damage among them is
		// damage, flag or not.
		dir, path, recs := setup(t)
		writeFile(t, newest(dir), encNewest(1, 12, true))
		zeroIn(t, path, recOf(t, recs, 12))
		expectCorrupt(t, dir, path, recOf(t, recs, 12).off)
	})

	t.Run("cut past the last entry", func(t *testing.T) {
		dir, path, recs := setup(t)
		writeFile(t, newest(dir), encNewest(1, 31, false))
		expectCorrupt(t, dir, path, recs[len(recs)-1].end)
	})

	t.Run("newer segment than the delete", func(t *testing.T) {
		dir, _, _ := setup(t)
		writeFile(t, newest(dir), encNewest(1, 12, true))
		writeFile(t, filepath.Join(dir, segName(31)), emptySeg(31, 4096))
		expectCorrupt(t, dir, newest(dir), -1)
	})

	t.Run("unknown flag", func(t *testing.T) {
		dir, _, _ := setup(t)
		b := encNewest(1, 12, true)
		binary.BigEndian.PutUint32(b[16:], 3)
		binary.BigEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
		writeFile(t, newest(dir), b)
		expectCorrupt(t, dir, newest(dir), -1)
	})
}

// TestSuffixDeleteMidBatch: a suffix delete that ends a batch before its
// last entry keeps what it kept: the newest record's cut ends the batch
// there, a later batch ends it by starting, and removing the segments
// after it does too. Only the real last batch is ever cut.
func TestSuffixDeleteMidBatch(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, roomy)
	storeWide(t, l, 1, 30, 1, 5)
	if err := l.DeleteRange(13, 30); err != nil { // inside 11..15
		t.Fatal(err)
	}
	l = reopen(t, l, dir, roomy)
	checkBounds(t, l, 1, 12)
	if err := l.StoreLogs(wideEntries(13, 17, 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(16, 17); err != nil { // inside 13..17
		t.Fatal(err)
	}
	l = reopen(t, l, dir, roomy)
	checkBounds(t, l, 1, 15)
	if err := l.StoreLogs(wideEntries(16, 20, 3)); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, dir, roomy)
	checkBounds(t, l, 1, 20)
	want := func(i uint64) *raft.Log {
		switch {
		case i <= 12:
			return wide(i, 1)
		case i <= 15:
			return wide(i, 2)
		}
		return wide(i, 3)
	}
	for i := uint64(1); i <= 20; i++ {
		checkGet(t, l, want(i))
	}
	closeLog(t, l)

	// The last batch (16..20) torn: it goes, 13..15 (cut short by the
	// second delete) and 11..12 (by the first) stay.
	path := filepath.Join(dir, segName(1))
	_, recs, _ := parseSeg(t, path)
	r := recOf(t, recs, 18)
	s := innerSector(t, r)
	patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
	l = openLog(t, dir, roomy)
	rp := l.Repaired()
	if rp == nil || rp.Offset != recOf(t, recs, 16).off || rp.Entries != 2 {
		t.Fatalf("Repaired() = %+v, want from %d with 2 whole entries ahead of the tear", rp, recOf(t, recs, 16).off)
	}
	checkBounds(t, l, 1, 15)
	for i := uint64(1); i <= 15; i++ {
		checkGet(t, l, want(i))
	}

	// A segment sealed after a delete cut its last batch short, then the
	// segment after it removed: the sealed one is the newest again, and
	// its last batch is whole.
	if err := l.DeleteRange(14, 15); err != nil {
		t.Fatal(err)
	}
	big := wideEntries(14, 300, 4) // does not fit in the rest of the segment
	if err := l.StoreLogs(big); err != nil {
		t.Fatal(err)
	}
	if names := walFiles(t, dir); len(names) != 2 || names[1] != segName(14) {
		t.Fatalf("segments %v", names)
	}
	l = reopen(t, l, dir, roomy)
	checkBounds(t, l, 1, 300)
	if err := l.DeleteRange(14, 300); err != nil {
		t.Fatal(err)
	}
	if names := walFiles(t, dir); len(names) != 1 {
		t.Fatalf("segments %v", names)
	}
	l = reopen(t, l, dir, roomy)
	checkBounds(t, l, 1, 13)
	for i := uint64(1); i <= 13; i++ {
		checkGet(t, l, want(i))
	}
	closeLog(t, l)
	checkFiles(t, dir)
}
