// Package raftlog is accord's raft log store: a segmented write-ahead log
// that makes each batch of entries durable with one write and one
// fdatasync.
//
// It replaces the log half of raft-boltdb. A bolt commit costs two
// fdatasyncs (the data pages, then the meta page) plus page-tree upkeep,
// and hashicorp raft stores a batch on the leader and again on every
// follower before it commits: four syncs in series on every write. Here it
// is one per node. raft's stable store (term and vote) stays in bolt.
//
// # Layout
//
// A directory of segment files named by the index of their first entry
// (%020d.wal). Each segment is created at its full size (Options.SegmentSize,
// or larger for one entry that needs it) as a sparse file, so that
// everything after the last entry reads as zeros. It starts with a 40-byte
// header (magic, version, first index, file size, CRC-32C) followed by
// records:
//
//	u32 length of payload, u32 CRC-32C of the payload as stored, payload
//	payload: u64 index, u64 term, u8 type, i64 appended-at (unix ns),
//	         u32 length of extensions, extensions, data
//
// The payload is stored masked: XORed with a fixed keystream (Mask), byte
// i of the payload with byte i mod 4096 of the keystream. A value full of
// zeros then puts no run of zeros on the disk, so an all-zero sector inside
// a record can only be one that never reached the disk (see Damage).
//
// A zero length ends the segment. Entries in a segment are contiguous;
// between segments there may be a gap (raft installs a leader's snapshot
// and appends after its index without deleting the entries below it), but
// never an overlap.
//
// A small file, newest, records the first index of the newest segment
// (or 0 for none). It is rewritten (atomically, synced) only when that
// changes: a segment is created, or the newest one removed. A directory
// whose newest segment is gone, or emptied of segments, is refused: the
// entries in it may have been acknowledged.
//
// # Damage
//
// Open reads every record and checks its CRC and index. A bad record is
// damage (a *CorruptError) unless it is the torn tail of the newest
// segment: a write cut short by a crash, recognised as etcd's WAL does by a
// 512-byte sector of the record that is all zeros, a sector that never
// reached the disk (a stored payload, being masked, has none of its own),
// and by no prefix of it matching the record's CRC (a damaged length field
// takes in the zeros after the record, but the record itself is whole). A
// torn tail was never synced, so never acknowledged; Open zeroes it and
// reports it (Repaired). Anything else (a flipped byte, a record claiming
// the wrong index, a damaged header, a segment shorter or longer than it
// was created, data after the end of a sealed segment, overlapping
// segments, a missing newest segment) is refused. As with etcd's WAL, a
// sector of the newest segment zeroed by damage rather than by a crash
// cannot be told from a torn write; Open drops that record and the rest of
// the segment, and says so.
package raftlog

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/fsutil"
)

const (
	// DefaultSegmentSize is the size of a segment file.
	DefaultSegmentSize = 16 << 20

	headerSize    = 40
	recHeaderSize = 8
	payloadFixed  = 8 + 8 + 1 + 8 + 4
	maskSize      = 4096
	segmentExt    = ".wal"
	tmpExt        = ".tmp"
	newestName    = "newest"
	newestSize    = 12 // u64 first index, u32 CRC-32C
	sectorSize    = 512
	// maxRecord bounds a record's length field when reading, so that a
	// damaged length cannot make Open allocate gigabytes.
	maxRecord = 1 << 30
	version   = 1
)

var magic = [8]byte{'a', 'c', 'c', 'r', 'd', 'l', 'o', 'g'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CorruptError reports a segment that Open will not use.
type CorruptError struct {
	Path   string
	Offset int64 // of the damaged record or header; -1 for the file as a whole
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s at offset %d: %s", e.Path, e.Offset, e.Reason)
	}
	return e.Path + ": " + e.Reason
}

// Options tune a Log. The zero value is ready to use.
type Options struct {
	// SegmentSize is the size of a new segment file; DefaultSegmentSize if
	// zero.
	SegmentSize int64
	// NoSync skips fdatasync (tests only: a crash loses writes).
	NoSync bool
	// OnSync, if set, is called after every successful fdatasync of a
	// segment (one per appended batch, one per new segment) with how long
	// it took, for a latency histogram. It runs on the append path: it
	// must be quick and must not block. Default nil.
	OnSync func(time.Duration)
}

// Repair describes a torn tail that Open zeroed.
type Repair struct {
	Path   string
	Offset int64 // where the torn record started
	Bytes  int64 // how many bytes from there were zeroed
}

type segment struct {
	first   uint64
	path    string
	f       *os.File
	size    int64   // file size
	offsets []int64 // offsets[i] is the record of index first+i
	end     int64   // end of the last record
	dirty   int64   // a failed write may have left bytes up to here
}

func (s *segment) last() uint64 { return s.first + uint64(len(s.offsets)) - 1 }

// Log is a raft.LogStore. Its methods are safe for concurrent use: raft
// appends from its main goroutine, reads from replication goroutines and
// deletes from its snapshot goroutine.
type Log struct {
	dir  string
	opts Options

	wmu sync.Mutex // serialises writers (StoreLogs, DeleteRange, Close)

	mu     sync.RWMutex // guards the fields below; held briefly
	segs   []*segment   // ordered by first index
	first  uint64       // first index raft has not deleted; 0 when empty
	closed bool

	repaired *Repair
}

var _ raft.LogStore = (*Log)(nil)

// ErrClosed is returned by a Log after Close.
var ErrClosed = errors.New("raftlog: closed")

// Open opens or creates the log in dir.
func Open(dir string, o Options) (*Log, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SegmentSize < headerSize+recHeaderSize+payloadFixed {
		return nil, fmt.Errorf("raftlog: segment size %d is too small", o.SegmentSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: o}
	ok := false
	defer func() {
		if !ok {
			l.closeFiles()
		}
	}()
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpExt) {
			continue // a segment whose creation did not finish: removed below
		}
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		path := filepath.Join(dir, name)
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil || first == 0 || e.IsDir() {
			return nil, &CorruptError{Path: path, Offset: -1, Reason: "not a segment file name"}
		}
		l.segs = append(l.segs, &segment{first: first, path: path})
	}
	sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].first < l.segs[j].first })
	for i, s := range l.segs {
		if err := l.load(s, i == len(l.segs)-1); err != nil {
			return nil, err
		}
		if i > 0 {
			p := l.segs[i-1]
			if len(p.offsets) == 0 {
				return nil, &CorruptError{Path: p.path, Offset: -1, Reason: "segment has no entries but is not the newest"}
			}
			if s.first <= p.last() {
				return nil, &CorruptError{Path: s.path, Offset: -1, Reason: fmt.Sprintf("segment starts at index %d, inside the previous segment (up to %d)", s.first, p.last())}
			}
		}
	}
	newest, err := readNewest(dir)
	noNewest := errors.Is(err, os.ErrNotExist)
	switch {
	case noNewest && (len(l.segs) > 1 || len(l.segs) == 1 && len(l.segs[0].offsets) > 0):
		// Only the first segment of a new log, still empty, can be there
		// before the record is (Open writes it for a new log).
		return nil, &CorruptError{Path: filepath.Join(dir, newestName), Offset: -1, Reason: "missing next to segment files"}
	case noNewest:
	case err != nil:
		return nil, err
	}
	if n := len(l.segs); newest > 0 && (n == 0 || l.segs[n-1].first < newest) {
		return nil, &CorruptError{Path: filepath.Join(dir, fmt.Sprintf("%020d%s", newest, segmentExt)), Offset: -1, Reason: "the newest segment is missing"}
	}
	// Changes from here on: only after every segment checked out.
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpExt) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if n := len(l.segs); n > 0 {
		s := l.segs[n-1]
		if s.dirty > s.end {
			l.repaired = &Repair{Path: s.path, Offset: s.end, Bytes: s.dirty - s.end}
			if err := l.zeroTail(s); err != nil {
				return nil, err
			}
		}
		if len(s.offsets) == 0 {
			// Created, but the write that was to fill it never finished.
			if err := l.removeLast(); err != nil {
				return nil, err
			}
		}
	}
	if err := l.syncDir(); err != nil {
		return nil, err
	}
	if noNewest {
		if err := l.writeNewest(); err != nil {
			return nil, err
		}
	}
	if len(l.segs) > 0 {
		l.first = l.segs[0].first
	}
	ok = true
	return l, nil
}

// Repaired reports the torn tail Open zeroed, if any.
func (l *Log) Repaired() *Repair { return l.repaired }

// load opens a segment and reads its records. For the newest segment a
// torn tail is noted in s.dirty (zeroed later by Open); anywhere else a bad
// record is damage.
func (l *Log) load(s *segment, newest bool) error {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.f = f
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	s.size = fi.Size()
	data := make([]byte, s.size)
	if _, err := io.ReadFull(f, data); err != nil {
		return &CorruptError{Path: s.path, Offset: -1, Reason: "unreadable: " + err.Error()}
	}
	if err := checkHeader(data, s.first); err != nil {
		return &CorruptError{Path: s.path, Offset: 0, Reason: err.Error()}
	}
	off := int64(headerSize)
	for {
		if off+recHeaderSize > s.size {
			break // no room for another record
		}
		n := int64(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 {
			break
		}
		end := off + recHeaderSize + n
		bad := ""
		switch {
		case n < payloadFixed || n > maxRecord || end > s.size:
			bad = fmt.Sprintf("record length %d is invalid", n)
		case crc32.Checksum(data[off+recHeaderSize:end], castagnoli) != sum:
			bad = "record fails its checksum"
		default:
			f := unmaskedFixed(data[off+recHeaderSize:])
			want := s.first + uint64(len(s.offsets))
			if int64(binary.BigEndian.Uint32(f[25:])) > n-payloadFixed {
				bad = "record's extensions overrun its payload"
			} else if got := binary.BigEndian.Uint64(f[:]); got != want {
				bad = fmt.Sprintf("record claims index %d, expected %d", got, want)
			}
		}
		if bad != "" {
			if newest && torn(data, off, min(end, s.size)) && !written(data[off+recHeaderSize:min(end, s.size)], sum) {
				s.dirty = used(data)
				break
			}
			return &CorruptError{Path: s.path, Offset: off, Reason: bad}
		}
		s.offsets = append(s.offsets, off)
		off = end
	}
	s.end = off
	// After the last record the file is zeros, unless a write that never
	// completed left bytes there (newest segment only).
	if i := firstNonZero(data[off:]); i >= 0 {
		if !newest {
			return &CorruptError{Path: s.path, Offset: off + int64(i), Reason: "data after the last record"}
		}
		s.dirty = used(data)
	}
	return nil
}

// torn reports whether the record in data[off:end] was cut short by a
// crash: some 512-byte sector of it (split at sector boundaries of the
// file) is all zeros, i.e. never reached the disk. A flipped byte leaves no
// such sector.
func torn(data []byte, off, end int64) bool {
	for start := off; start < end; {
		next := min((start/sectorSize+1)*sectorSize, end)
		if allZero(data[start:next]) {
			return true
		}
		start = next
	}
	return false
}

// firstNonZero returns the index of the first byte of b that is not zero,
// or -1.
func firstNonZero(b []byte) int {
	for off := 0; off < len(b); off += len(zeros) {
		chunk := b[off:min(off+len(zeros), len(b))]
		if allZero(chunk) {
			continue
		}
		for i, c := range chunk {
			if c != 0 {
				return off + i
			}
		}
	}
	return -1
}

// written reports whether some prefix of p at least payloadFixed long
// has the checksum sum: the record reached the disk whole and what is
// wrong is its length field (which made its extent take in the zeros
// after it) or its contents, not a torn write, which leaves no bytes that
// match their checksum.
func written(p []byte, sum uint32) bool {
	if len(p) < payloadFixed {
		return false
	}
	c := crc32.Update(0, castagnoli, p[:payloadFixed-1])
	for i := payloadFixed - 1; i < len(p); i++ {
		if c = crc32.Update(c, castagnoli, p[i:i+1]); c == sum {
			return true
		}
	}
	return false
}

// used is the length of data without its trailing zeros.
func used(data []byte) int64 {
	n := len(data)
	for n > 0 {
		start := max(0, n-len(zeros))
		if !allZero(data[start:n]) {
			break
		}
		n = start
	}
	for n > 0 && data[n-1] == 0 {
		n--
	}
	return int64(n)
}

// zeros is compared against in chunks: Open scans whole segments.
var zeros [4096]byte

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// header is a segment's first headerSize bytes: magic, version, first
// index, the size the file was created with, and a CRC-32C of them.
func header(first uint64, size int64) []byte {
	h := make([]byte, headerSize)
	copy(h, magic[:])
	binary.BigEndian.PutUint32(h[8:], version)
	binary.BigEndian.PutUint64(h[16:], first)
	binary.BigEndian.PutUint64(h[24:], uint64(size))
	binary.BigEndian.PutUint32(h[32:], crc32.Checksum(h[:32], castagnoli))
	return h
}

// checkHeader checks a segment's header against its name and its size on
// disk: a segment never changes size, so a shorter one lost entries.
func checkHeader(data []byte, first uint64) error {
	if len(data) < headerSize {
		return errors.New("segment is shorter than its header")
	}
	if !bytes.Equal(data[:8], magic[:]) {
		return errors.New("not a raft log segment")
	}
	if crc32.Checksum(data[:32], castagnoli) != binary.BigEndian.Uint32(data[32:]) {
		return errors.New("segment header fails its checksum")
	}
	if v := binary.BigEndian.Uint32(data[8:]); v != version {
		return fmt.Errorf("segment format version %d is not supported", v)
	}
	if got := binary.BigEndian.Uint64(data[16:]); got != first {
		return fmt.Errorf("segment header says first index %d, its name %d", got, first)
	}
	if size := binary.BigEndian.Uint64(data[24:]); size != uint64(len(data)) {
		return fmt.Errorf("segment is %d bytes but was created with %d (truncated or extended)", len(data), size)
	}
	return nil
}

// AppendRecord appends e to b as a segment record (length, CRC-32C,
// payload), exactly as StoreLogs writes it.
func AppendRecord(b []byte, e *raft.Log) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeaderSize)...)
	b = binary.BigEndian.AppendUint64(b, e.Index)
	b = binary.BigEndian.AppendUint64(b, e.Term)
	b = append(b, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Extensions)))
	b = append(b, e.Extensions...)
	b = append(b, e.Data...)
	p := b[start+recHeaderSize:]
	Mask(p)
	binary.BigEndian.PutUint32(b[start:], uint32(len(p)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(p, castagnoli))
	return b
}

// mask is the keystream of Mask: SplitMix64 from seed 0x6163636f72642121
// ("accord!!"), each output stored big-endian.
var mask = func() (m [maskSize]byte) {
	x := uint64(0x6163636f72642121)
	for i := 0; i < maskSize; i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.BigEndian.PutUint64(m[i:], z^z>>31)
	}
	return m
}()

// Mask XORs a record payload with the keystream, in place: it masks a
// payload for the disk, and unmasks one read from it.
func Mask(p []byte) {
	for i := 0; i < len(p); i += maskSize {
		q := p[i:min(i+maskSize, len(p))]
		subtle.XORBytes(q, q, mask[:len(q)])
	}
}

// unmaskedFixed returns the fixed fields of a stored payload, unmasked.
func unmaskedFixed(p []byte) [payloadFixed]byte {
	var f [payloadFixed]byte
	copy(f[:], p)
	Mask(f[:])
	return f
}

func decodePayload(p []byte, e *raft.Log) error {
	if len(p) < payloadFixed {
		return errors.New("record too short")
	}
	ext := binary.BigEndian.Uint32(p[25:])
	if uint64(ext) > uint64(len(p)-payloadFixed) {
		return errors.New("record extensions overrun")
	}
	*e = raft.Log{
		Index: binary.BigEndian.Uint64(p),
		Term:  binary.BigEndian.Uint64(p[8:]),
		Type:  raft.LogType(p[16]),
	}
	if at := int64(binary.BigEndian.Uint64(p[17:])); at != 0 {
		e.AppendedAt = time.Unix(0, at)
	}
	rest := p[payloadFixed:]
	if ext > 0 {
		e.Extensions = rest[:ext:ext]
	}
	if len(rest) > int(ext) {
		e.Data = rest[ext:]
	}
	return nil
}

// FirstIndex implements raft.LogStore.
func (l *Log) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.first, nil
}

// LastIndex implements raft.LogStore.
func (l *Log) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.lastLocked(), nil
}

func (l *Log) lastLocked() uint64 {
	for i := len(l.segs) - 1; i >= 0; i-- {
		if len(l.segs[i].offsets) > 0 {
			return l.segs[i].last()
		}
	}
	return 0
}

// GetLog implements raft.LogStore. A record that fails its checksum on
// the way back (damage since Open) is an error, never a wrong entry.
func (l *Log) GetLog(index uint64, e *raft.Log) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	if index < l.first || l.first == 0 {
		l.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > index }) - 1
	if i < 0 || index > l.segs[i].last() || len(l.segs[i].offsets) == 0 {
		l.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	s := l.segs[i]
	k := index - s.first
	off := s.offsets[k]
	end := s.end
	if k+1 < uint64(len(s.offsets)) {
		end = s.offsets[k+1]
	}
	f := s.f
	buf := make([]byte, end-off)
	// Read under the lock: Close and DeleteRange close files.
	_, err := f.ReadAt(buf, off)
	l.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("raftlog: reading entry %d: %w", index, err)
	}
	p := buf[recHeaderSize:]
	if int(binary.BigEndian.Uint32(buf)) != len(p) || crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(buf[4:]) {
		return &CorruptError{Path: s.path, Offset: off, Reason: fmt.Sprintf("entry %d fails its checksum", index)}
	}
	Mask(p)
	if err := decodePayload(p, e); err != nil || e.Index != index {
		return &CorruptError{Path: s.path, Offset: off, Reason: fmt.Sprintf("entry %d does not decode", index)}
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (l *Log) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs implements raft.LogStore: the entries are durable when it
// returns. Entries at or below the last index replace the ones there and
// everything after them; an index past the last one starts a new segment
// after a gap.
func (l *Log) StoreLogs(es []*raft.Log) error {
	if len(es) == 0 {
		return nil
	}
	for i := 1; i < len(es); i++ {
		if es[i].Index != es[0].Index+uint64(i) {
			return fmt.Errorf("raftlog: entries are not contiguous (index %d after %d)", es[i].Index, es[i-1].Index)
		}
	}
	if es[0].Index == 0 {
		return errors.New("raftlog: index 0 is not a valid entry")
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	closed, last := l.closed, l.lastLocked()
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if last > 0 && es[0].Index <= last {
		if err := l.truncateFrom(es[0].Index); err != nil {
			return err
		}
	}
	var cur *segment
	if n := len(l.segs); n > 0 {
		if s := l.segs[n-1]; s.first+uint64(len(s.offsets)) == es[0].Index {
			cur = s
		} else if len(s.offsets) == 0 {
			// Left by a write that failed, for another index.
			if err := l.removeLast(); err != nil {
				return err
			}
		}
	}
	var buf []byte
	var offs []int64
	pos := int64(0)
	if cur != nil {
		pos = cur.end
	}
	// flush writes buf at pos in cur and syncs it, then publishes offs.
	flush := func() error {
		if cur == nil || len(buf) == 0 {
			return nil
		}
		if cur.dirty > cur.end {
			if err := l.zeroTail(cur); err != nil {
				return err
			}
		}
		cur.dirty = max(cur.dirty, pos+int64(len(buf)))
		if _, err := cur.f.WriteAt(buf, pos); err != nil {
			return err
		}
		if err := l.sync(cur.f); err != nil {
			return err
		}
		cur.dirty = 0
		l.mu.Lock()
		cur.offsets = append(cur.offsets, offs...)
		cur.end = pos + int64(len(buf))
		if l.first == 0 || l.first > es[0].Index {
			// Empty, or es replaced entries from below the first index
			// (which truncateFrom left in place).
			l.first = es[0].Index
		}
		l.mu.Unlock()
		pos = cur.end
		buf, offs = buf[:0], offs[:0]
		return nil
	}
	for _, e := range es {
		n := int64(recHeaderSize + payloadFixed + len(e.Extensions) + len(e.Data))
		if cur == nil || pos+int64(len(buf))+n > cur.size {
			if err := flush(); err != nil {
				return err
			}
			if cur != nil && cur.dirty > cur.end {
				// A failed write left bytes after the end of the segment
				// being sealed: Open refuses data after a sealed end.
				if err := l.zeroTail(cur); err != nil {
					return err
				}
			}
			s, err := l.create(e.Index, headerSize+n)
			if err != nil {
				return err
			}
			cur, pos = s, s.end
		}
		offs = append(offs, pos+int64(len(buf)))
		buf = AppendRecord(buf, e)
	}
	return flush()
}

// create makes a new, empty segment whose first entry will be first, big
// enough for need bytes, and adds it to l.segs.
func (l *Log) create(first uint64, need int64) (*segment, error) {
	path := filepath.Join(l.dir, fmt.Sprintf("%020d%s", first, segmentExt))
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	size := max(l.opts.SegmentSize, need)
	err = f.Truncate(size)
	if err == nil {
		_, err = f.WriteAt(header(first, size), 0)
	}
	if err == nil {
		err = l.sync(f)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	s := &segment{first: first, path: path, f: f, size: size, end: headerSize}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	// writeNewest syncs the directory, and with it the rename.
	if err := l.writeNewest(); err != nil {
		return nil, err
	}
	return s, nil
}

// zeroTail makes the bytes from s.end up to s.dirty zeros again, after a
// write that failed, a torn tail or a truncation. It writes zeros rather
// than truncating the file and extending it again: a process that died
// between the two would leave a segment shorter than its header says,
// which Open refuses.
func (l *Log) zeroTail(s *segment) error {
	zeros := make([]byte, min(max(s.dirty-s.end, 0), 1<<20))
	for off := s.end; off < s.dirty; off += int64(len(zeros)) {
		if _, err := s.f.WriteAt(zeros[:min(int64(len(zeros)), s.dirty-off)], off); err != nil {
			return err
		}
	}
	if !l.opts.NoSync {
		if err := s.f.Sync(); err != nil {
			return err
		}
	}
	s.dirty = 0
	return nil
}

// truncateFrom deletes index and everything after it. Caller holds wmu.
func (l *Log) truncateFrom(index uint64) error {
	for n := len(l.segs); n > 0; n = len(l.segs) {
		s := l.segs[n-1]
		if s.first < index {
			break
		}
		if err := l.removeLast(); err != nil {
			return err
		}
	}
	n := len(l.segs)
	if n == 0 {
		return nil
	}
	s := l.segs[n-1]
	if len(s.offsets) == 0 || index > s.last() {
		return nil
	}
	k := index - s.first
	l.mu.Lock()
	end := s.offsets[k]
	s.offsets = s.offsets[:k]
	s.dirty = max(s.dirty, s.end)
	s.end = end
	if l.lastLocked() == 0 {
		l.first = 0
	}
	l.mu.Unlock()
	return l.zeroTail(s)
}

// removeLast deletes the newest segment. Caller holds wmu.
func (l *Log) removeLast() error {
	l.mu.Lock()
	n := len(l.segs)
	s := l.segs[n-1]
	l.segs = l.segs[:n-1]
	if l.lastLocked() == 0 {
		l.first = 0
	}
	l.mu.Unlock()
	// The record of the newest segment moves back first: a crash before
	// the file goes leaves a segment newer than recorded, which is fine.
	if err := l.writeNewest(); err != nil {
		return err
	}
	s.f.Close()
	if err := os.Remove(s.path); err != nil {
		return err
	}
	return l.syncDir()
}

// DeleteRange implements raft.LogStore. raft deletes either a prefix (after
// a snapshot) or a suffix (entries that conflict with the leader's); only
// whole segments are removed for a prefix, the entries before the new
// first index stay on disk until their segment goes.
func (l *Log) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	closed, first, last := l.closed, l.first, l.lastLocked()
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if last == 0 || hi < first || lo > last {
		return nil
	}
	if lo > first && hi < last {
		return fmt.Errorf("raftlog: cannot delete entries %d-%d from the middle of %d-%d", lo, hi, first, last)
	}
	if lo > first {
		return l.truncateFrom(lo)
	}
	// A prefix, possibly everything. The segments leave l.segs together
	// with the change of l.first, so that a reader never sees an entry gone
	// while FirstIndex still reports it.
	k := 0
	for k < len(l.segs) && (len(l.segs[k].offsets) == 0 || l.segs[k].last() <= hi) {
		k++
	}
	gone := l.segs[:k:k]
	l.mu.Lock()
	l.segs = l.segs[k:]
	if l.lastLocked() == 0 {
		l.first = 0
	} else {
		l.first = max(hi+1, l.segs[0].first)
	}
	l.mu.Unlock()
	if len(l.segs) == 0 && len(gone) > 0 {
		if err := l.writeNewest(); err != nil {
			return err
		}
	}
	for _, s := range gone {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		return l.syncDir()
	}
	return nil
}

// readNewest reads the first index of the newest segment from dir's
// newest file.
func readNewest(dir string) (uint64, error) {
	path := filepath.Join(dir, newestName)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if len(b) != newestSize || crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return 0, &CorruptError{Path: path, Offset: -1, Reason: "record of the newest segment is damaged"}
	}
	return binary.BigEndian.Uint64(b), nil
}

// writeNewest records the first index of the newest segment (0 for none),
// atomically and synced. Caller holds wmu (or is Open).
func (l *Log) writeNewest() error {
	var first uint64
	if n := len(l.segs); n > 0 {
		first = l.segs[n-1].first
	}
	b := binary.BigEndian.AppendUint64(nil, first)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return fsutil.WriteFileAtomic(filepath.Join(l.dir, newestName), b, !l.opts.NoSync)
}

// Close closes the segment files. Calls after Close return ErrClosed.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.closeFiles()
}

func (l *Log) closeFiles() error {
	var err error
	for _, s := range l.segs {
		if s.f != nil {
			if cerr := s.f.Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

func (l *Log) sync(f *os.File) error {
	if l.opts.NoSync {
		return nil
	}
	if l.opts.OnSync == nil {
		return fdatasync(f)
	}
	start := time.Now()
	err := fdatasync(f)
	if err == nil {
		l.opts.OnSync(time.Since(start))
	}
	return err
}

func (l *Log) syncDir() error {
	if l.opts.NoSync {
		return nil
	}
	return fsutil.SyncDir(l.dir)
}
