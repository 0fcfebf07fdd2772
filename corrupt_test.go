package accord

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/internal/raftlog"
)

// Damaged data directories: each case takes a healthy directory (data, two
// snapshots, log entries after the newest, the raft log in several
// segments), damages it, and checks that Open refuses it with ErrCorrupt or
// ErrForeignDir, without panicking, without starting, and without changing
// a byte of it; or, for what is not damage (a crash's leftovers), that it
// starts with every acknowledged write.

const (
	corruptNode    = "corrupt-node"
	corruptCluster = "corrupt-cluster"
	corruptMarker  = "corrupt-value-"
	corruptPage    = 4096 // raft.db's page size

	// The stores of these tests write raft log segments of
	// corruptSegmentSize (Options.logSegmentSize), a few entries each. On
	// top of that corruptBuild rewrites the base directory's log
	// (corruptWriteLog) into a layout the cases can rely on: sealed
	// segments of corruptSegmentSize and a newest segment of
	// corruptNewestSize that holds the last corruptNewestEntries entries
	// and has room to append.
	corruptSegmentSize   = 4096
	corruptNewestSize    = 64 << 10
	corruptNewestEntries = 5
)

// The segment format of internal/raftlog (see its package comment), read
// and written here on its own, so that the tests check the documented
// format rather than the code's idea of it.
const (
	corruptWALHeader  = 40                    // magic, version, first index, created size, CRC-32C
	corruptWALRecHdr  = 8                     // u32 payload length, u32 CRC-32C of the payload
	corruptWALFixed   = 8 + 8 + 1 + 8 + 4 + 4 // index, term, type, appended-at, extensions length, batch
	corruptWALEnd     = 1 << 31               // in the batch field: the last entry of its batch
	corruptWALSector  = 512
	corruptWALPattern = "*.wal"
)

var corruptCastagnoli = crc32.MakeTable(crc32.Castagnoli)

func corruptOpts() *Options {
	return &Options{
		ElectionTimeout: 50 * time.Millisecond,
		NodeID:          corruptNode,
		ClusterName:     corruptCluster,
		TrailingLogs:    2, // snapshots truncate the log, as in production
		logSegmentSize:  corruptSegmentSize,
	}
}

// corruptBase is a closed, healthy data directory and what was
// acknowledged in it.
type corruptBase struct {
	dir   string
	rev   int64             // the last acknowledged revision
	acked map[string]string // key -> value, every key written once
	// Copies of its kv.db taken along the way (Backup, trailer cut):
	// before the newest snapshot, and after it but before the last writes.
	olderKV, laggingKV string
}

// corruptBackupKV writes a Backup of s, without its SHA-256 trailer (a
// plain kv.db), to a new file and returns its path.
func corruptBackupKV(t *testing.T, ctx context.Context, s *Store) string {
	t.Helper()
	var b bytes.Buffer
	if err := s.Backup(ctx, &b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), kvDBName)
	if err := os.WriteFile(path, b.Bytes()[:b.Len()-sha256.Size], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func corruptBuild(t *testing.T) *corruptBase {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b := &corruptBase{dir: t.TempDir(), acked: make(map[string]string)}
	s, err := Open(b.dir, corruptOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(n int) {
		for range n {
			key := fmt.Sprintf("k/%03d", len(b.acked))
			// Long values: a sealed segment holds only a few entries.
			val := corruptMarker + key + "-" + strings.Repeat("v", 300)
			r, err := s.Put(ctx, key, []byte(val))
			if err != nil {
				t.Fatal(err)
			}
			b.acked[key], b.rev = val, r.Revision
		}
	}
	put(10)
	persistSnapshot(t, s)
	put(5)
	b.olderKV = corruptBackupKV(t, ctx, s)
	put(5)
	persistSnapshot(t, s)
	b.laggingKV = corruptBackupKV(t, ctx, s)
	put(30)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(persistSnapshots(t, b.dir)); n != 2 {
		t.Fatalf("base has %d snapshots, want 2", n)
	}
	// The disk guard's reserve is not state, and at 4 MiB it would make
	// every copy and hash of the directory slow. Open allocates it again.
	if err := os.Remove(filepath.Join(b.dir, diskReserveName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	logDir := filepath.Join(b.dir, raftLogDir)
	corruptWriteLog(t, logDir, corruptReadLog(t, logDir))
	// The cases rely on this layout: an oldest segment the newest
	// snapshot covers, a sealed segment holding the first entry after the
	// snapshot, a sealed segment wholly after it, and the newest.
	segs := corruptSegments(t, b.dir)
	_, snapIdx := corruptNewestSnapshot(t, b.dir)
	var layout []string
	for _, sg := range segs {
		layout = append(layout, fmt.Sprintf("%s [%d, %d] %d bytes", filepath.Base(sg.path), sg.first, sg.last().index, sg.size))
	}
	n := len(segs)
	if n < 4 || segs[0].last().index > snapIdx || segs[n-2].first <= snapIdx+1 || corruptSegmentOf(segs, snapIdx+1) == n-1 {
		t.Fatalf("base log layout does not suit the cases (snapshot at %d):\n%s", snapIdx, strings.Join(layout, "\n"))
	}
	t.Logf("base: snapshot at %d, log segments:\n%s", snapIdx, strings.Join(layout, "\n"))
	return b
}

// corruptCopyTree copies the regular files and directories of src into
// dst. Runs of zeros are left as holes: segment files are sparse, and a
// copy that allocates them all would make every case slow.
func corruptCopyTree(t *testing.T, src, dst string) {
	t.Helper()
	const chunk = 4096
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		for off := 0; off < len(b) && err == nil; off += chunk {
			if c := b[off:min(off+chunk, len(b))]; !corruptAllZero(c) {
				_, err = f.WriteAt(c, int64(off))
			}
		}
		if err == nil {
			err = f.Truncate(int64(len(b)))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// corruptHashTree describes every file and directory under dir with a hash of its
// contents and its mode.
func corruptHashTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			fmt.Fprintf(&b, "%s/ %v\n", rel, fi.Mode())
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %x\n", rel, fi.Mode(), len(data), sha256.Sum256(data))
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return b.String()
}

// corruptNewestSnapshot returns the directory of the newest snapshot and
// its index.
func corruptNewestSnapshot(t *testing.T, dir string) (string, uint64) {
	t.Helper()
	snap, err := checkSnapshots(dir)
	if err != nil || snap == nil {
		t.Fatalf("newest snapshot of %s: %v, %v", dir, snap, err)
	}
	return snap.dir, snap.meta.Index
}

func corruptFlip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("flip %s at %d: %v", path, off, err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

func corruptWriteAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// corruptBoltRoot returns the page of raft.db that holds its root bucket
// in the newest transaction: with the log gone from raft.db, the page with
// raft's term and vote (their buckets are inline).
func corruptBoltRoot(t *testing.T, dbPath string) int64 {
	t.Helper()
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	// bbolt's meta page: a 16-byte page header, then magic, version,
	// page size, flags, root bucket (page, sequence), freelist, high
	// water mark, txid, checksum.
	var root, txid uint64
	for i := range 2 {
		m := data[i*corruptPage+16:]
		if id := binary.NativeEndian.Uint64(m[48:]); id >= txid {
			txid, root = id, binary.NativeEndian.Uint64(m[16:])
		}
	}
	if root < 2 || int(root+1)*corruptPage > len(data) ||
		!bytes.Contains(data[root*corruptPage:(root+1)*corruptPage], keyCurrentTerm) {
		t.Fatalf("raft.db: root page %d (of %d bytes) does not hold the current term", root, len(data))
	}
	return int64(root)
}

func corruptEditManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// corruptRec is a record of a segment file.
type corruptRec struct {
	off, end int64 // header included
	index    uint64
	term     uint64
	typ      raft.LogType
	batch    uint32 // position in its batch, corruptWALEnd on the batch's last entry
	raw      []byte // the record, header included
}

// corruptSeg is a segment file of the raft log and its records.
type corruptSeg struct {
	path  string
	first uint64
	size  int64
	recs  []corruptRec
}

func (s corruptSeg) last() corruptRec { return s.recs[len(s.recs)-1] }

// corruptSegments reads the raft log segments of the healthy directory dir,
// oldest first.
func corruptSegments(t *testing.T, dir string) []corruptSeg {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, raftLogDir, corruptWALPattern))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths) // %020d: by first index
	var segs []corruptSeg
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < corruptWALHeader {
			t.Fatalf("%s: %d bytes", p, len(data))
		}
		s := corruptSeg{path: p, first: binary.BigEndian.Uint64(data[16:]), size: int64(len(data))}
		if created := int64(binary.BigEndian.Uint64(data[24:])); created != s.size {
			t.Fatalf("%s: %d bytes, created with %d", p, s.size, created)
		}
		for off := int64(corruptWALHeader); off+corruptWALRecHdr <= s.size; {
			n := int64(binary.BigEndian.Uint32(data[off:]))
			if n == 0 {
				break
			}
			end := off + corruptWALRecHdr + n
			if n < corruptWALFixed || end > s.size {
				t.Fatalf("%s: record at %d has length %d", p, off, n)
			}
			pl := data[off+corruptWALRecHdr : end]
			if crc32.Checksum(pl, corruptCastagnoli) != binary.BigEndian.Uint32(data[off+4:]) {
				t.Fatalf("%s: record at %d fails its checksum", p, off)
			}
			pl = bytes.Clone(pl)
			raftlog.Mask(pl) // stored masked
			s.recs = append(s.recs, corruptRec{off: off, end: end, index: binary.BigEndian.Uint64(pl),
				term: binary.BigEndian.Uint64(pl[8:]), typ: raft.LogType(pl[16]), batch: binary.BigEndian.Uint32(pl[29:]), raw: data[off:end]})
			off = end
		}
		if len(s.recs) > 0 && !corruptAllZero(data[s.last().end:]) {
			t.Fatalf("%s: data after the last record", p)
		}
		if len(s.recs) == 0 {
			t.Fatalf("%s: no records", p)
		}
		segs = append(segs, s)
	}
	return segs
}

// corruptAllZero reports whether b is all zeros. (bytes.Equal is not
// instrumented by the race detector; a loop over a 16 MiB segment is, and
// takes a second.)
func corruptAllZero(b []byte) bool {
	var zeros [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// corruptSegmentOf returns the position in segs of the segment holding
// index, or -1.
func corruptSegmentOf(segs []corruptSeg, index uint64) int {
	for i, s := range segs {
		if s.first <= index && index <= s.last().index {
			return i
		}
	}
	return -1
}

// corruptSegPath is where segment s of a copy of the base lives in dir.
func corruptSegPath(dir string, s corruptSeg) string {
	return filepath.Join(dir, raftLogDir, filepath.Base(s.path))
}

// corruptReseal recomputes the checksum of record r of the segment at
// path, after a test changed its payload.
func corruptReseal(t *testing.T, path string, r corruptRec) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := crc32.Checksum(data[r.off+corruptWALRecHdr:r.end], corruptCastagnoli)
	corruptWriteAt(t, path, r.off+4, binary.BigEndian.AppendUint32(nil, sum))
}

// corruptZeroSector reports whether data[off:end], split at the file's
// 512-byte sector boundaries, has a piece that is all zeros: what raftlog
// takes for a write that a crash cut short.
func corruptZeroSector(data []byte, off, end int64) bool {
	for start := off; start < end; {
		next := min((start/corruptWALSector+1)*corruptWALSector, end)
		if corruptAllZero(data[start:next]) {
			return true
		}
		start = next
	}
	return false
}

// corruptReadLog returns every entry of the raft log in logDir (a closed,
// healthy directory), gaps left out.
func corruptReadLog(t *testing.T, logDir string) []*raft.Log {
	t.Helper()
	l, err := raftlog.Open(logDir, raftlog.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, err := l.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := l.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []*raft.Log
	for i := first; i <= last && last > 0; i++ {
		e := new(raft.Log)
		if err := l.GetLog(i, e); errors.Is(err, raft.ErrLogNotFound) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no entries", logDir)
	}
	return out
}

// corruptWriteLog replaces the raft log in logDir with entries (ascending,
// possibly with gaps), written by raftlog itself: sealed segments of
// corruptSegmentSize and, when the last corruptNewestEntries entries are
// contiguous, a newest segment of corruptNewestSize holding them. Each
// segment is what raftlog makes; only their sizes differ.
func corruptWriteLog(t *testing.T, logDir string, entries []*raft.Log) {
	t.Helper()
	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	store := func(dir string, size int64, es []*raft.Log) {
		l, err := raftlog.Open(dir, raftlog.Options{SegmentSize: size, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		// One entry a batch, as a node that applies one write at a time
		// stores them: a batch never straddles two segments, so that is
		// what fills segments entry by entry. A gap starts a new segment.
		for _, e := range es {
			if err := l.StoreLogs([]*raft.Log{e}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n := len(entries)
	tail := min(corruptNewestEntries, n)
	if entries[n-1].Index-entries[n-tail].Index != uint64(tail-1) {
		tail = 0
	}
	store(logDir, corruptSegmentSize, entries[:n-tail])
	if tail == 0 {
		return
	}
	tmp := t.TempDir()
	store(tmp, corruptNewestSize, entries[n-tail:])
	names, err := filepath.Glob(filepath.Join(tmp, corruptWALPattern))
	if err != nil || len(names) != 1 {
		t.Fatalf("newest segment: %v, %v", names, err)
	}
	if err := os.Rename(names[0], filepath.Join(logDir, filepath.Base(names[0]))); err != nil {
		t.Fatal(err)
	}
}

// corruptDeleteLogs removes log entries [from, to] from a closed
// directory: the log is written again without them (raftlog deletes only a
// prefix or a suffix).
func corruptDeleteLogs(t *testing.T, dir string, from, to func(first, last, snap uint64) uint64) {
	t.Helper()
	_, snapIdx := corruptNewestSnapshot(t, dir)
	logDir := filepath.Join(dir, raftLogDir)
	entries := corruptReadLog(t, logDir)
	first, last := entries[0].Index, entries[len(entries)-1].Index
	lo, hi := from(first, last, snapIdx), to(first, last, snapIdx)
	if lo < first || hi >= last || lo > hi {
		t.Fatalf("bad range [%d, %d] for log [%d, %d], snapshot %d", lo, hi, first, last, snapIdx)
	}
	kept := slices.DeleteFunc(entries, func(e *raft.Log) bool { return lo <= e.Index && e.Index <= hi })
	corruptWriteLog(t, logDir, kept)
	t.Logf("log was [%d, %d], snapshot at %d; deleted [%d, %d]", first, last, snapIdx, lo, hi)
}

// corruptLogRecorder is a slog handler that keeps what Open logs.
type corruptLogRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (h *corruptLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *corruptLogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *corruptLogRecorder) WithGroup(string) slog.Handler            { return h }

func (h *corruptLogRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, b.String())
	h.mu.Unlock()
	return nil
}

func (h *corruptLogRecorder) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.lines, "\n")
}

// corruptOpenOutcome is how Open treated a directory.
type corruptOutcome int

const (
	corruptRefused           corruptOutcome = iota // refused with ErrCorrupt
	corruptForeign                                 // refused with ErrForeignDir
	corruptRefusedOrComplete                       // refused with ErrCorrupt, or started with every acknowledged write
	corruptComplete                                // started with every acknowledged write (not damage)
)

func TestCorruptDataDir(t *testing.T) {
	base := corruptBuild(t)
	metaJSON := func(dir string) string {
		sd, _ := corruptNewestSnapshot(t, dir)
		return filepath.Join(sd, "meta.json")
	}
	stateBin := func(dir string) string {
		sd, _ := corruptNewestSnapshot(t, dir)
		return filepath.Join(sd, "state.bin")
	}
	dbPath := func(dir string) string { return filepath.Join(dir, raftDBName) }
	root := corruptBoltRoot(t, dbPath(base.dir))
	kvPath := func(dir string) string { return filepath.Join(dir, kvDBName) }
	kv := corruptKVLayout(t, kvPath(base.dir))
	otherNode := corruptForeignKV(t, "other-node", corruptCluster)
	otherCluster := corruptForeignKV(t, corruptNode, "other-cluster")

	// The raft log of the base (the same in every copy): segs[0] is
	// covered by the newest snapshot, sealed is the newest sealed segment
	// (entries after the snapshot only), newest the newest segment.
	segs := corruptSegments(t, base.dir)
	_, snapIdx := corruptNewestSnapshot(t, base.dir)
	sealed, newest := segs[len(segs)-2], segs[len(segs)-1]
	segPath := corruptSegPath
	rel := func(s corruptSeg) string { return filepath.Join(raftLogDir, filepath.Base(s.path)) }
	// pick returns a record of s (of type typ, if not 0) near its middle
	// that raftlog's torn-write rule cannot take for a torn write (no
	// piece of it between sector boundaries is all zeros), so that damage
	// to it must be refused in the newest segment too.
	pick := func(t *testing.T, s corruptSeg, typ raft.LogType) corruptRec {
		t.Helper()
		data, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		for d := 0; d < len(s.recs); d++ {
			for _, i := range []int{len(s.recs)/2 + d, len(s.recs)/2 - d} {
				if i < 0 || i >= len(s.recs) {
					continue
				}
				r := s.recs[i]
				if (typ == 0 || r.typ == typ) && !corruptZeroSector(data, r.off, r.end) {
					return r
				}
			}
		}
		t.Fatalf("%s: no suitable record", s.path)
		return corruptRec{}
	}
	// noZeroSector checks that damage to record r of the segment at path
	// left no zero sector in it: the damage is not a torn write.
	noZeroSector := func(t *testing.T, path string, r corruptRec) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if corruptZeroSector(data, r.off, r.end) {
			t.Fatalf("the damage made a zero sector in the record at %d of %s", r.off, path)
		}
	}
	truncate := func(t *testing.T, path string, size int64) {
		t.Helper()
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(t *testing.T, path string) {
		t.Helper()
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		opts   func(o *Options)
		want   corruptOutcome
		path   string // the file the CorruptError names, relative to the directory (if set)
		reason string // in the CorruptError's reason (if set)
		// check runs after a start (corruptComplete), with what Open
		// logged.
		check func(t *testing.T, dir, logged string)
	}{
		// raft.db: raft's term and vote only.
		{name: "RaftDBMissing", path: raftDBName, damage: func(t *testing.T, dir string) {
			remove(t, dbPath(dir))
		}},
		{name: "RaftDBEmpty", path: raftDBName, damage: func(t *testing.T, dir string) {
			truncate(t, dbPath(dir), 0)
		}},
		{name: "RaftDBTruncatedBeforeRoot", path: raftDBName, damage: func(t *testing.T, dir string) {
			// Down to the page that holds the term and vote. (Half of
			// the file, as when raft.db held the log, is meaningless now:
			// raft.db is a few pages, and half of it often cuts only
			// pages past bolt's high water mark, which hold nothing.)
			truncate(t, dbPath(dir), root*corruptPage)
		}},
		{name: "RaftDBRootPageFlagsFlipped", path: raftDBName, damage: func(t *testing.T, dir string) {
			corruptFlip(t, dbPath(dir), root*corruptPage+8, 2)
		}},
		{name: "RaftDBRootPageZeroed", path: raftDBName, damage: func(t *testing.T, dir string) {
			corruptWriteAt(t, dbPath(dir), root*corruptPage, make([]byte, corruptPage))
		}},
		{name: "BoltMetaPage0Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			corruptFlip(t, dbPath(dir), 16+8, 16) // inside meta 0, after the page header
		}},
		{name: "BoltMetaPage1Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			corruptFlip(t, dbPath(dir), corruptPage+16+8, 16)
		}},

		// The raft log: which entries are there.
		{name: "RaftLogMissing", path: raftLogDir, damage: func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, raftLogDir))
		}},
		{name: "RaftLogOldestSegmentMissing", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Entries the newest snapshot covers: raft would have
			// compacted them. Not damage.
			remove(t, segPath(dir, segs[0]))
		}},
		{name: "RaftLogSegmentsMissingUpToSnapshot", path: raftLogDir, reason: "log starts at index", damage: func(t *testing.T, dir string) {
			for _, s := range segs[:corruptSegmentOf(segs, snapIdx+1)+1] {
				remove(t, segPath(dir, s))
			}
		}},
		{name: "RaftLogSealedSegmentMissing", path: raftLogDir, reason: "unreadable", damage: func(t *testing.T, dir string) {
			remove(t, segPath(dir, sealed))
		}},
		{name: "LogDoesNotJoinSnapshot", path: raftLogDir, reason: "log starts at index", damage: func(t *testing.T, dir string) {
			corruptDeleteLogs(t, dir,
				func(first, _, _ uint64) uint64 { return first },
				func(_, _, snap uint64) uint64 { return snap + 1 })
		}},
		{name: "LogGapAfterSnapshot", path: raftLogDir, reason: "unreadable", damage: func(t *testing.T, dir string) {
			corruptDeleteLogs(t, dir,
				func(_, _, snap uint64) uint64 { return snap + 3 },
				func(_, _, snap uint64) uint64 { return snap + 5 })
		}},
		{name: "RaftLogStrayFile", path: filepath.Join(raftLogDir, "copy.wal"), reason: "not a segment file name", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, raftLogDir, "copy.wal"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},

		// The raft log: damage to a segment.
		{name: "RaftLogSealedRecordByteFlipped", path: rel(sealed), reason: "checksum", damage: func(t *testing.T, dir string) {
			r := pick(t, sealed, 0)
			corruptFlip(t, segPath(dir, sealed), (r.off+r.end)/2, 1)
		}},
		{name: "RaftLogNewestRecordByteFlipped", path: rel(newest), reason: "checksum", damage: func(t *testing.T, dir string) {
			r := pick(t, newest, 0)
			corruptFlip(t, segPath(dir, newest), (r.off+r.end)/2, 1)
			noZeroSector(t, segPath(dir, newest), r)
		}},
		{name: "RaftLogNewestLastRecordByteFlipped", path: rel(newest), reason: "checksum", damage: func(t *testing.T, dir string) {
			// Acknowledged like the others: damage, not a torn write.
			r := newest.last()
			corruptFlip(t, segPath(dir, newest), r.end-1, 1)
			noZeroSector(t, segPath(dir, newest), r)
		}},
		{name: "RaftLogNewestSectorZeroedBeforeLaterBatch", path: rel(newest), reason: "later batch", damage: func(t *testing.T, dir string) {
			// What a torn write would leave, but in a batch that later
			// batches (synced after it) follow: damage. (Before batches
			// were marked, Open cut the log there.)
			last := newest.last()
			if last.batch&corruptWALEnd == 0 {
				t.Fatalf("the newest segment's last record %d does not end a batch", last.index)
			}
			for _, r := range newest.recs {
				if s := r.off / corruptWALSector * corruptWALSector; s >= corruptWALSector && s+corruptWALSector <= last.off && r.batch == corruptWALEnd {
					corruptWriteAt(t, segPath(dir, newest), s, make([]byte, corruptWALSector))
					return
				}
			}
			t.Fatalf("%s: no record of a batch of its own with a sector to zero before the last", newest.path)
		}},
		{name: "RaftLogSealedHeaderFlipped", path: rel(sealed), reason: "header", damage: func(t *testing.T, dir string) {
			corruptFlip(t, segPath(dir, sealed), 20, 1) // in the first index
		}},
		{name: "RaftLogNewestHeaderFlipped", path: rel(newest), reason: "not a raft log segment", damage: func(t *testing.T, dir string) {
			corruptFlip(t, segPath(dir, newest), 0, 1) // in the magic
		}},
		{name: "RaftLogSealedTruncatedToHalf", path: rel(sealed), reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, segPath(dir, sealed), sealed.size/2)
		}},
		{name: "RaftLogSealedTruncatedAtRecord", path: rel(sealed), reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, segPath(dir, sealed), sealed.last().off) // without its last entry
		}},
		{name: "RaftLogNewestTruncatedAtRecord", path: rel(newest), reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, segPath(dir, newest), newest.last().off)
		}},
		{name: "RaftLogNewestTruncatedAfterLastRecord", path: rel(newest), reason: "truncated", damage: func(t *testing.T, dir string) {
			// Nothing lost, but a segment never changes size: refused.
			truncate(t, segPath(dir, newest), newest.last().end)
		}},
		{name: "RaftLogSealedGarbageAfterLastRecord", path: rel(sealed), reason: "after the last record", damage: func(t *testing.T, dir string) {
			corruptWriteAt(t, segPath(dir, sealed), sealed.last().end+corruptWALRecHdr, []byte("garbage"))
		}},
		{name: "RaftLogSealedRecordClaimsWrongIndex", path: rel(sealed), reason: "claims index", damage: func(t *testing.T, dir string) {
			r := pick(t, sealed, 0)
			corruptWriteAt(t, segPath(dir, sealed), r.off+corruptWALRecHdr, binary.BigEndian.AppendUint64(nil, r.index+1))
			corruptReseal(t, segPath(dir, sealed), r)
		}},
		{name: "RaftLogNewestRecordClaimsWrongIndex", path: rel(newest), reason: "claims index", damage: func(t *testing.T, dir string) {
			r := pick(t, newest, 0)
			corruptWriteAt(t, segPath(dir, newest), r.off+corruptWALRecHdr, binary.BigEndian.AppendUint64(nil, r.index-1))
			corruptReseal(t, segPath(dir, newest), r)
			noZeroSector(t, segPath(dir, newest), r)
		}},
		{name: "RaftLogCommandChangedAndResealed", path: raftLogDir, reason: "fails its checksum", damage: func(t *testing.T, dir string) {
			// The record's CRC matches again: only accord's own checksum
			// of the command (in the entry's Extensions) tells.
			r := pick(t, sealed, raft.LogCommand)
			data, err := os.ReadFile(segPath(dir, sealed))
			if err != nil {
				t.Fatal(err)
			}
			pl := bytes.Clone(data[r.off+corruptWALRecHdr : r.end])
			raftlog.Mask(pl) // stored masked
			i := bytes.Index(pl, []byte("vvvv"))
			if i < 0 {
				t.Fatalf("record at %d holds no value", r.off)
			}
			// A bit flipped on disk flips the same bit of the value: v -> w.
			at := r.off + corruptWALRecHdr + int64(i)
			corruptWriteAt(t, segPath(dir, sealed), at, []byte{data[at] ^ 'v' ^ 'w'})
			corruptReseal(t, segPath(dir, sealed), r)
		}},

		// The raft log: what a crash leaves. Not damage.
		{name: "RaftLogTornTail", want: corruptComplete, damage: func(t *testing.T, dir string) {
			corruptTornTail(t, segPath(dir, newest), newest.last())
		}, check: func(t *testing.T, dir, logged string) {
			if !strings.Contains(logged, "torn tail") {
				t.Errorf("Open did not report the torn tail; it logged:\n%s", logged)
			}
			// All is well formed again, and no entry holds the torn data
			// (the store has written entries of its own since).
			for _, sg := range corruptSegments(t, dir) {
				for _, r := range sg.recs {
					pl := bytes.Clone(r.raw[corruptWALRecHdr:])
					raftlog.Mask(pl)
					if bytes.Contains(pl, []byte(corruptTornData)) {
						t.Errorf("the torn write is still in %s, record at %d", sg.path, r.off)
					}
				}
			}
		}},
		{name: "RaftLogLeftoverSegmentTmp", want: corruptComplete, damage: func(t *testing.T, dir string) {
			tmp := filepath.Join(dir, raftLogDir, fmt.Sprintf("%020d.wal.tmp", newest.last().index+1))
			if err := os.WriteFile(tmp, []byte("a segment whose creation did not finish"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, check: func(t *testing.T, dir, _ string) {
			if m, _ := filepath.Glob(filepath.Join(dir, raftLogDir, "*.tmp")); len(m) > 0 {
				t.Errorf("left over: %v", m)
			}
		}},

		// Snapshots.
		{name: "SnapshotStateTruncated", damage: func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(dir))
			if err != nil {
				t.Fatal(err)
			}
			truncate(t, stateBin(dir), fi.Size()-1)
		}},
		{name: "SnapshotStateEmpty", damage: func(t *testing.T, dir string) {
			truncate(t, stateBin(dir), 0)
		}},
		{name: "SnapshotStateByteFlipped", damage: func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(dir))
			if err != nil {
				t.Fatal(err)
			}
			corruptFlip(t, stateBin(dir), fi.Size()/2, 1)
		}},
		// The newest snapshot's data is kv.db: without its marker it is what
		// a crash inside a snapshot install leaves, and kv.db says whether
		// it holds the snapshot (it does here).
		{name: "SnapshotStateMissing", want: corruptComplete, damage: func(t *testing.T, dir string) {
			remove(t, stateBin(dir))
		}},
		{name: "SnapshotMetaGarbage", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(metaJSON(dir), []byte("{\x00garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotMetaEmptyObject", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(metaJSON(dir), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotMetaMissing", damage: func(t *testing.T, dir string) {
			remove(t, metaJSON(dir))
		}},

		// kv.db: the keyspace. Its records carry checksums; bolt's pages
		// do not, but damage to their structure makes bbolt fail or
		// panic, which Open turns into ErrCorrupt.
		{name: "KVDBMissing", path: kvDBName, reason: "missing", damage: func(t *testing.T, dir string) {
			// The log was trimmed up to the newest snapshot: nothing can
			// rebuild it (TestCorruptKVDBRebuiltFromLog: when it can).
			remove(t, kvPath(dir))
		}},
		{name: "KVDBMissingNoSnapshots", path: raftLogDir, reason: "log starts at index", damage: func(t *testing.T, dir string) {
			remove(t, kvPath(dir))
			remove(t, filepath.Join(dir, snapshotsDir))
		}},
		{name: "KVDBEmpty", path: kvDBName, reason: "empty", damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), 0)
		}},
		{name: "KVDBTruncatedToOnePage", path: kvDBName, damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), kv.pageSize) // meta page 1 gone
		}},
		{name: "KVDBTruncatedToMetaPages", path: kvDBName, reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), 2*kv.pageSize)
		}},
		{name: "KVDBTruncatedToHalf", path: kvDBName, reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), kv.hwm/2)
		}},
		{name: "KVDBTruncatedLastPage", path: kvDBName, reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), kv.hwm-kv.pageSize)
		}},
		{name: "KVDBTruncatedMidPage", path: kvDBName, reason: "truncated", damage: func(t *testing.T, dir string) {
			truncate(t, kvPath(dir), kv.hwm-kv.pageSize/2)
		}},
		{name: "KVDBTruncatedToHighWaterMark", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Past bolt's high water mark the file holds nothing.
			truncate(t, kvPath(dir), kv.hwm)
		}},
		{name: "KVDBMetaPage0Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			// bbolt takes the other meta page: the previous transaction,
			// which raft's log brings up to date, or which is behind the
			// snapshot and refused.
			corruptFlip(t, kvPath(dir), 16+8, 16)
		}},
		{name: "KVDBMetaPage1Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			corruptFlip(t, kvPath(dir), kv.pageSize+16+8, 16)
		}},
		{name: "KVDBBothMetaPagesFlipped", path: kvDBName, damage: func(t *testing.T, dir string) {
			corruptFlip(t, kvPath(dir), 16+8, 16)
			corruptFlip(t, kvPath(dir), kv.pageSize+16+8, 16)
		}},
		{name: "KVDBDataPageValueFlipped", path: kvDBName, reason: "record of revision", damage: func(t *testing.T, dir string) {
			corruptFlip(t, kvPath(dir), kv.leaf*kv.pageSize+kv.leafValue, 1)
		}},
		{name: "KVDBDataPageHeaderFlipped", path: kvDBName, damage: func(t *testing.T, dir string) {
			corruptFlip(t, kvPath(dir), kv.leaf*kv.pageSize+8, 2) // the page's flags: not a leaf any more
		}},
		{name: "KVDBDataPageCountFlipped", path: kvDBName, damage: func(t *testing.T, dir string) {
			corruptFlip(t, kvPath(dir), kv.leaf*kv.pageSize+10, 2) // its number of elements
		}},
		{name: "KVDBDataPageZeroed", path: kvDBName, damage: func(t *testing.T, dir string) {
			corruptWriteAt(t, kvPath(dir), kv.leaf*kv.pageSize, make([]byte, kv.pageSize))
		}},
		{name: "KVDBRecordChecksumMismatch", path: kvDBName, reason: "record of revision", damage: func(t *testing.T, dir string) {
			// A well-formed bolt file; one record's value differs from
			// what its checksum field says.
			corruptEditKV(t, kvPath(dir), func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketKey)
				k, v := corruptFindRecord(t, b, "k/025")
				v = bytes.Clone(v)
				i := bytes.Index(v, []byte("vvvv"))
				v[i] = 'w'
				return b.Put(k, v)
			})
		}},
		{name: "KVDBRecordWithoutKey", path: kvDBName, reason: "revision", damage: func(t *testing.T, dir string) {
			corruptEditKV(t, kvPath(dir), func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketKey)
				k, _ := corruptFindRecord(t, b, "k/025")
				return b.Put(k, []byte{})
			})
		}},
		{name: "KVDBBadConsistentIndex", path: kvDBName, reason: "consistent_index", damage: func(t *testing.T, dir string) {
			corruptEditKV(t, kvPath(dir), func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(metaConsistentIndex, []byte{1, 2, 3})
			})
		}},
		{name: "KVDBNoKeyBucket", path: kvDBName, reason: "not a key-value file", damage: func(t *testing.T, dir string) {
			corruptEditKV(t, kvPath(dir), func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketKey) })
		}},
		{name: "KVDBNotBolt", path: kvDBName, damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(kvPath(dir), bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "KVDBOtherNodeSameCluster", want: corruptForeign, damage: func(t *testing.T, dir string) {
			corruptCopyFile(t, otherNode, kvPath(dir))
		}},
		{name: "KVDBOtherCluster", want: corruptForeign, damage: func(t *testing.T, dir string) {
			corruptCopyFile(t, otherCluster, kvPath(dir))
		}},
		{name: "KVDBOlderCopyBeforeSnapshot", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Behind the newest snapshot, but the log still holds the
			// entries in between (raft trims whole segments): Open
			// applies them before raft starts.
			corruptCopyFile(t, base.olderKV, kvPath(dir))
		}, check: func(t *testing.T, _, logged string) {
			if !strings.Contains(logged, "behind the newest snapshot") {
				t.Errorf("Open did not say it brought kv.db up to the snapshot; it logged:\n%s", logged)
			}
		}},
		{name: "KVDBOlderCopyBeforeSnapshotLogTrimmed", path: kvDBName, reason: "older than the newest snapshot", damage: func(t *testing.T, dir string) {
			// The same, with the log trimmed up to the snapshot (as raft
			// does, not damage): nothing holds those entries any more.
			corruptCopyFile(t, base.olderKV, kvPath(dir))
			for _, sg := range segs {
				if sg.last().index <= snapIdx {
					remove(t, segPath(dir, sg))
				}
			}
		}},
		{name: "KVDBOlderCopyAfterSnapshot", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Behind the log, not the snapshot: raft replays the rest.
			corruptCopyFile(t, base.laggingKV, kvPath(dir))
		}},

		// kv.db: what a crash leaves. Not damage.
		{name: "KVDBDefragLeftoverBeforeRename", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// A crash while bbolt.Compact wrote kv.db.defrag: half of it.
			b := corruptCompactKV(t, kvPath(dir))
			if err := os.WriteFile(kvPath(dir)+kvDBDefragSuffix, b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, check: corruptCheckGone(kvDBName + kvDBDefragSuffix)},
		{name: "KVDBDefragCompleteBeforeRename", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Written and synced, not yet renamed.
			if err := os.WriteFile(kvPath(dir)+kvDBDefragSuffix, corruptCompactKV(t, kvPath(dir)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, check: corruptCheckGone(kvDBName + kvDBDefragSuffix)},
		{name: "KVDBDefragAfterRename", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// Renamed over kv.db: the defragmented file is in use.
			if err := os.WriteFile(kvPath(dir), corruptCompactKV(t, kvPath(dir)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "KVDBInstallTmpLeftover", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// A crash while a snapshot from the leader was copied in
			// (copyVerified): half of it, never verified.
			b, err := os.ReadFile(kvPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, kvDBInstallName+kvDBTmpSuffix), b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, check: corruptCheckGone(kvDBInstallName + kvDBTmpSuffix)},
		{name: "KVDBInstallLeftover", want: corruptComplete, damage: func(t *testing.T, dir string) {
			// A crash in the swap: the verified snapshot (kv.db and its
			// SHA-256, holding every write) moved from the newest
			// snapshot's state.bin to kv.db.install; kv.db is the file
			// before it, here an older one.
			corruptWriteInstall(t, dir, kvPath(base.dir))
			remove(t, stateBin(dir))
			corruptCopyFile(t, base.laggingKV, kvPath(dir))
		}, check: corruptCheckGone(kvDBInstallName)},
		{name: "KVDBInstallLeftoverDamaged", path: kvDBInstallName, reason: "record of revision", damage: func(t *testing.T, dir string) {
			// The same, but the file was damaged on disk after it was
			// verified.
			corruptWriteInstall(t, dir, kvPath(base.dir))
			remove(t, stateBin(dir))
			corruptEditKV(t, filepath.Join(dir, kvDBInstallName), func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketKey)
				k, v := corruptFindRecord(t, b, "k/025")
				v = bytes.Clone(v)
				v[bytes.Index(v, []byte("vvvv"))] = 'w'
				return b.Put(k, v)
			})
		}},

		// The manifest.
		{name: "ManifestMissing", damage: func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, manifestName))
		}},
		{name: "ManifestMissingNoSnapshots", damage: func(t *testing.T, dir string) {
			for _, name := range []string{manifestName, snapshotsDir} {
				remove(t, filepath.Join(dir, name))
			}
		}},
		{name: "ManifestMissingOnlyRaftLog", damage: func(t *testing.T, dir string) {
			for _, name := range []string{manifestName, snapshotsDir, raftDBName} {
				remove(t, filepath.Join(dir, name))
			}
		}},
		{name: "ManifestGarbage", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, manifestName), []byte("\x7fELF not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestEmpty", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, manifestName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestNoNodeID", damage: func(t *testing.T, dir string) {
			corruptEditManifest(t, dir, func(m map[string]any) { delete(m, "node_id") })
		}},
		{name: "ManifestOtherNodeID", want: corruptForeign, opts: func(o *Options) { o.NodeID = "someone-else" }},
		{name: "ManifestOtherCluster", want: corruptForeign, opts: func(o *Options) { o.ClusterName = "other-cluster" }},
		{name: "ManifestDefaultCluster", want: corruptForeign, opts: func(o *Options) { o.ClusterName = "" }},
		{name: "ManifestNewerFormat", want: corruptForeign, damage: func(t *testing.T, dir string) {
			corruptEditManifest(t, dir, func(m map[string]any) { m["format"] = formatVersion + 1 })
		}},
	}

	// The undamaged copy opens with everything: each case fails for its
	// damage alone.
	t.Run("Control", func(t *testing.T) {
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		corruptCheckComplete(t, base, dir, corruptOpts())
	})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			o := corruptOpts()
			if tc.opts != nil {
				tc.opts(o)
			}
			logged := new(corruptLogRecorder)
			o.Logger = slog.New(logged)
			before := corruptHashTree(t, dir)
			s, err := corruptOpen(dir, o)
			switch {
			case err == nil && (tc.want == corruptRefusedOrComplete || tc.want == corruptComplete):
				problems := corruptDiff(t, base, s)
				if cerr := s.Close(); cerr != nil {
					t.Errorf("Close: %v", cerr)
				}
				if tc.want == corruptRefusedOrComplete {
					t.Logf("Open started despite the damage; checking every acknowledged write")
				}
				if problems != "" {
					t.Fatalf("Open started without the acknowledged state: %s", problems)
				}
				if tc.check != nil {
					tc.check(t, dir, logged.String())
				}
				return
			case err == nil:
				problems := corruptDiff(t, base, s)
				s.Close()
				t.Fatalf("Open of a damaged directory succeeded; the store serves: %s", problems)
			case tc.want == corruptComplete:
				t.Fatalf("Open: %v; want a start with every acknowledged write", err)
			}
			t.Logf("Open: %v", err)
			switch tc.want {
			case corruptForeign:
				if !errors.Is(err, ErrForeignDir) || errors.Is(err, ErrCorrupt) {
					t.Errorf("want ErrForeignDir, got %v", err)
				}
			default:
				var ce *CorruptError
				switch {
				case !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce):
					t.Errorf("want ErrCorrupt, got %v", err)
				case ce.Path == "" || ce.Reason == "":
					t.Errorf("CorruptError without path or reason: %+v", ce)
				case tc.path != "" && ce.Path != filepath.Join(dir, tc.path):
					t.Errorf("CorruptError names %s, want %s", ce.Path, filepath.Join(dir, tc.path))
				case !strings.Contains(ce.Reason, tc.reason):
					t.Errorf("CorruptError reason %q, want it to say %q", ce.Reason, tc.reason)
				}
			}
			if after := corruptHashTree(t, dir); after != before {
				t.Errorf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// corruptTornData fills the entry of a torn write (corruptTornTail).
const corruptTornData = "torn-write-"

// corruptTornTail appends to the segment at path, after its last record
// last, what a crash during the next append leaves: the record of the next
// entry with one 512-byte sector of it that never reached the disk.
func corruptTornTail(t *testing.T, path string, last corruptRec) {
	t.Helper()
	e := &raft.Log{Index: last.index + 1, Term: last.term, Type: raft.LogCommand,
		Data: []byte(strings.Repeat(corruptTornData, 150)), AppendedAt: time.Now()}
	e.Extensions = logEntrySum(e.Data)
	rec := raftlog.AppendRecord(nil, e)
	s := (last.end/corruptWALSector+1)*corruptWALSector - last.end // the record's first sector boundary
	if s+corruptWALSector > int64(len(rec)) {
		t.Fatalf("torn record of %d bytes at %d has no whole sector", len(rec), last.end)
	}
	clear(rec[s : s+corruptWALSector])
	corruptWriteAt(t, path, last.end, rec)
}

// corruptOpen is Open that turns a panic into a test failure with a
// message, instead of taking the test binary down without saying which
// case did it.
func corruptOpen(dir string, o *Options) (s *Store, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Open panicked: %v", p)
		}
	}()
	return Open(dir, o)
}

// corruptCheckComplete opens dir and checks that every acknowledged write
// of base is there, at the acknowledged revision, and nothing more.
func corruptCheckComplete(t *testing.T, base *corruptBase, dir string, o *Options) {
	t.Helper()
	s, err := corruptOpen(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if problems := corruptDiff(t, base, s); problems != "" {
		t.Error(problems)
	}
}

// corruptDiff describes how the state s serves differs from what base
// acknowledged ("" if it does not).
func corruptDiff(t *testing.T, base *corruptBase, s *Store) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	g, err := s.Get(ctx, "k/", WithPrefix())
	if err != nil {
		return fmt.Sprintf("get: %v", err)
	}
	var problems []string
	if g.Revision != base.rev {
		problems = append(problems, fmt.Sprintf("revision %d, want %d", g.Revision, base.rev))
	}
	got := make(map[string]string)
	for _, kv := range g.KVs {
		got[kv.Key] = string(kv.Value)
	}
	var keys []string
	for k := range base.acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := got[k]; !ok {
			problems = append(problems, k+" missing")
		} else if v != base.acked[k] {
			problems = append(problems, fmt.Sprintf("%s has a different value (%q...)", k, v[:min(len(v), len(corruptMarker)+8)]))
		}
		delete(got, k)
	}
	for k := range got {
		problems = append(problems, k+" was never written")
	}
	return strings.Join(problems, "; ")
}

// TestCorruptFreshDirInterruptedFirstOpen: a first Open that wrote its
// manifest and crashed before creating raft state leaves a directory that
// opens as a new store.
func TestCorruptFreshDirInterruptedFirstOpen(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	m := &manifest{Format: formatVersion, NodeID: "fresh-node", ClusterName: defaultClusterName, Created: time.Now().UTC()}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	o := persistOpts()
	s := openTestStore(t, dir, o)
	if s.NodeID() != "fresh-node" {
		t.Fatalf("NodeID %q, want the one in the manifest", s.NodeID())
	}
	if rev := (persistW{t, ctx, s}).put("k", "v"); rev != 2 {
		t.Fatalf("first write at revision %d, want 2", rev)
	}
	s = persistReopen(t, s, dir, o)
	if g, err := s.Get(ctx, "k"); err != nil || len(g.KVs) != 1 {
		t.Fatalf("after restart: %+v, %v", g, err)
	}
	mm, err := readManifest(dir)
	if err != nil || !mm.Initialized {
		t.Fatalf("manifest after first successful Open: %+v, %v", mm, err)
	}
}

// TestCorruptJoinerClosedBeforeAnyTerm: a node waiting to join is closed
// before it heard from a leader. raft stored only its starting term, 0,
// which is no state: the directory must open again, and stay unmarked.
// (It was marked initialized, and the next Open refused it as emptied.)
func TestCorruptJoinerClosedBeforeAnyTerm(t *testing.T) {
	dir := t.TempDir()
	o := persistOpts()
	o.NodeID = "joiner"
	o.JoinExisting = true
	o.PeerAddr = "127.0.0.1:0"
	o.Peers = []string{"127.0.0.1:9"} // nobody: the node hears no leader
	for range 2 {
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		m, err := readManifest(dir)
		if err != nil || m.Initialized {
			t.Fatalf("manifest after a joiner that heard of no term closed: %+v, %v", m, err)
		}
	}
}

// TestCorruptInterruptedAfterBootstrap: the first Open created raft state
// but crashed before marking the manifest initialized; the state it wrote
// is kept.
func TestCorruptInterruptedAfterBootstrap(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	o := persistOpts()
	s := openTestStore(t, dir, o)
	rev := (persistW{t, ctx, s}).put("k", "v")
	s.Close()
	corruptEditManifest(t, dir, func(m map[string]any) { m["initialized"] = false })
	s = openTestStore(t, dir, o)
	g, err := s.Get(ctx, "k")
	if err != nil || len(g.KVs) != 1 || g.Revision != rev {
		t.Fatalf("after reopen: %+v, %v", g, err)
	}
}

// TestCorruptOpenDoesNotReadForeignFilesAsState: a raft.db that is not a
// bolt file, with no manifest, is refused, not overwritten by a new
// store.
func TestCorruptOpenDoesNotReadForeignFilesAsState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, raftDBName), []byte("not a bolt file at all, just text"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := corruptHashTree(t, dir)
	s, err := corruptOpen(dir, persistOpts())
	if err == nil {
		s.Close()
		t.Fatal("Open of a directory with a foreign raft.db succeeded")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if after := corruptHashTree(t, dir); after != before {
		t.Fatalf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestCorruptLogRecordByteSweep flips single bytes across the records of
// two raft log segments: the sealed one holding the entries on both sides
// of the newest snapshot, and the newest one. In every record: the length,
// the first byte of the payload (the index), the middle and the last byte.
// raftlog checks each record with its CRC, so each flip is refused with
// ErrCorrupt naming the segment, and the directory is left as it was. Its
// torn-write rule applies to the newest segment alone and needs a piece of
// the record between sector boundaries to be all zeros, which one flipped
// byte does not make.
//
// A flip after the last record is refused in a sealed segment (data after
// its end); in the newest it is what a write that never completed leaves
// (never acknowledged): Open zeroes it and starts with every acknowledged
// write.
//
// Records of the newest segment that hold a zero sector of their own are
// not swept: what a flip in one does is TestCorruptLogZeroSectorInValue's.
func TestCorruptLogRecordByteSweep(t *testing.T) {
	base := corruptBuild(t)
	segs := corruptSegments(t, base.dir)
	_, snapIdx := corruptNewestSnapshot(t, base.dir)
	type flip struct {
		seg    corruptSeg
		pos    int64
		record bool // inside a record
		newest bool
	}
	var flips []flip
	for i, sg := range segs {
		newest := i == len(segs)-1
		if !newest && i != corruptSegmentOf(segs, snapIdx+1) {
			continue
		}
		data, err := os.ReadFile(sg.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range sg.recs {
			if newest && corruptZeroSector(data, r.off, r.end) {
				// A record with a zero sector of its own (say, its
				// length's high bytes just before a sector boundary):
				// TestCorruptLogZeroSectorInValue.
				t.Logf("record at %d of %s has a zero sector: not swept", r.off, sg.path)
				continue
			}
			for _, pos := range []int64{r.off, r.off + corruptWALRecHdr, (r.off + r.end) / 2, r.end - 1} {
				flips = append(flips, flip{sg, pos, true, newest})
			}
		}
		end := sg.last().end
		flips = append(flips, flip{sg, end, false, newest}, flip{sg, (end + sg.size) / 2, false, newest})
	}
	if len(flips) > 64 {
		t.Fatalf("%d flips: more than this test should take", len(flips))
	}
	var refused, started int
	for _, f := range flips {
		name := fmt.Sprintf("%s+%d", filepath.Base(f.seg.path), f.pos)
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		path := corruptSegPath(dir, f.seg)
		corruptFlip(t, path, f.pos, 1)
		before := corruptHashTree(t, dir)
		s, err := corruptOpen(dir, corruptOpts())
		if err == nil {
			started++
			problems := corruptDiff(t, base, s)
			if cerr := s.Close(); cerr != nil {
				t.Errorf("%s: Close: %v", name, cerr)
			}
			switch {
			case f.record || !f.newest:
				t.Errorf("%s: Open started (serving: %s); want ErrCorrupt", name, cmp.Or(problems, "every acknowledged write"))
			case problems != "":
				t.Errorf("%s: Open started without the acknowledged state: %s", name, problems)
			default:
				corruptSegments(t, dir) // the flipped byte is gone
			}
			continue
		}
		refused++
		var ce *CorruptError
		switch {
		case !f.record && f.newest:
			t.Errorf("%s (after the last record of the newest segment): %v; want a start", name, err)
		case !errors.As(err, &ce):
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		case ce.Path != path:
			t.Errorf("%s: %v names %s, want %s", name, err, ce.Path, path)
		}
		if corruptHashTree(t, dir) != before {
			t.Errorf("%s: refused Open changed the directory", name)
		}
	}
	t.Logf("%d flips: %d refused, %d started", len(flips), refused, started)
}

// TestCorruptInterruptedReap: raft deletes an old snapshot's files one by
// one; a crash in between leaves an older snapshot without its data or its
// metadata next to a complete newer one. That is not damage: Open starts
// with every acknowledged write and removes the remains (found by the
// chaos harness's crash loop). The same hole in the newest snapshot is
// refused (TestCorruptDataDir: SnapshotStateMissing, SnapshotMetaMissing).
func TestCorruptInterruptedReap(t *testing.T) {
	base := corruptBuild(t)
	for _, gone := range [][]string{{"state.bin"}, {"meta.json"}, {"meta.json", "state.bin"}} {
		t.Run(strings.Join(gone, "+"), func(t *testing.T) {
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			newest, _ := corruptNewestSnapshot(t, dir)
			var old string
			for _, name := range persistSnapshots(t, dir) {
				if sd := filepath.Join(dir, snapshotsDir, name); sd != newest {
					old = sd
				}
			}
			if old == "" {
				t.Fatal("base has no older snapshot")
			}
			for _, f := range gone {
				if err := os.Remove(filepath.Join(old, f)); err != nil {
					t.Fatal(err)
				}
			}
			corruptCheckComplete(t, base, dir, corruptOpts())
			if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remains of the reaped snapshot still there: %v", err)
			}
		})
	}
}

// corruptKV is what the kv.db cases need to know of the base's file.
type corruptKV struct {
	pageSize  int64
	hwm       int64 // bolt's high water mark, in bytes: the pages in use end there
	leaf      int64 // a leaf page of the key bucket in use, holding k/025's record
	leafValue int64 // the offset in that page of a byte of k/025's value
}

func corruptKVLayout(t *testing.T, path string) corruptKV {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// On a copy: bbolt loads the freelist, which tells pages in use
	// from free ones, only for writing.
	cp := filepath.Join(t.TempDir(), kvDBName)
	corruptCopyFile(t, path, cp)
	db, err := bbolt.Open(cp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kv := corruptKV{pageSize: int64(db.Info().PageSize), leaf: -1}
	want := []byte(corruptMarker + "k/025-vvvv")
	err = db.View(func(tx *bbolt.Tx) error {
		kv.hwm = tx.Size()
		for id := 2; int64(id)*kv.pageSize < kv.hwm; id++ {
			pi, err := tx.Page(id)
			if err != nil || pi == nil || pi.Type != "leaf" {
				continue
			}
			pg := data[int64(id)*kv.pageSize : int64(id+1)*kv.pageSize]
			if i := bytes.Index(pg, want); i >= 0 {
				kv.leaf, kv.leafValue = int64(id), int64(i+len(want)-2)
			}
		}
		return nil
	})
	if err != nil || kv.leaf < 0 {
		t.Fatalf("%s: no leaf page in use holds k/025 (%v)", path, err)
	}
	t.Logf("kv.db: %d bytes, page size %d, high water mark %d, k/025 in page %d", len(data), kv.pageSize, kv.hwm, kv.leaf)
	return kv
}

// corruptEditKV changes the bolt file at path in one transaction.
func corruptEditKV(t *testing.T, path string, edit func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(edit)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// corruptFindRecord returns the revision key and record of key's version.
func corruptFindRecord(t *testing.T, b *bbolt.Bucket, key string) ([]byte, []byte) {
	t.Helper()
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if bytes.Contains(v, []byte(corruptMarker+key+"-")) {
			return k, v
		}
	}
	t.Fatalf("no record of %s", key)
	return nil, nil
}

// corruptCompactKV returns what Defragment writes for the kv.db at path.
func corruptCompactKV(t *testing.T, path string) []byte {
	t.Helper()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "compacted.db")
	dst, err := bbolt.Open(out, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bbolt.Compact(dst, src, defragTxMaxSize)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// corruptWriteInstall writes the kv.db at src followed by its SHA-256 (a
// verified snapshot) as dir's kv.db.install.
func corruptWriteInstall(t *testing.T, dir, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(filepath.Join(dir, kvDBInstallName), append(b, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func corruptCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// corruptCheckGone checks, after a start, that Open removed name.
func corruptCheckGone(name string) func(t *testing.T, dir, _ string) {
	return func(t *testing.T, dir, _ string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left over: %v", name, err)
		}
	}
}

// corruptForeignKV returns the kv.db of a store of node in cluster that
// wrote keys like the base's, with other values, up to a higher raft
// index than the base's newest snapshot.
func corruptForeignKV(t *testing.T, node, cluster string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	o := corruptOpts()
	o.NodeID, o.ClusterName = node, cluster
	s, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 60 {
		if _, err := s.Put(ctx, fmt.Sprintf("k/%03d", i), []byte("foreign")); err != nil {
			t.Fatal(err)
		}
	}
	persistSnapshot(t, s)
	return corruptBackupKV(t, ctx, s)
}

// TestCorruptKVDBRebuiltFromLog: a kv.db that is missing, or behind the
// newest snapshot, is rebuilt from the raft log when the log still holds
// every entry it lacks (raft itself replays only the entries after the
// snapshot: Open applies those before it). Every acknowledged write is
// there afterwards, and after another restart.
func TestCorruptKVDBRebuiltFromLog(t *testing.T) {
	ctx := persistCtx(t)
	o := corruptOpts()
	o.TrailingLogs = 10000 // the log keeps every entry
	base := &corruptBase{dir: t.TempDir(), acked: map[string]string{}}
	s, err := Open(base.dir, o)
	if err != nil {
		t.Fatal(err)
	}
	put := func(n int) {
		for range n {
			key := fmt.Sprintf("k/%03d", len(base.acked))
			val := corruptMarker + key
			r, err := s.Put(ctx, key, []byte(val))
			if err != nil {
				t.Fatal(err)
			}
			base.acked[key], base.rev = val, r.Revision
		}
	}
	put(10)
	older := corruptBackupKV(t, ctx, s)
	put(10)
	persistSnapshot(t, s)
	put(10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	kvPath := func(dir string) string { return filepath.Join(dir, kvDBName) }
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"Missing", func(t *testing.T, dir string) {
			if err := os.Remove(kvPath(dir)); err != nil {
				t.Fatal(err)
			}
		}},
		{"MissingNoSnapshots", func(t *testing.T, dir string) {
			for _, p := range []string{kvPath(dir), filepath.Join(dir, snapshotsDir)} {
				if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"OlderCopyBeforeSnapshot", func(t *testing.T, dir string) {
			corruptCopyFile(t, older, kvPath(dir))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			if snap, err := checkSnapshots(dir); err != nil || snap == nil {
				t.Fatalf("base has no snapshot: %v", err)
			}
			tc.damage(t, dir)
			corruptCheckComplete(t, base, dir, o)
			corruptCheckComplete(t, base, dir, o) // and again, from kv.db alone
		})
	}
}
