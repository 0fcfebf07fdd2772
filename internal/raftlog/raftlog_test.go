package raftlog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/raftlog"
)

// The on-disk format, as the package comment documents it. The tests build
// and parse segments with these helpers, independently of the package's own
// code (TestFormat checks that the two agree).
const (
	hdrSize        = 40
	recHdrSize     = 8
	fixedPayload   = 8 + 8 + 1 + 8 + 4 + 4 // with the batch field
	fixedPayloadV1 = fixedPayload - 4      // version 1: no batch field
	sector         = 512
	batchEnd       = 1 << 31
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	fast  = raftlog.Options{SegmentSize: 64 << 10, NoSync: true}
	small = raftlog.Options{SegmentSize: 4096, NoSync: true}
)

func segName(first uint64) string { return fmt.Sprintf("%020d.wal", first) }

// encHeader is the header of a (version 2) segment for first, size bytes
// long: magic, version, first index, size, CRC-32C.
func encHeader(first uint64, size int64) []byte { return encHeaderV(2, first, size) }

// encHeaderV is encHeader for a segment of format version v.
func encHeaderV(v uint32, first uint64, size int64) []byte {
	h := make([]byte, hdrSize)
	copy(h, "accrdlog")
	binary.BigEndian.PutUint32(h[8:], v)
	binary.BigEndian.PutUint64(h[16:], first)
	binary.BigEndian.PutUint64(h[24:], uint64(size))
	binary.BigEndian.PutUint32(h[32:], crc32.Checksum(h[:32], castagnoli))
	return h
}

// emptySeg is a segment for first with no records, size bytes long.
func emptySeg(first uint64, size int64) []byte {
	return append(encHeader(first, size), make([]byte, size-hdrSize)...)
}

// encPayload is the stored payload of e in a batch of its own.
func encPayload(e *raft.Log) []byte { return encPayloadAt(e, 0, true) }

// encPayloadAt is the stored payload of e at position pos of its batch,
// last in it or not.
func encPayloadAt(e *raft.Log, pos uint32, last bool) []byte {
	word := pos
	if last {
		word |= batchEnd
	}
	return encPayloadWord(e, &word)
}

// encPayloadV1 is the stored payload of e in a version-1 segment.
func encPayloadV1(e *raft.Log) []byte { return encPayloadWord(e, nil) }

// encPayloadWord encodes e with the batch field word (none if nil).
func encPayloadWord(e *raft.Log, word *uint32) []byte {
	var p []byte
	p = binary.BigEndian.AppendUint64(p, e.Index)
	p = binary.BigEndian.AppendUint64(p, e.Term)
	p = append(p, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	p = binary.BigEndian.AppendUint64(p, uint64(at))
	p = binary.BigEndian.AppendUint32(p, uint32(len(e.Extensions)))
	if word != nil {
		p = binary.BigEndian.AppendUint32(p, *word)
	}
	p = append(p, e.Extensions...)
	p = append(p, e.Data...)
	xorMask(p)
	return p
}

// testMask is the documented keystream, derived here on its own: SplitMix64
// from seed "accord!!", big-endian, 4096 bytes.
var testMask = func() []byte {
	var m []byte
	x := uint64(0x6163636f72642121)
	for len(m) < 4096 {
		x += 0x9e3779b97f4a7c15
		z := (x ^ x>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		m = binary.BigEndian.AppendUint64(m, z^z>>31)
	}
	return m
}()

// xorMask masks or unmasks a payload in place.
func xorMask(p []byte) {
	for i := range p {
		p[i] ^= testMask[i%len(testMask)]
	}
}

// storedIndex is the index in a stored (masked) payload.
func storedIndex(p []byte) uint64 {
	return binary.BigEndian.Uint64(p) ^ binary.BigEndian.Uint64(testMask)
}

// storedBatch is the batch field of a stored (masked) version-2 payload.
func storedBatch(p []byte) uint32 {
	return binary.BigEndian.Uint32(p[29:]) ^ binary.BigEndian.Uint32(testMask[29:])
}

func TestMaskMatchesDocumentation(t *testing.T) {
	p := make([]byte, 10000)
	raftlog.Mask(p)
	for i := range p {
		if p[i] != testMask[i%len(testMask)] {
			t.Fatalf("Mask of zeros differs from the documented keystream at byte %d", i)
		}
	}
	raftlog.Mask(p)
	if !allZero(p) {
		t.Fatal("Mask is not its own inverse")
	}
}

func encRecord(payload []byte) []byte {
	r := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	r = binary.BigEndian.AppendUint32(r, crc32.Checksum(payload, castagnoli))
	return append(r, payload...)
}

// rec locates one record of a segment file.
type rec struct {
	off, end int64 // the record, header included: data[off:end]
	index    uint64
	batch    uint32 // its batch field (version 2)
}

// parseSeg reads a segment that the package wrote (and nothing damaged):
// its header's first index and its records.
func parseSeg(t testing.TB, path string) (first uint64, recs []rec, data []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < hdrSize {
		t.Fatalf("%s: %d bytes", path, len(data))
	}
	v := binary.BigEndian.Uint32(data[8:])
	if (v != 1 && v != 2) || !bytes.Equal(data[:hdrSize], encHeaderV(v, binary.BigEndian.Uint64(data[16:]), int64(len(data)))) {
		t.Fatalf("%s: bad header % x", path, data[:min(len(data), hdrSize)])
	}
	fixed := int64(fixedPayload)
	if v == 1 {
		fixed = fixedPayloadV1
	}
	first = binary.BigEndian.Uint64(data[16:])
	off := int64(hdrSize)
	for off+recHdrSize <= int64(len(data)) {
		n := int64(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 {
			break
		}
		end := off + recHdrSize + n
		if n < fixed || end > int64(len(data)) || crc32.Checksum(data[off+recHdrSize:end], castagnoli) != sum {
			t.Fatalf("%s: bad record at %d", path, off)
		}
		idx := storedIndex(data[off+recHdrSize:])
		if want := first + uint64(len(recs)); idx != want {
			t.Fatalf("%s: record at %d has index %d, want %d", path, off, idx, want)
		}
		r := rec{off: off, end: end, index: idx}
		if v == 2 {
			r.batch = storedBatch(data[off+recHdrSize:])
		}
		recs = append(recs, r)
		off = end
	}
	if !allZero(data[off:]) {
		t.Fatalf("%s: data after the last record (at %d)", path, off)
	}
	return first, recs, data
}

// checkFiles checks every segment of a closed log: its size is the one its
// header gives, its records are good and zeros follow them, and the
// segments do not overlap.
func checkFiles(t testing.TB, dir string) {
	t.Helper()
	next := uint64(0)
	for _, name := range walFiles(t, dir) {
		first, recs, _ := parseSeg(t, filepath.Join(dir, name))
		if nameFirst(t, name) != first || first < next || len(recs) == 0 {
			t.Fatalf("%s: first %d, %d records, after index %d", name, first, len(recs), next)
		}
		next = first + uint64(len(recs))
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fill returns n bytes derived from (i, term), none of them zero, so that
// no record of the tests holds a zero sector by accident.
func fill(i, term uint64, n int) []byte {
	b := make([]byte, n)
	x := i*0x9e3779b97f4a7c15 ^ term*0xbf58476d1ce4e5b9 ^ 0x2545f4914f6cdd1d
	for k := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[k] = byte(x%255) + 1
	}
	return b
}

func mkEntry(i, term uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fill(i, term, 40+int(i%61)),
		AppendedAt: time.Unix(1_700_000_000+int64(i), int64(i%1000)*1000+1),
	}
}

func mkEntries(lo, hi, term uint64) []*raft.Log {
	var es []*raft.Log
	for i := lo; i <= hi; i++ {
		es = append(es, mkEntry(i, term))
	}
	return es
}

func openLog(t testing.TB, dir string, o raftlog.Options) *raftlog.Log {
	t.Helper()
	l, err := raftlog.Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func closeLog(t testing.TB, l *raftlog.Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// reopen closes l and opens dir again, expecting no repair.
func reopen(t testing.TB, l *raftlog.Log, dir string, o raftlog.Options) *raftlog.Log {
	t.Helper()
	closeLog(t, l)
	l = openLog(t, dir, o)
	if r := l.Repaired(); r != nil {
		t.Fatalf("reopen of a cleanly closed log repaired %+v", *r)
	}
	return l
}

// store writes lo..hi with term in batches of up to batch entries.
func store(t testing.TB, l *raftlog.Log, lo, hi, term uint64, batch int) {
	t.Helper()
	for i := lo; i <= hi; {
		j := min(hi, i+uint64(batch)-1)
		if err := l.StoreLogs(mkEntries(i, j, term)); err != nil {
			t.Fatalf("StoreLogs(%d..%d): %v", i, j, err)
		}
		i = j + 1
	}
}

func diffEntry(got, want *raft.Log) error {
	switch {
	case got.Index != want.Index:
		return fmt.Errorf("index %d, want %d", got.Index, want.Index)
	case got.Term != want.Term:
		return fmt.Errorf("entry %d: term %d, want %d", want.Index, got.Term, want.Term)
	case got.Type != want.Type:
		return fmt.Errorf("entry %d: type %v, want %v", want.Index, got.Type, want.Type)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Errorf("entry %d: data %q, want %q", want.Index, got.Data, want.Data)
	case !bytes.Equal(got.Extensions, want.Extensions):
		return fmt.Errorf("entry %d: extensions %q, want %q", want.Index, got.Extensions, want.Extensions)
	case !got.AppendedAt.Equal(want.AppendedAt):
		return fmt.Errorf("entry %d: appended at %v, want %v", want.Index, got.AppendedAt, want.AppendedAt)
	}
	return nil
}

func checkGet(t testing.TB, l *raftlog.Log, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := l.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", want.Index, err)
	}
	if err := diffEntry(&got, want); err != nil {
		t.Fatal(err)
	}
}

func checkNotFound(t testing.TB, l *raftlog.Log, idx ...uint64) {
	t.Helper()
	for _, i := range idx {
		var e raft.Log
		if err := l.GetLog(i, &e); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) = %v (entry %d), want ErrLogNotFound", i, err, e.Index)
		}
	}
}

func checkBounds(t testing.TB, l *raftlog.Log, first, last uint64) {
	t.Helper()
	f, err := l.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	la, err := l.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || la != last {
		t.Fatalf("FirstIndex, LastIndex = %d, %d; want %d, %d", f, la, first, last)
	}
}

// checkRange checks that lo..hi hold mkEntry(i, term).
// checkEntries checks the bounds of l and every entry in them.
func checkEntries(t testing.TB, l *raftlog.Log, lo, hi, term uint64) {
	t.Helper()
	checkBounds(t, l, lo, hi)
	checkRange(t, l, lo, hi, term)
}

func checkRange(t testing.TB, l *raftlog.Log, lo, hi, term uint64) {
	t.Helper()
	for i := lo; i <= hi; i++ {
		checkGet(t, l, mkEntry(i, term))
	}
}

// walFiles lists dir's segment files, by first index.
func walFiles(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".wal") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func nameFirst(t testing.TB, name string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSuffix(name, ".wal"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// dirState maps each name in dir to a digest of its contents (and mode),
// to check that Open left a directory alone.
func dirState(t testing.TB, dir string) map[string]string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if e.IsDir() {
			m[e.Name()] = "dir " + fi.Mode().String()
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = fmt.Sprintf("%s %d %x", fi.Mode(), fi.Size(), sha256.Sum256(b))
	}
	return m
}

func sameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// expectCorrupt opens dir, expecting a *CorruptError for path at off, and
// checks that Open changed nothing in dir.
func expectCorrupt(t testing.TB, dir, path string, off int64) *raftlog.CorruptError {
	t.Helper()
	before := dirState(t, dir)
	l, err := raftlog.Open(dir, small)
	if err == nil {
		l.Close()
		t.Fatalf("Open succeeded (repaired %+v), want a CorruptError for %s at %d", l.Repaired(), path, off)
	}
	var ce *raftlog.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Open: %v (%T), want a *CorruptError", err, err)
	}
	if ce.Path != path || ce.Offset != off {
		t.Fatalf("Open: %v; want path %s offset %d", err, path, off)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
	if after := dirState(t, dir); !sameState(before, after) {
		t.Fatalf("Open refused but changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	return ce
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// patch applies f to the contents of path.
func patch(t testing.TB, path string, f func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f(b)
	writeFile(t, path, b)
}

func roundUp(x, m int64) int64 { return (x + m - 1) / m * m }

// ---------------------------------------------------------------------------
// Basic behaviour

func TestOpenOptions(t *testing.T) {
	if _, err := raftlog.Open(t.TempDir(), raftlog.Options{SegmentSize: 40}); err == nil {
		t.Fatal("Open with a 40-byte segment size succeeded")
	}
	// A directory that does not exist yet is created; the zero Options
	// give DefaultSegmentSize segments.
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := openLog(t, dir, raftlog.Options{})
	checkBounds(t, l, 0, 0)
	if err := l.StoreLog(mkEntry(1, 1)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, segName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != raftlog.DefaultSegmentSize {
		t.Fatalf("segment size %d, want %d", fi.Size(), raftlog.DefaultSegmentSize)
	}
	l = reopen(t, l, dir, raftlog.Options{})
	checkBounds(t, l, 1, 1)
	checkGet(t, l, mkEntry(1, 1))
}

func TestEmpty(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	checkBounds(t, l, 0, 0)
	checkNotFound(t, l, 0, 1, 2, math.MaxUint64)
	if err := l.DeleteRange(1, 10); err != nil {
		t.Fatalf("DeleteRange on an empty log: %v", err)
	}
	if err := l.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
	if names := walFiles(t, dir); len(names) != 0 {
		t.Fatalf("empty log wrote %v", names)
	}
	l = reopen(t, l, dir, fast)
	checkBounds(t, l, 0, 0)
}

func TestStoreAndGet(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	if err := l.StoreLogs(mkEntries(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 5)
	if err := l.StoreLog(mkEntry(6, 2)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 6)
	checkRange(t, l, 1, 5, 1)
	checkGet(t, l, mkEntry(6, 2))
	checkNotFound(t, l, 0, 7, 100)
	store(t, l, 7, 100, 2, 9)
	checkBounds(t, l, 1, 100)
	checkRange(t, l, 7, 100, 2)
	l = reopen(t, l, dir, fast)
	checkBounds(t, l, 1, 100)
	checkRange(t, l, 1, 5, 1)
	checkRange(t, l, 6, 100, 2)
}

func TestRoundTripFields(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	now := time.Now() // with a monotonic reading and a location
	es := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte{0, 0, 0}, AppendedAt: now},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}},
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: []byte("data"), Extensions: []byte("ext")},
		{Index: 5, Term: math.MaxUint64, Type: raft.LogBarrier, Extensions: []byte("only extensions")},
		{Index: 6, Term: 3, Type: raft.LogType(255), Data: fill(6, 3, 100_000), AppendedAt: time.Unix(0, 1)},
		{Index: 7, Term: 3, Type: raft.LogAddPeerDeprecated, Data: []byte{0}, Extensions: []byte{0}, AppendedAt: time.Unix(-5, 123)},
		{Index: 8, Term: 4, Type: raft.LogRemovePeerDeprecated, Data: bytes.Repeat([]byte{0}, 2000), AppendedAt: time.Date(2200, 1, 2, 3, 4, 5, 6, time.UTC)},
	}
	if err := l.StoreLogs(es); err != nil {
		t.Fatal(err)
	}
	check := func(l *raftlog.Log) {
		t.Helper()
		checkBounds(t, l, 1, uint64(len(es)))
		// One raft.Log reused across calls: GetLog must not leave fields of
		// the previous entry behind.
		var got raft.Log
		for _, want := range es {
			if err := l.GetLog(want.Index, &got); err != nil {
				t.Fatalf("GetLog(%d): %v", want.Index, err)
			}
			if err := diffEntry(&got, want); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(l)

	// The log keeps its own copy: changing what was stored or what was
	// read back changes nothing.
	es4 := *es[3]
	es[3].Data[0] = 'X'
	var got raft.Log
	if err := l.GetLog(4, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "data" {
		t.Fatalf("entry 4 data %q after the caller changed its slice", got.Data)
	}
	es[3].Data[0] = 'd'
	got.Data[0] = 'Y'
	got.Extensions = append(got.Extensions, "more"...)
	if err := l.GetLog(4, &got); err != nil {
		t.Fatal(err)
	}
	if err := diffEntry(&got, &es4); err != nil {
		t.Fatalf("after changing what GetLog returned: %v", err)
	}

	l = reopen(t, l, dir, fast)
	check(l)
}

func TestStoreLogsErrors(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	bad := [][]*raft.Log{
		{mkEntry(1, 1), mkEntry(2, 1), mkEntry(4, 1)},
		{mkEntry(3, 1), mkEntry(2, 1)},
		{mkEntry(1, 1), mkEntry(1, 1)},
		{mkEntry(0, 1)},
		{mkEntry(0, 1), mkEntry(1, 1)},
	}
	for _, es := range bad {
		if err := l.StoreLogs(es); err == nil {
			t.Fatalf("StoreLogs(%d entries from %d) succeeded", len(es), es[0].Index)
		}
		checkBounds(t, l, 0, 0)
	}
	if err := l.StoreLog(&raft.Log{Index: 0, Term: 1}); err == nil {
		t.Fatal("StoreLog(index 0) succeeded")
	}
	store(t, l, 1, 5, 1, 5)
	if err := l.StoreLogs([]*raft.Log{mkEntry(6, 1), mkEntry(8, 1)}); err == nil {
		t.Fatal("non-contiguous StoreLogs succeeded")
	}
	if err := l.StoreLogs([]*raft.Log{mkEntry(3, 2), mkEntry(5, 2)}); err == nil {
		t.Fatal("non-contiguous overwriting StoreLogs succeeded")
	}
	checkEntries(t, l, 1, 5, 1)
	l = reopen(t, l, dir, fast)
	checkEntries(t, l, 1, 5, 1)
}

// TestFormat checks the files against the documented format: segments
// named %020d.wal by their first index, created at SegmentSize (or at the
// size of a batch bigger than that), a 40-byte header, then
// length/CRC-32C/payload records whose batch field numbers the entries of
// each StoreLogs call and marks its last, then zeros. A batch never
// straddles two segments.
func TestFormat(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	var batches [][]*raft.Log
	for lo := uint64(1); lo <= 60; lo += 10 {
		batches = append(batches, mkEntries(lo, lo+9, 7))
	}
	// One batch bigger than a segment: a segment of its own, as big as it.
	big := mkEntries(61, 70, 8)
	for _, e := range big {
		e.Data = fill(e.Index, 8, 500)
	}
	big[9].Type, big[9].Extensions = raft.LogNoop, []byte("x")
	batches = append(batches, big, mkEntries(71, 71, 9))
	type place struct {
		e    *raft.Log
		pos  uint32
		last bool
	}
	want := map[uint64]place{}
	for _, b := range batches {
		if err := l.StoreLogs(b); err != nil {
			t.Fatal(err)
		}
		for i, e := range b {
			want[e.Index] = place{e, uint32(i), i == len(b)-1}
		}
	}
	closeLog(t, l)
	names := walFiles(t, dir)
	if len(names) < 3 {
		t.Fatalf("71 entries in 4 KiB segments made %v", names)
	}
	next := uint64(1)
	for _, name := range names {
		path := filepath.Join(dir, name)
		first, recs, data := parseSeg(t, path)
		if name != segName(first) || first != next {
			t.Fatalf("%s holds entries from %d, want %d", name, first, next)
		}
		size := int64(4096)
		if first == 61 {
			size = hdrSize
			for _, e := range big {
				size += int64(len(encRecord(encPayload(e))))
			}
		}
		if int64(len(data)) != size {
			t.Fatalf("%s is %d bytes, want %d", name, len(data), size)
		}
		for i, r := range recs {
			p := want[r.index]
			if i == 0 && p.pos != 0 || i == len(recs)-1 && !p.last {
				t.Fatalf("%s: a batch straddles its boundary (entry %d, position %d)", name, r.index, p.pos)
			}
			w := encRecord(encPayloadAt(p.e, p.pos, p.last))
			if !bytes.Equal(data[r.off:r.end], w) {
				t.Fatalf("%s: record %d at %d is\n% x\nwant\n% x", name, r.index, r.off, data[r.off:r.end], w)
			}
		}
		next = first + uint64(len(recs))
	}
	if next != 72 {
		t.Fatalf("segments hold entries up to %d, want 71", next-1)
	}
}

func TestReopenWithSync(t *testing.T) {
	dir := t.TempDir()
	o := raftlog.Options{SegmentSize: 64 << 10} // fdatasync on
	l := openLog(t, dir, o)
	store(t, l, 1, 200, 1, 16)
	l = reopen(t, l, dir, o)
	checkEntries(t, l, 1, 200, 1)
	store(t, l, 201, 250, 2, 50)
	if err := l.DeleteRange(240, 250); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, dir, o)
	checkBounds(t, l, 1, 239)
	checkRange(t, l, 1, 200, 1)
	checkRange(t, l, 201, 239, 2)
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 3, 1, 3)
	closeLog(t, l)
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var e raft.Log
	if _, err := l.FirstIndex(); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("FirstIndex after Close: %v", err)
	}
	if _, err := l.LastIndex(); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("LastIndex after Close: %v", err)
	}
	if err := l.GetLog(1, &e); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("GetLog after Close: %v", err)
	}
	if err := l.StoreLog(mkEntry(4, 1)); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("StoreLog after Close: %v", err)
	}
	if err := l.StoreLogs(mkEntries(4, 5, 1)); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("StoreLogs after Close: %v", err)
	}
	if err := l.StoreLogs(mkEntries(2, 3, 2)); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("overwriting StoreLogs after Close: %v", err)
	}
	if err := l.DeleteRange(1, 1); !errors.Is(err, raftlog.ErrClosed) {
		t.Errorf("DeleteRange after Close: %v", err)
	}
	if r := l.Repaired(); r != nil {
		t.Errorf("Repaired = %+v", *r)
	}
	l = openLog(t, dir, fast)
	checkEntries(t, l, 1, 3, 1)
}

// ---------------------------------------------------------------------------
// Segments

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 400, 1, 13) // several batches a segment, none fits the last room
	checkEntries(t, l, 1, 400, 1)
	names := walFiles(t, dir)
	if len(names) < 10 {
		t.Fatalf("400 entries in 4 KiB segments made only %v", names)
	}
	next := uint64(1)
	for _, name := range names {
		first, recs, data := parseSeg(t, filepath.Join(dir, name))
		if first != next || nameFirst(t, name) != first || len(recs) == 0 {
			t.Fatalf("%s: first %d, %d records; want first %d", name, first, len(recs), next)
		}
		if len(data) != 4096 {
			t.Fatalf("%s is %d bytes", name, len(data))
		}
		// Batches start at 1, 14, 27...: each segment holds whole ones.
		if (first-1)%13 != 0 || recs[0].batch != 0 {
			t.Fatalf("%s starts inside a batch (entry %d, batch field %#x)", name, first, recs[0].batch)
		}
		if r := recs[len(recs)-1]; r.batch&batchEnd == 0 && r.index != 400 {
			t.Fatalf("%s ends inside a batch (entry %d, batch field %#x)", name, r.index, r.batch)
		}
		next += uint64(len(recs))
	}

	// A batch bigger than a segment gets a segment of its own, as big as it
	// needs (here after replacing 400); the next batch goes to a new normal
	// segment.
	big := mkEntry(401, 1)
	big.Data = fill(401, 1, 10_000)
	batch := append([]*raft.Log{mkEntry(400, 2), big}, mkEntries(402, 410, 1)...)
	if err := l.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 410)
	checkGet(t, l, mkEntry(400, 2))
	checkGet(t, l, big)
	checkRange(t, l, 402, 410, 1)
	fi, err := os.Stat(filepath.Join(dir, segName(400)))
	if err != nil {
		t.Fatalf("no segment of its own for the big batch: %v", err)
	}
	need := int64(hdrSize)
	for _, e := range batch {
		need += int64(len(encRecord(encPayload(e))))
	}
	if fi.Size() != need {
		t.Fatalf("big batch's segment is %d bytes, want %d", fi.Size(), need)
	}
	if _, recs, _ := parseSeg(t, filepath.Join(dir, segName(400))); len(recs) != 11 {
		t.Fatalf("big batch's segment holds %d records, want 11", len(recs))
	}
	store(t, l, 411, 412, 1, 2)
	if _, recs, _ := parseSeg(t, filepath.Join(dir, segName(411))); len(recs) != 2 {
		t.Fatalf("segment 411 holds %d records, want 2", len(recs))
	}

	l = reopen(t, l, dir, small)
	checkBounds(t, l, 1, 412)
	checkRange(t, l, 1, 399, 1)
	checkGet(t, l, mkEntry(400, 2))
	checkGet(t, l, big)
	checkRange(t, l, 402, 412, 1)
	// A reopened log appends to its newest segment.
	store(t, l, 413, 414, 1, 2)
	if names2 := walFiles(t, dir); names2[len(names2)-1] != segName(411) {
		t.Fatalf("after reopen, 413 went to %v", names2)
	}
	l = reopen(t, l, dir, small)
	checkRange(t, l, 402, 414, 1)
}

func TestGap(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	store(t, l, 20, 25, 2, 3) // raft after installing a snapshot at 19
	checkBounds(t, l, 1, 25)
	if names := walFiles(t, dir); len(names) != 2 || names[1] != segName(20) {
		t.Fatalf("segments %v, want a new one at 20", names)
	}
	checkNotFound(t, l, 11, 15, 19, 26)
	checkRange(t, l, 1, 10, 1)
	checkRange(t, l, 20, 25, 2)
	l = reopen(t, l, dir, fast)
	checkBounds(t, l, 1, 25)
	checkNotFound(t, l, 11, 15, 19, 26)
	checkRange(t, l, 1, 10, 1)
	checkRange(t, l, 20, 25, 2)

	// A second gap, then overwriting from inside the first one: everything
	// from that index on goes, what is below stays.
	store(t, l, 30, 31, 3, 2)
	if err := l.StoreLogs(mkEntries(15, 16, 4)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 16)
	checkNotFound(t, l, 11, 14, 17, 20, 25, 30)
	checkRange(t, l, 1, 10, 1)
	checkRange(t, l, 15, 16, 4)
	if names := walFiles(t, dir); len(names) != 2 || names[1] != segName(15) {
		t.Fatalf("segments %v", names)
	}
	l = reopen(t, l, dir, fast)
	checkBounds(t, l, 1, 16)
	checkNotFound(t, l, 11, 14, 17, 20)
	checkRange(t, l, 15, 16, 4)

	// A prefix delete whose end falls in the gap.
	if err := l.DeleteRange(1, 12); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 15, 16)
	checkNotFound(t, l, 1, 10, 12, 14)
	if names := walFiles(t, dir); len(names) != 1 {
		t.Fatalf("segments %v", names)
	}
	l = reopen(t, l, dir, fast)
	checkEntries(t, l, 15, 16, 4)
}

// ---------------------------------------------------------------------------
// Overwrites and deletes

func TestOverwrite(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	if err := l.StoreLogs(mkEntries(6, 8, 2)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 8)
	checkRange(t, l, 1, 5, 1)
	checkRange(t, l, 6, 8, 2)
	checkNotFound(t, l, 9, 10)
	l = reopen(t, l, dir, fast) // no stale records left after 8
	checkBounds(t, l, 1, 8)
	checkRange(t, l, 1, 5, 1)
	checkRange(t, l, 6, 8, 2)
	checkNotFound(t, l, 9, 10)

	// Overwriting the last entry, then the whole log.
	if err := l.StoreLog(mkEntry(8, 3)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 8)
	checkGet(t, l, mkEntry(8, 3))
	if err := l.StoreLogs(mkEntries(1, 3, 4)); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, l, 1, 3, 4)
	checkNotFound(t, l, 4, 8)
	l = reopen(t, l, dir, fast)
	checkEntries(t, l, 1, 3, 4)
	store(t, l, 4, 6, 4, 3)
	checkRange(t, l, 1, 6, 4)
}

func TestOverwriteAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 300, 1, 25)
	before := walFiles(t, dir)
	if err := l.StoreLogs(mkEntries(100, 120, 2)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 120)
	checkRange(t, l, 1, 99, 1)
	checkRange(t, l, 100, 120, 2)
	checkNotFound(t, l, 121, 200, 300)
	after := walFiles(t, dir)
	if len(after) >= len(before) {
		t.Fatalf("segments before %d, after %d: the overwritten ones were kept", len(before), len(after))
	}
	for _, name := range after {
		if nameFirst(t, name) > 120 {
			t.Fatalf("segment %s outlived the overwrite at 100", name)
		}
	}
	l = reopen(t, l, dir, small)
	checkBounds(t, l, 1, 120)
	checkRange(t, l, 1, 99, 1)
	checkRange(t, l, 100, 120, 2)
	store(t, l, 121, 130, 2, 10)
	l = reopen(t, l, dir, small)
	checkRange(t, l, 100, 130, 2)
	closeLog(t, l)
	checkFiles(t, dir)
}

func TestDeleteSuffix(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	if err := l.DeleteRange(7, 10); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 6)
	checkNotFound(t, l, 7, 10)
	if err := l.DeleteRange(5, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 4)
	checkNotFound(t, l, 5, 6)
	checkRange(t, l, 1, 4, 1)
	l = reopen(t, l, dir, fast)
	checkEntries(t, l, 1, 4, 1)
	checkNotFound(t, l, 5)
	store(t, l, 5, 8, 2, 2)
	checkRange(t, l, 5, 8, 2)
	l = reopen(t, l, dir, fast)
	checkBounds(t, l, 1, 8)
	checkRange(t, l, 5, 8, 2)

	// Across segments.
	dir = t.TempDir()
	l = openLog(t, dir, small)
	store(t, l, 1, 300, 1, 30)
	if err := l.DeleteRange(150, 300); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 149)
	checkNotFound(t, l, 150, 300)
	for _, name := range walFiles(t, dir) {
		if nameFirst(t, name) >= 150 {
			t.Fatalf("segment %s survived DeleteRange(150, 300)", name)
		}
	}
	l = reopen(t, l, dir, small)
	checkEntries(t, l, 1, 149, 1)
	closeLog(t, l)
	checkFiles(t, dir)
}

func TestDeletePrefix(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 300, 1, 20)
	names := walFiles(t, dir)
	// hi in the middle of the third segment.
	s2, s3 := nameFirst(t, names[2]), nameFirst(t, names[3])
	hi := s2 + (s3-s2)/2
	if err := l.DeleteRange(1, hi); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, hi+1, 300)
	checkNotFound(t, l, 1, s2, hi)
	checkRange(t, l, hi+1, 300, 1)
	if got := walFiles(t, dir); len(got) != len(names)-2 || got[0] != names[2] {
		t.Fatalf("after DeleteRange(1, %d): segments %v, want %v", hi, got, names[2:])
	}

	// Only whole segments go: after a reopen the first index is that of
	// the first segment left, at most hi+1, and every entry from there on
	// is intact.
	l = reopen(t, l, dir, small)
	first, _ := l.FirstIndex()
	if first != s2 {
		t.Fatalf("FirstIndex after reopen %d, want %d (the first segment's)", first, s2)
	}
	checkEntries(t, l, first, 300, 1)

	// A delete that ends exactly at a segment's last entry removes it, and
	// FirstIndex stays exact across a reopen.
	if err := l.DeleteRange(first, s3-1); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, s3, 300)
	checkNotFound(t, l, s3-1)
	if got := walFiles(t, dir); got[0] != names[3] {
		t.Fatalf("segments %v", got)
	}
	l = reopen(t, l, dir, small)
	checkEntries(t, l, s3, 300, 1)

	// raft asks from an index below the first one as well.
	if err := l.DeleteRange(1, s3+1); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, s3+2, 300)
	store(t, l, 301, 320, 1, 20)
	checkRange(t, l, s3+2, 320, 1)
}

func TestDeleteAll(t *testing.T) {
	for _, hi := range []uint64{100, math.MaxUint64} {
		t.Run(fmt.Sprint(hi), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, small)
			store(t, l, 1, 100, 1, 10)
			if err := l.DeleteRange(1, hi); err != nil {
				t.Fatal(err)
			}
			checkBounds(t, l, 0, 0)
			checkNotFound(t, l, 1, 50, 100)
			if names := walFiles(t, dir); len(names) != 0 {
				t.Fatalf("segments left: %v", names)
			}
			l = reopen(t, l, dir, small)
			checkBounds(t, l, 0, 0)
			// raft after installing a snapshot: the log restarts anywhere.
			store(t, l, 500, 510, 2, 4)
			checkBounds(t, l, 500, 510)
			checkNotFound(t, l, 1, 499, 511)
			checkRange(t, l, 500, 510, 2)
			l = reopen(t, l, dir, small)
			checkEntries(t, l, 500, 510, 2)
			// And again, at a lower index.
			if err := l.DeleteRange(500, 510); err != nil {
				t.Fatal(err)
			}
			store(t, l, 3, 4, 3, 2)
			checkBounds(t, l, 3, 4)
			l = reopen(t, l, dir, small)
			checkEntries(t, l, 3, 4, 3)
		})
	}
}

func TestDeleteMiddle(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	if err := l.DeleteRange(3, 5); err == nil {
		t.Fatal("DeleteRange(3, 5) of 1..10 succeeded")
	}
	checkEntries(t, l, 1, 10, 1)
	l = reopen(t, l, dir, fast)
	checkEntries(t, l, 1, 10, 1)
}

func TestDeleteRangeNoop(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 5, 10, 1, 10)
	for _, r := range [][2]uint64{{8, 7}, {10, 1}, {1, 4}, {11, 20}, {math.MaxUint64, math.MaxUint64}} {
		if err := l.DeleteRange(r[0], r[1]); err != nil {
			t.Fatalf("DeleteRange(%d, %d): %v", r[0], r[1], err)
		}
		checkBounds(t, l, 5, 10)
	}
	checkRange(t, l, 5, 10, 1)
}

// TestStoreBelowFirst: storing at an index that a prefix delete has
// removed, inside the first segment that is left, replaces everything from
// there on; the new entries are readable and FirstIndex <= LastIndex.
func TestStoreBelowFirst(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	if err := l.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 6, 10)
	if err := l.StoreLogs(mkEntries(3, 4, 2)); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, l, 3, 4, 2)
	checkNotFound(t, l, 1, 2, 5, 10)
	l = reopen(t, l, dir, fast)
	if first, _ := l.FirstIndex(); first > 3 {
		t.Fatalf("FirstIndex after reopen %d", first)
	}
	checkRange(t, l, 3, 4, 2)
	checkNotFound(t, l, 5)
}

// ---------------------------------------------------------------------------
// Damage

// damaged builds a log of several 4 KiB segments (entries 1..120) and
// returns its directory and segment paths.
func damaged(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 120, 1, 7)
	closeLog(t, l)
	var paths []string
	for _, n := range walFiles(t, dir) {
		paths = append(paths, filepath.Join(dir, n))
	}
	if len(paths) < 3 {
		t.Fatalf("only %d segments", len(paths))
	}
	return dir, paths
}

// usable reports whether a flipped byte in r can be told from a torn
// write by the sector rule: r does not start within the 3 bytes before a
// sector boundary (where the first part of a sector would hold only the
// high-order zero bytes of its length).
func usable(r rec) bool { return r.off%sector < sector-3 }

func TestCorruptSealedRecord(t *testing.T) {
	dir, paths := damaged(t)
	_, recs, _ := parseSeg(t, paths[0])
	r := recs[3]
	patch(t, paths[0], func(b []byte) { b[r.off+recHdrSize+20] ^= 0x10 })
	expectCorrupt(t, dir, paths[0], r.off)
}

func TestCorruptSealedRecordLastOfSegment(t *testing.T) {
	dir, paths := damaged(t)
	_, recs, _ := parseSeg(t, paths[1])
	r := recs[len(recs)-1]
	patch(t, paths[1], func(b []byte) { b[r.end-1] ^= 0xff })
	expectCorrupt(t, dir, paths[1], r.off)
}

// TestCorruptNewestRecord flips bytes of records of the newest segment,
// in each field: none leaves a zero sector, so none is a torn write.
func TestCorruptNewestRecord(t *testing.T) {
	fields := []struct {
		name string
		at   func(r rec) int64
		mask byte
	}{
		{"length high byte", func(r rec) int64 { return r.off }, 0x40},
		{"length second byte", func(r rec) int64 { return r.off + 1 }, 0x01},
		{"length third byte", func(r rec) int64 { return r.off + 2 }, 0x02},
		{"length +1", func(r rec) int64 { return r.off + 3 }, 0x01},
		{"length low bit", func(r rec) int64 { return r.off + 3 }, 0x80},
		{"checksum", func(r rec) int64 { return r.off + 5 }, 0x01},
		{"index", func(r rec) int64 { return r.off + recHdrSize + 7 }, 0x01},
		{"term", func(r rec) int64 { return r.off + recHdrSize + 15 }, 0x04},
		{"type", func(r rec) int64 { return r.off + recHdrSize + 16 }, 0x01},
		{"data", func(r rec) int64 { return r.off + recHdrSize + fixedPayload + 10 }, 0x20},
		{"last byte", func(r rec) int64 { return r.end - 1 }, 0x01},
	}
	for _, which := range []string{"last", "middle", "first"} {
		for _, f := range fields {
			t.Run(which+"/"+f.name, func(t *testing.T) {
				dir, paths := damaged(t)
				newest := paths[len(paths)-1]
				_, recs, _ := parseSeg(t, newest)
				if len(recs) < 3 {
					t.Fatalf("newest segment has %d records", len(recs))
				}
				var r rec
				switch which {
				case "last":
					r = recs[len(recs)-1]
				case "middle":
					r = recs[len(recs)/2]
				default:
					r = recs[0]
				}
				if !usable(r) {
					t.Fatalf("record at %d straddles a sector boundary in its length: pick another", r.off)
				}
				patch(t, newest, func(b []byte) { b[f.at(r)] ^= f.mask })
				expectCorrupt(t, dir, newest, r.off)
			})
		}
	}
}

// TestCorruptNewestRecordLengthBeyondFile: a length field damaged to point
// past the end of the file (or past the size limit) is damage, not a torn
// write, even though the segment's unused tail is all zeros.
func TestCorruptNewestRecordLengthBeyondFile(t *testing.T) {
	for _, v := range []uint32{4096, 1 << 20, 1<<30 + 1, math.MaxUint32} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			dir, paths := damaged(t)
			newest := paths[len(paths)-1]
			_, recs, _ := parseSeg(t, newest)
			r := recs[1]
			patch(t, newest, func(b []byte) { binary.BigEndian.PutUint32(b[r.off:], v) })
			expectCorrupt(t, dir, newest, r.off)
		})
	}
}

// inOldestAndNewest runs f on a damaged() directory, once for its oldest
// segment and once for its newest.
func inOldestAndNewest(t *testing.T, f func(t *testing.T, dir, path string)) {
	for _, newest := range []bool{false, true} {
		t.Run(fmt.Sprint("newest=", newest), func(t *testing.T) {
			dir, paths := damaged(t)
			path := paths[0]
			if newest {
				path = paths[len(paths)-1]
			}
			f(t, dir, path)
		})
	}
}

func TestCorruptWrongIndex(t *testing.T) {
	// A record with a good checksum that claims another index, in an older
	// segment and in the newest one.
	inOldestAndNewest(t, func(t *testing.T, dir, path string) {
		_, recs, _ := parseSeg(t, path)
		r := recs[2]
		patch(t, path, func(b []byte) {
			p := b[r.off+recHdrSize : r.end]
			binary.BigEndian.PutUint64(p, r.index+1000)
			binary.BigEndian.PutUint32(b[r.off+4:], crc32.Checksum(p, castagnoli))
		})
		ce := expectCorrupt(t, dir, path, r.off)
		if !strings.Contains(ce.Reason, "index") {
			t.Errorf("reason %q does not mention the index", ce.Reason)
		}
	})
}

// TestCorruptRecordThatDoesNotDecode: a record with a good checksum and
// index whose extensions length runs past its payload can never be read
// back; Open refuses it rather than leave GetLog to fail later.
func TestCorruptRecordThatDoesNotDecode(t *testing.T) {
	inOldestAndNewest(t, func(t *testing.T, dir, path string) {
		_, recs, _ := parseSeg(t, path)
		r := recs[1]
		patch(t, path, func(b []byte) {
			p := b[r.off+recHdrSize : r.end]
			binary.BigEndian.PutUint32(p[25:], uint32(len(p)-fixedPayload+1))
			binary.BigEndian.PutUint32(b[r.off+4:], crc32.Checksum(p, castagnoli))
		})
		expectCorrupt(t, dir, path, r.off)
	})
}

func TestCorruptHeader(t *testing.T) {
	cases := []struct {
		name string
		f    func(b []byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"first index", func(b []byte) []byte { b[23] ^= 1; return b }},
		{"size field", func(b []byte) []byte { b[30] ^= 1; return b }},
		{"checksum", func(b []byte) []byte { b[34] ^= 1; return b }},
		{"version", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[8:], 3)
			binary.BigEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
			return b
		}},
		{"zeroed", func(b []byte) []byte { clear(b[:hdrSize]); return b }},
		{"short", func(b []byte) []byte { return b[:hdrSize-1] }},
		{"empty", func(b []byte) []byte { return nil }},
		// The header records the size the segment was created with.
		{"truncated", func(b []byte) []byte { return b[:len(b)-512] }},
		{"extended", func(b []byte) []byte { return append(b, make([]byte, 512)...) }},
	}
	for _, c := range cases {
		for _, which := range []int{0, -1} {
			t.Run(fmt.Sprint(c.name, which), func(t *testing.T) {
				dir, paths := damaged(t)
				path := paths[0]
				if which < 0 {
					path = paths[len(paths)-1]
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, c.f(b))
				expectCorrupt(t, dir, path, 0)
			})
		}
	}
}

// TestCorruptRenamed: a good segment under another name (its header says
// otherwise) is refused.
func TestCorruptRenamed(t *testing.T) {
	dir, paths := damaged(t)
	first, _, _ := parseSeg(t, paths[1])
	to := filepath.Join(dir, segName(first+1))
	if err := os.Rename(paths[1], to); err != nil {
		t.Fatal(err)
	}
	expectCorrupt(t, dir, to, 0)
}

func TestCorruptOverlap(t *testing.T) {
	// Entries 1..10 here; entries 5..15 in another log. A copy of the
	// other log's segment (a well-formed segment for 5) overlaps.
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	closeLog(t, l)
	other := t.TempDir()
	l = openLog(t, other, fast)
	store(t, l, 5, 15, 2, 11)
	closeLog(t, l)
	b, err := os.ReadFile(filepath.Join(other, segName(5)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segName(5))
	writeFile(t, path, b)
	ce := expectCorrupt(t, dir, path, -1)
	if !strings.Contains(ce.Reason, "previous segment") {
		t.Errorf("reason %q", ce.Reason)
	}

	// A well-formed segment for entries first1-3..first1+2, where the
	// first segment ends at first1-1: it is named, as the later one of the
	// two that overlap.
	dir, paths := damaged(t)
	first1, _, _ := parseSeg(t, paths[1])
	seg := encHeader(first1-3, 4096)
	for i := first1 - 3; i < first1+3; i++ {
		seg = append(seg, encRecord(encPayload(mkEntry(i, 1)))...)
	}
	seg = append(seg, make([]byte, 4096-len(seg))...)
	path = filepath.Join(dir, segName(first1-3))
	writeFile(t, path, seg)
	expectCorrupt(t, dir, path, -1)
}

func TestCorruptGarbageAfterLastRecord(t *testing.T) {
	dir, paths := damaged(t)
	_, recs, data := parseSeg(t, paths[1])
	end := recs[len(recs)-1].end
	if int(end)+20 > len(data) {
		t.Fatalf("segment is full")
	}
	patch(t, paths[1], func(b []byte) { b[end+10] = 0x5a })
	expectCorrupt(t, dir, paths[1], end+10)

	// At the very end of the file too.
	dir, paths = damaged(t)
	patch(t, paths[0], func(b []byte) { b[len(b)-1] = 1 })
	expectCorrupt(t, dir, paths[0], 4096-1)
}

func TestCorruptEmptySegmentNotNewest(t *testing.T) {
	dir, paths := damaged(t)
	patch(t, paths[1], func(b []byte) { clear(b[hdrSize:]) })
	expectCorrupt(t, dir, paths[1], -1)
}

func TestCorruptNames(t *testing.T) {
	for _, name := range []string{"abc.wal", "0.wal", "00000000000000000000.wal", "-1.wal", "+5.wal", "1e3.wal", ".wal", "99999999999999999999999.wal"} {
		t.Run(name, func(t *testing.T) {
			dir, _ := damaged(t)
			path := filepath.Join(dir, name)
			writeFile(t, path, emptySeg(1, 4096))
			ce := expectCorrupt(t, dir, path, -1)
			if !strings.Contains(ce.Reason, "name") {
				t.Errorf("reason %q", ce.Reason)
			}
		})
	}
	// A directory with a segment's name.
	dir, _ := damaged(t)
	path := filepath.Join(dir, segName(500))
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	expectCorrupt(t, dir, path, -1)

	// Other names are none of Open's business.
	dir, _ = damaged(t)
	writeFile(t, filepath.Join(dir, "LOCK"), []byte("x"))
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("x"))
	l := openLog(t, dir, small)
	checkBounds(t, l, 1, 120)
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptKeepsTmp: when Open refuses, it does not even remove a
// leftover temporary file.
func TestCorruptKeepsTmp(t *testing.T) {
	dir, paths := damaged(t)
	writeFile(t, filepath.Join(dir, segName(121)+".tmp"), emptySeg(121, 4096))
	_, recs, _ := parseSeg(t, paths[0])
	patch(t, paths[0], func(b []byte) { b[recs[0].off+recHdrSize] ^= 1 })
	expectCorrupt(t, dir, paths[0], recs[0].off)
}

// TestGetLogDetectsLaterDamage: a record damaged after Open is an error
// from GetLog, never a wrong entry.
func TestGetLogDetectsLaterDamage(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, fast)
	store(t, l, 1, 10, 1, 10)
	path := filepath.Join(dir, segName(1))
	_, recs, _ := parseSeg(t, path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xee}, recs[4].off+recHdrSize+fixedPayload+3); err != nil {
		t.Fatal(err)
	}
	var e raft.Log
	err = l.GetLog(5, &e)
	var ce *raftlog.CorruptError
	if !errors.As(err, &ce) || ce.Path != path || ce.Offset != recs[4].off {
		t.Fatalf("GetLog(5) of a damaged record: %v", err)
	}
	checkGet(t, l, mkEntry(4, 1))
	checkGet(t, l, mkEntry(6, 1))
}

// ---------------------------------------------------------------------------
// Torn writes

// tornEntry is entry i of the torn-write tests: entry 21 is big (1500
// bytes of data, several sectors).
func tornEntry(i uint64) *raft.Log {
	e := mkEntry(i, 1)
	if i == 21 {
		e.Data = fill(21, 1, 1500)
	}
	return e
}

// tornSetup writes entries 1..20, then the batch 21..25 whose first entry
// is big, and returns the newest segment's path and the records of that
// batch.
func tornSetup(t *testing.T, o raftlog.Options) (dir, path string, batch []rec) {
	t.Helper()
	dir = t.TempDir()
	l := openLog(t, dir, o)
	store(t, l, 1, 20, 1, 20)
	var es []*raft.Log
	for i := uint64(21); i <= 25; i++ {
		es = append(es, tornEntry(i))
	}
	if err := l.StoreLogs(es); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	names := walFiles(t, dir)
	path = filepath.Join(dir, names[len(names)-1])
	_, recs, _ := parseSeg(t, path)
	for _, r := range recs {
		if r.index >= 21 {
			batch = append(batch, r)
		}
	}
	if len(batch) != 5 {
		t.Fatalf("newest segment %s holds %d of the last batch", path, len(batch))
	}
	return dir, path, batch
}

// expectTorn opens dir, expecting a repair of path from off and entries
// 1..last (term 1) left, then checks that the log carries on.
func expectTorn(t *testing.T, dir, path string, off int64, last uint64, o raftlog.Options, want func(uint64) *raft.Log) {
	t.Helper()
	l := openLog(t, dir, o)
	r := l.Repaired()
	if r == nil {
		t.Fatal("Open reported no repair")
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if r.Path != path || r.Offset != off || r.Bytes <= 0 || r.Offset+r.Bytes > fi.Size() {
			t.Fatalf("Repaired() = %+v; want path %s, offset %d, 0 < bytes <= %d", *r, path, off, fi.Size()-off)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !allZero(b[off:]) {
			t.Fatalf("%s: bytes left after %d", path, off)
		}
	case errors.Is(err, os.ErrNotExist):
		// The torn record was the segment's first: the segment went.
		if r.Path != path || r.Offset != off {
			t.Fatalf("Repaired() = %+v; want path %s, offset %d", *r, path, off)
		}
	default:
		t.Fatal(err)
	}
	checkBounds(t, l, 1, last)
	for i := uint64(1); i <= last; i++ {
		checkGet(t, l, want(i))
	}
	checkNotFound(t, l, last+1)
	// The log carries on from there, and the next Open repairs nothing.
	store(t, l, last+1, last+6, 2, 6)
	checkRange(t, l, last+1, last+6, 2)
	l = reopen(t, l, dir, o)
	checkBounds(t, l, 1, last+6)
	for i := uint64(1); i <= last; i++ {
		checkGet(t, l, want(i))
	}
	checkRange(t, l, last+1, last+6, 2)
	l = reopen(t, l, dir, o)
	checkBounds(t, l, 1, last+6)
	closeLog(t, l)
	checkFiles(t, dir)
}

func TestTornZeroSector(t *testing.T) {
	// A sector inside the last record of the batch never reached the disk.
	for _, o := range []raftlog.Options{small, {SegmentSize: 4096}} {
		t.Run(fmt.Sprint("nosync=", o.NoSync), func(t *testing.T) {
			dir, path, batch := tornSetup(t, o)
			// Make the big entry the last one: drop 22..25 from the file
			// as if they had never been written.
			r := batch[0]
			patch(t, path, func(b []byte) { clear(b[r.end:]) })
			s := roundUp(r.off+1, sector)
			if s+sector > r.end {
				t.Fatalf("no whole sector inside record %d..%d", r.off, r.end)
			}
			patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
			expectTorn(t, dir, path, r.off, 20, o, tornEntry)
		})
	}
}

func TestTornCutShort(t *testing.T) {
	// The record's first part reached the disk, the rest did not.
	dir, path, batch := tornSetup(t, small)
	r := batch[0]
	patch(t, path, func(b []byte) { clear(b[r.off+100:]) })
	expectTorn(t, dir, path, r.off, 20, small, tornEntry)
}

func TestTornMidBatch(t *testing.T) {
	// A sector of the batch's first record is missing, the records after
	// it reached the disk whole: all of the batch goes.
	dir, path, batch := tornSetup(t, small)
	r := batch[0]
	s := roundUp(r.off+1, sector)
	patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
	expectTorn(t, dir, path, r.off, 20, small, tornEntry)
}

func TestTornLaterInBatch(t *testing.T) {
	// The batch's first records reached the disk, the third is cut short
	// at a sector boundary: all of the batch goes, the whole records too
	// (the batch was never acknowledged, and a prefix of it is not one).
	o := raftlog.Options{SegmentSize: 16 << 10, NoSync: true}
	want := func(i uint64) *raft.Log {
		e := mkEntry(i, 1)
		if i > 20 {
			e.Data = fill(i, 1, 700)
		}
		return e
	}
	dir := t.TempDir()
	l := openLog(t, dir, o)
	store(t, l, 1, 20, 1, 20)
	var es []*raft.Log
	for i := uint64(21); i <= 25; i++ {
		es = append(es, want(i))
	}
	if err := l.StoreLogs(es); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	path := filepath.Join(dir, segName(1))
	_, recs, _ := parseSeg(t, path)
	r := recs[22]
	if r.index != 23 {
		t.Fatalf("record %d", r.index)
	}
	from := roundUp(r.off+recHdrSize+1, sector)
	patch(t, path, func(b []byte) { clear(b[from:]) })
	expectTorn(t, dir, path, recs[20].off, 20, o, want)
}

func TestTornFirstSector(t *testing.T) {
	// The sector where the batch starts is missing (its part after the
	// last synced record reads as zeros), later sectors are there.
	dir, path, batch := tornSetup(t, small)
	r := batch[0]
	end := roundUp(r.off+1, sector)
	patch(t, path, func(b []byte) { clear(b[r.off:end]) })
	expectTorn(t, dir, path, r.off, 20, small, tornEntry)
}

// TestTornSmallRecordWholeSector: a record inside one sector is written
// whole or not at all; zeros at its end are damage, not a torn write.
func TestTornSmallRecordInOneSector(t *testing.T) {
	dir, path, batch := tornSetup(t, small)
	var r rec
	for _, x := range batch[1:] {
		if x.off/sector == (x.end-1)/sector && usable(x) {
			r = x
			break
		}
	}
	if r.end == 0 {
		t.Skip("no record of the batch lies inside one sector")
	}
	patch(t, path, func(b []byte) { clear(b[r.end-10 : r.end]) })
	expectCorrupt(t, dir, path, r.off)
}

func TestTornOnlyRecordOfSegment(t *testing.T) {
	// The newest segment holds one (big) record, torn: the segment goes.
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 30, 1, 30)
	big := mkEntry(31, 1)
	big.Data = fill(31, 1, 5000)
	if err := l.StoreLog(big); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	path := filepath.Join(dir, segName(31))
	_, recs, _ := parseSeg(t, path)
	r := recs[0]
	s := roundUp(r.off+sector, sector)
	patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
	expectTorn(t, dir, path, r.off, 30, small, func(i uint64) *raft.Log { return mkEntry(i, 1) })
}

func TestTornNotInOlderSegment(t *testing.T) {
	// The same zero sector in a segment that is not the newest is damage.
	dir, path, batch := tornSetup(t, small)
	l := openLog(t, dir, small)
	big := mkEntry(26, 1)
	big.Data = fill(26, 1, 5000) // a segment of its own after path
	if err := l.StoreLog(big); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	r := batch[0]
	s := roundUp(r.off+1, sector)
	patch(t, path, func(b []byte) { clear(b[s : s+sector]) })
	expectCorrupt(t, dir, path, r.off)
}

// ---------------------------------------------------------------------------
// Leftovers

func TestTmpRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 50, 1, 10)
	closeLog(t, l)
	tmp := filepath.Join(dir, segName(51)+".tmp")
	writeFile(t, tmp, append(emptySeg(51, 4096)[:100], 1, 2, 3))
	l = openLog(t, dir, small)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there: %v", tmp, err)
	}
	if r := l.Repaired(); r != nil {
		t.Fatalf("Repaired() = %+v", *r)
	}
	checkBounds(t, l, 1, 50)
	store(t, l, 51, 60, 1, 10)
	l = reopen(t, l, dir, small)
	checkRange(t, l, 1, 60, 1)
}

func TestEmptyNewestSegmentRemoved(t *testing.T) {
	for _, first := range []uint64{51, 80} { // right after the log, or after a gap
		t.Run(fmt.Sprint(first), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, small)
			store(t, l, 1, 50, 1, 10)
			closeLog(t, l)
			path := filepath.Join(dir, segName(first))
			writeFile(t, path, emptySeg(first, 4096))
			l = openLog(t, dir, small)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s still there: %v", path, err)
			}
			if r := l.Repaired(); r != nil {
				t.Fatalf("Repaired() = %+v", *r)
			}
			checkBounds(t, l, 1, 50)
			store(t, l, 51, 55, 1, 5)
			l = reopen(t, l, dir, small)
			checkEntries(t, l, 1, 55, 1)
		})
	}
	// The only segment, empty: the log is empty.
	dir := t.TempDir()
	path := filepath.Join(dir, segName(7))
	writeFile(t, path, emptySeg(7, hdrSize+100))
	l := openLog(t, dir, small)
	checkBounds(t, l, 0, 0)
	if names := walFiles(t, dir); len(names) != 0 {
		t.Fatalf("segments %v", names)
	}
	store(t, l, 3, 4, 1, 2)
	l = reopen(t, l, dir, small)
	checkBounds(t, l, 3, 4)
}

// ---------------------------------------------------------------------------
// Concurrency

// TestConcurrent reads from several goroutines while one appends and
// another deletes prefixes, as raft's replication, main and snapshot
// goroutines do. Run it under -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, small)
	store(t, l, 1, 50, 1, 10)
	const last = 1500

	var wg sync.WaitGroup
	done := make(chan struct{})
	progress := make(chan uint64, 1)

	wg.Add(1)
	go func() { // raft's main goroutine: appends
		defer wg.Done()
		defer close(done)
		defer close(progress)
		for next := uint64(51); next <= last; {
			hi := min(last, next+next%9)
			if err := l.StoreLogs(mkEntries(next, hi, 1)); err != nil {
				t.Errorf("StoreLogs(%d..%d): %v", next, hi, err)
				return
			}
			next = hi + 1
			select {
			case progress <- hi:
			default:
			}
		}
	}()

	wg.Add(1)
	go func() { // the snapshot goroutine: deletes prefixes
		defer wg.Done()
		for hi := range progress {
			first, err := l.FirstIndex()
			if err != nil {
				t.Error(err)
				return
			}
			if hi > first+200 {
				if err := l.DeleteRange(first, hi-200); err != nil {
					t.Errorf("DeleteRange(%d, %d): %v", first, hi-200, err)
					return
				}
			}
		}
	}()

	for g := range 4 { // replication goroutines: read
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var e raft.Log
			for n := 0; n < 20000; n++ {
				select {
				case <-done:
					return
				default:
				}
				first, err1 := l.FirstIndex()
				lastNow, err2 := l.LastIndex()
				if err1 != nil || err2 != nil {
					t.Error(err1, err2)
					return
				}
				if first == 0 || first > lastNow {
					t.Errorf("FirstIndex %d, LastIndex %d", first, lastNow)
					return
				}
				i := first + rng.Uint64N(lastNow-first+1)
				if n%2 == 0 {
					i = lastNow - min(rng.Uint64N(8), lastNow-first) // the newest entries
				}
				err := l.GetLog(i, &e)
				switch {
				case err == nil:
					if d := diffEntry(&e, mkEntry(i, 1)); d != nil {
						t.Error(d)
						return
					}
				case errors.Is(err, raft.ErrLogNotFound):
					// Only if a prefix delete took it meanwhile.
					if f, _ := l.FirstIndex(); i >= f {
						t.Errorf("GetLog(%d): not found, but FirstIndex is %d", i, f)
						return
					}
				default:
					t.Errorf("GetLog(%d): %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	first, _ := l.FirstIndex()
	checkBounds(t, l, first, last)
	if first == 1 {
		t.Fatal("no prefix was deleted")
	}
	checkRange(t, l, first, last, 1)
	l = reopen(t, l, dir, small)
	first2, _ := l.FirstIndex()
	if first2 > first {
		t.Fatalf("FirstIndex %d after reopen, was %d", first2, first)
	}
	checkEntries(t, l, first2, last, 1)
	closeLog(t, l)
	checkFiles(t, dir)
}

// ---------------------------------------------------------------------------
// raft

// raft v1.7.3 ships no generic LogStore conformance suite (its bench
// package only has benchmarks), so this runs the store under raft itself:
// a single node bootstraps, applies commands, snapshots (raft compacts the
// log with DeleteRange), restarts on the reopened log, and replays it.

type countFSM struct {
	mu sync.Mutex
	n  uint64
}

func (f *countFSM) Apply(*raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return f.n
}

func (f *countFSM) count() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return countSnap(f.n), nil
}

func (f *countFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	f.n = binary.BigEndian.Uint64(b[:])
	f.mu.Unlock()
	return nil
}

type countSnap uint64

func (s countSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnap) Release() {}

func startRaft(t *testing.T, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, fsm raft.FSM, bootstrap bool) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.TrailingLogs = 10
	conf.SnapshotThreshold = math.MaxUint64 >> 1
	conf.SnapshotInterval = time.Hour
	conf.Logger = hclog.NewNullLogger()
	addr, trans := raft.NewInmemTransport("n1")
	r, err := raft.NewRaft(conf, fsm, logs, stable, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	if bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for r.State() != raft.Leader {
		select {
		case <-r.LeaderCh():
		case <-timeout.C:
			t.Fatal("no leader")
		}
	}
	return r
}

func TestRaftSingleNode(t *testing.T) {
	dir := t.TempDir()
	o := raftlog.Options{SegmentSize: 4096}
	logs := openLog(t, dir, o)
	stable := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	fsm := &countFSM{}
	r := startRaft(t, logs, stable, snaps, fsm, true)
	apply := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if err := r.Apply(fill(uint64(i), 9, 100), 5*time.Second).Error(); err != nil {
				t.Fatalf("Apply %d: %v", i, err)
			}
		}
	}
	apply(1, 100)
	if err := r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, _ := logs.FirstIndex()
	if first <= 1 {
		t.Fatalf("FirstIndex %d after a snapshot: raft did not compact", first)
	}
	apply(101, 120)
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if n := fsm.count(); n != 120 {
		t.Fatalf("FSM applied %d commands", n)
	}
	lastIndex := r.LastIndex()
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}

	logs = reopen(t, logs, dir, o)
	first, _ = logs.FirstIndex()
	last, _ := logs.LastIndex()
	if last != lastIndex || first == 0 || first > last {
		t.Fatalf("reopened log holds %d..%d, raft's last index was %d", first, last, lastIndex)
	}
	commands := 0
	for i := first; i <= last; i++ {
		var e raft.Log
		if err := logs.GetLog(i, &e); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if e.Type == raft.LogCommand {
			commands++
		}
	}
	if commands < 20 {
		t.Fatalf("only %d commands in %d..%d", commands, first, last)
	}

	// Restart on the reopened log: the snapshot plus the log's tail give
	// the same state.
	fsm2 := &countFSM{}
	r = startRaft(t, logs, stable, snaps, fsm2, false)
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if n := fsm2.count(); n != 120 {
		t.Fatalf("after restart the FSM holds %d commands, want 120", n)
	}
	apply(121, 125)
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptLengthDefaultSegment: the same damage as in
// TestCorruptNewestRecordLengthBeyondFile, in a default-size (16 MiB,
// mostly zeros) segment.
func TestCorruptLengthDefaultSegment(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, raftlog.Options{NoSync: true})
	store(t, l, 1, 10, 1, 10)
	closeLog(t, l)
	path := filepath.Join(dir, segName(1))
	_, recs, _ := parseSeg(t, path)
	r := recs[len(recs)-1]
	patch(t, path, func(b []byte) { b[r.off+1] ^= 0x10 }) // +1 MiB: inside the file
	expectCorrupt(t, dir, path, r.off)
}
