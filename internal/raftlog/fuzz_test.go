package raftlog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/raftlog"
)

// Modes of FuzzOpen: how the input becomes a segment file.
const (
	// fuzzRaw: the input is the whole file.
	fuzzRaw = iota
	// fuzzBody: a good header for the file's size, then the input (the
	// records) and zeros up to a multiple of 512 bytes, at least 4 KiB.
	fuzzBody
	// fuzzRecords: a good header, then records built from the input with
	// correct lengths and checksums, so that the payloads' contents (index,
	// extensions length...) are what gets fuzzed. The input is a sequence
	// of u16 n and n bytes; a payload when n < 0x8000, raw bytes (n&0x7fff
	// of them, say a torn record) otherwise. Its first byte is the gap
	// between the previous segment and this one (mod 4).
	fuzzRecords
	fuzzModes
)

// fuzzPrevLast is the last entry of the good segment that withPrev puts
// before the fuzzed one.
const fuzzPrevLast = 3

// fuzzSegment builds the fuzzed segment file and the index in its name.
func fuzzSegment(mode uint8, withPrev bool, data []byte) (uint64, []byte) {
	base := uint64(1)
	if withPrev {
		base = fuzzPrevLast + 1
	}
	switch mode % fuzzModes {
	case fuzzRaw:
		// Named as its header says, when it says something plausible.
		if len(data) >= 24 {
			if v := binary.BigEndian.Uint64(data[16:]); v > 0 && v < 1<<40 {
				return v, data
			}
		}
		return base, data
	case fuzzBody:
		size := max(4096, roundUp(int64(hdrSize+len(data)), sector))
		seg := append(encHeader(base, size), data...)
		return base, append(seg, make([]byte, size-int64(len(seg)))...)
	default:
		first := base
		if len(data) > 0 {
			first += uint64(data[0] % 4)
			data = data[1:]
		}
		var body []byte
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			raw := n&0x8000 != 0
			n = min(n&0x7fff, len(data))
			if raw {
				body = append(body, data[:n]...)
			} else {
				body = append(body, encRecord(data[:n])...)
			}
			data = data[n:]
		}
		size := max(4096, roundUp(int64(hdrSize+len(body)+1), sector))
		seg := append(encHeader(first, size), body...)
		return first, append(seg, make([]byte, size-int64(len(seg)))...)
	}
}

// fuzzRecordsInput encodes payloads for fuzzRecords.
func fuzzRecordsInput(gap byte, payloads ...[]byte) []byte {
	b := []byte{gap}
	for _, p := range payloads {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// goodSegment returns the file the package writes for entries lo..hi in a
// 4 KiB segment.
func goodSegment(tb testing.TB, lo, hi uint64) []byte {
	tb.Helper()
	dir := tb.TempDir()
	l, err := raftlog.Open(dir, small)
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.StoreLogs(mkEntries(lo, hi, 1)); err != nil {
		tb.Fatal(err)
	}
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, segName(lo)))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzOpen writes the input as a segment file, possibly after a good
// segment, with a newest file naming it, and opens the directory. Open must not panic; when it refuses,
// it must have left the files alone; when it accepts, every entry from
// FirstIndex to LastIndex must be readable (outside the gap between the
// two segments), and the log must take a new entry and open again with
// nothing left to repair.
func FuzzOpen(f *testing.F) {
	prev := goodSegment(f, 1, fuzzPrevLast)
	alone := goodSegment(f, 1, 8)
	after := goodSegment(f, fuzzPrevLast+1, 10)
	_, recs := splitRecords(alone)

	f.Add(uint8(fuzzRaw), false, alone)
	f.Add(uint8(fuzzRaw), true, after)
	f.Add(uint8(fuzzRaw), false, []byte{})
	f.Add(uint8(fuzzRaw), false, alone[:hdrSize+3])
	torn := bytes.Clone(alone)
	clear(torn[recs[len(recs)-1].off+20:])
	f.Add(uint8(fuzzRaw), false, torn)
	flipped := bytes.Clone(after)
	flipped[hdrSize+30] ^= 1
	f.Add(uint8(fuzzRaw), true, flipped)
	body := alone[hdrSize:recs[len(recs)-1].end]
	f.Add(uint8(fuzzBody), false, bytes.Clone(body))
	f.Add(uint8(fuzzBody), true, after[hdrSize:512])
	f.Add(uint8(fuzzBody), false, append(bytes.Clone(body), 0, 0, 0, 0, 0, 0, 0, 0, 1))

	var ps [][]byte
	for i := uint64(fuzzPrevLast + 1); i <= fuzzPrevLast+4; i++ {
		ps = append(ps, encPayload(mkEntry(i, 2)))
	}
	f.Add(uint8(fuzzRecords), true, fuzzRecordsInput(0, ps...))
	f.Add(uint8(fuzzRecords), true, fuzzRecordsInput(2, encPayload(mkEntry(fuzzPrevLast+3, 2))))
	f.Add(uint8(fuzzRecords), false, fuzzRecordsInput(0, encPayload(&raft.Log{Index: 1, Term: 1, Extensions: []byte("e"), Data: []byte("d")})))
	// A payload whose extensions length runs past its end.
	bad := encPayload(&raft.Log{Index: 2, Term: 1, Extensions: []byte("e"), Data: []byte("d")})
	binary.BigEndian.PutUint32(bad[25:], 3)
	f.Add(uint8(fuzzRecords), false, fuzzRecordsInput(0, encPayload(mkEntry(1, 1)), bad))
	// A torn record (raw bytes) after a good one.
	tornRaw := encRecord(encPayload(mkEntry(2, 1)))[:30]
	in := fuzzRecordsInput(0, encPayload(mkEntry(1, 1)))
	in = binary.BigEndian.AppendUint16(in, 0x8000|uint16(len(tornRaw)))
	f.Add(uint8(fuzzRecords), false, append(in, tornRaw...))

	// Batches of several records: a whole one, then one whose middle
	// record is torn (raw bytes: a record with 600 zeros inside, so a
	// whole sector), and maybe a record of the same batch or a later one
	// after that.
	batch := func(lo, hi uint64) [][]byte {
		var ps [][]byte
		for i := lo; i <= hi; i++ {
			e := mkEntry(i, 2)
			e.Data = fill(i, 2, 1200)
			ps = append(ps, encPayloadAt(e, uint32(i-lo), i == hi))
		}
		return ps
	}
	next := uint64(fuzzPrevLast + 1)
	f.Add(uint8(fuzzRecords), true, fuzzRecordsInput(0, append(batch(next, next+2), batch(next+3, next+4)[0])...))
	torn3 := encRecord(batch(next+3, next+5)[1])
	clear(torn3[100:1200])
	in = fuzzRecordsInput(0, append(batch(next, next+2), batch(next+3, next+5)[0])...)
	in = binary.BigEndian.AppendUint16(in, 0x8000|uint16(len(torn3)))
	in = append(in, torn3...)
	f.Add(uint8(fuzzRecords), true, in)
	f.Add(uint8(fuzzRecords), true, append(bytes.Clone(in), fuzzRecordsInput(0, batch(next+3, next+5)[2])[1:]...))
	f.Add(uint8(fuzzRecords), true, append(bytes.Clone(in), fuzzRecordsInput(0, batch(next+6, next+6)...)[1:]...))
	// A segment of format version 1, whole and torn.
	v1 := encHeaderV(1, 1, 4096)
	for i := uint64(1); i <= 3; i++ {
		e := mkEntry(i, 1)
		e.Data = fill(i, 1, 1200)
		v1 = append(v1, encRecord(encPayloadV1(e))...)
	}
	v1 = append(v1, make([]byte, 4096-len(v1))...)
	f.Add(uint8(fuzzRaw), false, v1)
	v1torn := bytes.Clone(v1)
	clear(v1torn[1300:2400]) // a whole sector of the second record
	f.Add(uint8(fuzzRaw), false, v1torn)

	f.Fuzz(func(t *testing.T, mode uint8, withPrev bool, data []byte) {
		dir := t.TempDir()
		if withPrev {
			writeFile(t, filepath.Join(dir, segName(1)), prev)
		}
		first, seg := fuzzSegment(mode, withPrev, data)
		writeFile(t, filepath.Join(dir, segName(first)), seg)
		writeFile(t, filepath.Join(dir, "newest"), encNewest(first, 0, false))
		before := dirState(t, dir)

		l, err := raftlog.Open(dir, small)
		if err != nil {
			if after := dirState(t, dir); !sameState(before, after) {
				t.Fatalf("Open refused (%v) but changed the directory", err)
			}
			return
		}
		defer l.Close()
		lo, err1 := l.FirstIndex()
		hi, err2 := l.LastIndex()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if (lo == 0) != (hi == 0) || lo > hi {
			t.Fatalf("FirstIndex %d, LastIndex %d", lo, hi)
		}
		if hi > 0 {
			inGap := func(i uint64) bool { return withPrev && i > fuzzPrevLast && i < first }
			for _, i := range []uint64{lo, hi} {
				var e raft.Log
				if err := l.GetLog(i, &e); err != nil || e.Index != i {
					t.Fatalf("GetLog(%d) of %d..%d: %v (index %d)", i, lo, hi, err, e.Index)
				}
			}
			for i := lo; i <= hi && i < lo+4096; i++ {
				var e raft.Log
				err := l.GetLog(i, &e)
				switch {
				case err == nil && e.Index == i:
				case errors.Is(err, raft.ErrLogNotFound) && inGap(i):
				default:
					t.Fatalf("GetLog(%d) of %d..%d: %v (index %d)", i, lo, hi, err, e.Index)
				}
			}
		}

		// The log carries on, and what Open repaired stays repaired.
		next := hi + 1
		want := mkEntry(next, 9)
		if err := l.StoreLog(want); err != nil {
			t.Fatalf("StoreLog(%d): %v", next, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l2, err := raftlog.Open(dir, small)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer l2.Close()
		if r := l2.Repaired(); r != nil {
			t.Fatalf("second Open repaired %+v", *r)
		}
		if last, _ := l2.LastIndex(); last != next {
			t.Fatalf("LastIndex %d after storing %d", last, next)
		}
		if lo2, _ := l2.FirstIndex(); lo2 == 0 || (hi > 0 && lo2 > lo) {
			t.Fatalf("FirstIndex %d, was %d", lo2, lo)
		}
		var e raft.Log
		if err := l2.GetLog(next, &e); err != nil {
			t.Fatal(err)
		}
		if err := diffEntry(&e, want); err != nil {
			t.Fatal(err)
		}
	})
}

// splitRecords locates the records of a good segment.
func splitRecords(seg []byte) (uint64, []rec) {
	first := binary.BigEndian.Uint64(seg[16:])
	var recs []rec
	off := int64(hdrSize)
	for off+recHdrSize <= int64(len(seg)) {
		n := int64(binary.BigEndian.Uint32(seg[off:]))
		if n == 0 {
			break
		}
		recs = append(recs, rec{off: off, end: off + recHdrSize + n, index: first + uint64(len(recs))})
		off += recHdrSize + n
	}
	return first, recs
}
