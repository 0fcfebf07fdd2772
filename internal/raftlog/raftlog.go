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
// or larger for one batch that needs it) as a sparse file, so that
// everything after the last entry reads as zeros. It starts with a 40-byte
// header (magic, version, first index, file size, CRC-32C) followed by
// records:
//
//	u32 length of payload, u32 CRC-32C of the payload as stored, payload
//	payload: u64 index, u64 term, u8 type, i64 appended-at (unix ns),
//	         u32 length of extensions, u32 batch, extensions, data
//
// A batch is the entries of one StoreLogs call: one write, one fdatasync,
// the unit that a crash can tear. The batch field is the entry's position
// in its batch (0 for the first) in its low 31 bits, with bit 31 set on the
// batch's last entry. A batch is never split across segments: one that
// does not fit in the rest of the newest segment starts a new one.
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
// (or 0 for none), and where the newest segment was last cut:
//
//	u64 first index of the newest segment, u64 cut, u32 flags, u32 CRC-32C
//
// cut, when not below that first index, is the last entry of the newest
// segment that a suffix delete kept (or the segment's last entry when a
// delete removed the segments after it): a batch ends there, and every
// entry up to it was synced. Flag 1 (deleting) says that the suffix delete
// has not finished: every byte of the segment after that entry belongs to
// deleted entries. The file is rewritten (atomically, synced) when one of
// these changes: a segment is created, the newest one removed, a suffix
// delete starts and ends. A directory whose newest segment is gone, or
// emptied of segments, is refused: the entries in it may have been
// acknowledged.
//
// # Versions
//
// Segment format version 2 (this one) added the batch field. Segments of
// version 1 (payload without it, newest file of 12 bytes: first index and
// CRC-32C) are read as they are, and keep the rule they were written under
// (below); new batches never go into one: the first write to a log whose
// newest segment is of version 1 starts a new segment.
//
// # Damage
//
// Open reads every record and checks its CRC, index and batch position. A
// bad record is damage (a *CorruptError naming the segment and offset;
// Open then changes nothing in the directory) unless it is part of the
// torn last batch of the newest segment.
//
// A crash can tear only the last batch written: each batch is synced
// before the next is written, and bytes that a failed write (say, on a full
// disk) left behind are zeroed before anything else is written. The last
// batch of the newest segment (after its cut) is torn when
//
//   - its last entry never reached the disk: the records end, zeros
//     follow, and no record carries the batch's end bit; or
//   - one of its records is torn: a 512-byte sector of it (split at sector
//     boundaries of the file) is all zeros, a sector that never reached the
//     disk (a stored payload, being masked, has none of its own), as etcd's
//     WAL recognises a torn write, and no prefix of it matches the
//     record's CRC (a damaged length field takes in the zeros after the
//     record, but the record itself is whole);
//
// and no valid record of another batch follows it in the segment: Open
// looks for one at every offset after the damage. A torn batch was never
// synced, so never acknowledged: Open zeroes all of it, its whole records
// too, never keeping a prefix of it, and reports it (Repaired). Damage
// followed by any valid record of a later batch is refused: that batch was
// written after the damaged one was synced and acknowledged. So is
// anything else (a flipped byte, a record claiming the wrong index or
// batch position, a damaged header, a segment shorter or longer than it
// was created, data after the end of a sealed segment, overlapping
// segments, a missing newest segment, a newest segment without the entries
// up to its cut). As with etcd's WAL, a sector of the last batch zeroed by
// damage rather than by a crash cannot be told from a torn write; Open
// drops that batch, and says so.
//
// A suffix delete (raft's conflicting entries) zeroes the tail of the
// segment it cuts in place. It sets the deleting flag first and clears it
// once the zeros are synced, so that what a crash leaves halfway (zeroed
// sectors between deleted records, which would read as damage followed by
// later batches) is known for deleted entries: Open finishes the delete.
// A delete may end a batch before its last entry; a later batch starts at
// position 0, which ends the one before, and cut ends the last one.
//
// A version-1 newest segment has no batches: its first torn record (as
// above) and everything after it are cut, valid records after it or not,
// as that version did. It applies only to a log that crashed under the
// version that wrote it.
package raftlog

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
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
	// payloadFixed is the size of a payload's fixed fields (index, term,
	// type, appended-at, extensions length, batch); version 1 had no batch.
	payloadFixed   = 8 + 8 + 1 + 8 + 4 + 4
	payloadFixedV1 = payloadFixed - 4
	maskSize       = 4096
	segmentExt     = ".wal"
	tmpExt         = ".tmp"
	newestName     = "newest"
	newestSize     = 24 // u64 first index, u64 cut, u32 flags, u32 CRC-32C
	newestSizeV1   = 12 // u64 first index, u32 CRC-32C
	newestDeleting = 1  // flag: the suffix delete after cut has not finished
	sectorSize     = 512
	// maxRecord bounds a record's length field when reading, so that a
	// damaged length cannot make Open allocate gigabytes.
	maxRecord = 1 << 30
	// batchEnd marks the last entry of a batch in a record's batch field;
	// the bits below it are the entry's position in its batch.
	batchEnd = 1 << 31
	version  = 2
	// versionNoBatch is the segment format before batches were marked.
	versionNoBatch = 1
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

// Repair describes what Open zeroed at the end of the newest segment.
type Repair struct {
	Path   string
	Offset int64 // where the zeroed bytes start: the torn batch, or the first deleted entry
	Bytes  int64 // how many bytes from there were zeroed
	// Entries is how many records of the torn batch ahead of the tear
	// read whole and valid (never acknowledged: the batch was not).
	Entries int
	// Deleted: the bytes were entries that a suffix delete was removing
	// when the process stopped, not a torn write. Open finished the delete.
	Deleted bool
}

type segment struct {
	first   uint64
	path    string
	f       *os.File
	version uint32
	size    int64   // file size
	offsets []int64 // offsets[i] is the record of index first+i
	end     int64   // end of the last record
	dirty   int64   // a failed write may have left bytes up to here
}

func (s *segment) last() uint64 { return s.first + uint64(len(s.offsets)) - 1 }

// fixed is the size of the fixed fields of s's payloads.
func (s *segment) fixed() int64 {
	if s.version == versionNoBatch {
		return payloadFixedV1
	}
	return payloadFixed
}

// Log is a raft.LogStore. Its methods are safe for concurrent use: raft
// appends from its main goroutine, reads from replication goroutines and
// deletes from its snapshot goroutine.
type Log struct {
	dir  string
	opts Options

	wmu sync.Mutex // serialises writers (StoreLogs, DeleteRange, Close)
	// Guarded by wmu (and Open): what the newest file says besides the
	// newest segment.
	cut uint64 // last entry of the newest segment a suffix delete kept
	// deleting: a suffix delete after cut is under way (the newest
	// segment's bytes after its last record are to be zeroed); the newest
	// file says so when deletingOnDisk.
	deleting, deletingOnDisk bool

	mu     sync.RWMutex // guards the fields below; held briefly
	segs   []*segment   // ordered by first index
	first  uint64       // first index raft has not deleted; 0 when empty
	closed bool

	repaired *Repair
}

var _ raft.LogStore = (*Log)(nil)

// ErrClosed is returned by a Log after Close.
var ErrClosed = errors.New("raftlog: closed")

// Open opens or creates the log in dir. It refuses damage with a
// *CorruptError and then changes nothing in dir; the only changes it makes
// to a log it accepts are cutting a torn last batch, finishing a suffix
// delete that a crash interrupted (both reported by Repaired), and removing
// leftovers of a segment creation that did not finish.
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
	newestPath := filepath.Join(dir, newestName)
	nw, err := readNewest(newestPath)
	noNewest := errors.Is(err, os.ErrNotExist)
	if err != nil && !noNewest {
		return nil, err
	}
	n := len(l.segs)
	if nw.first > 0 && (n == 0 || l.segs[n-1].first < nw.first) {
		return nil, &CorruptError{Path: filepath.Join(dir, fmt.Sprintf("%020d%s", nw.first, segmentExt)), Offset: -1, Reason: "the newest segment is missing"}
	}
	// The cut applies to the segment the record names. A newer one can be
	// there (a crash between its creation and the record's update), never
	// while a delete in the named one is under way: nothing is created
	// before the delete is over.
	if n > 0 && l.segs[n-1].first == nw.first {
		l.cut, l.deleting, l.deletingOnDisk = nw.cut, nw.deleting, nw.deleting
	} else if nw.deleting {
		return nil, &CorruptError{Path: newestPath, Offset: -1, Reason: fmt.Sprintf("a suffix delete in segment %d is under way, but a newer segment exists", nw.first)}
	}
	for i, s := range l.segs {
		var err error
		if i == n-1 {
			err = l.loadNewest(s)
		} else {
			err = l.load(s)
		}
		if err != nil {
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
	if noNewest && (n > 1 || n == 1 && len(l.segs[0].offsets) > 0) {
		// Only the first segment of a new log, still empty, can be there
		// before the record is (Open writes it for a new log).
		return nil, &CorruptError{Path: newestPath, Offset: -1, Reason: "missing next to segment files"}
	}
	// Changes from here on: only after every segment checked out.
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpExt) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if n > 0 {
		s := l.segs[n-1]
		if err := l.settle(); err != nil {
			return nil, err
		}
		if len(s.offsets) == 0 {
			// Created, but the write that was to fill it never finished
			// (or was torn).
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

// Repaired reports what Open zeroed at the end of the newest segment (a
// torn last batch, or the rest of an interrupted suffix delete), if
// anything.
func (l *Log) Repaired() *Repair { return l.repaired }

// read opens a segment, reads it whole and checks its header.
func (l *Log) read(s *segment) ([]byte, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	s.f = f
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s.size = fi.Size()
	data := make([]byte, s.size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, &CorruptError{Path: s.path, Offset: -1, Reason: "unreadable: " + err.Error()}
	}
	if s.version, err = checkHeader(data, s.first); err != nil {
		return nil, &CorruptError{Path: s.path, Offset: 0, Reason: err.Error()}
	}
	return data, nil
}

// scan is what parse found in a segment.
type scan struct {
	// stop is where the records stopped: the first one not taken, or the
	// zero length after the last one.
	stop int64
	// bad says why the record at stop was not taken; "" when a zero length
	// (or the end of the file) ended the records.
	bad string
	// open is the offset of the first record after the last batch that
	// ended (records from there to stop are an open batch), and before the
	// number of entries ahead of it.
	open   int64
	before int
}

// parse reads the records of s from its header on into s.offsets, up to
// entry upTo at most, and up to the first record that is not good. A batch
// ends at a record with the end bit, at a record that starts a batch
// (position 0: a suffix delete cut the one before short), and at entry
// cut. A version-1 segment has no batches: each entry is one.
func parse(s *segment, data []byte, cut, upTo uint64) scan {
	fixed := s.fixed()
	off := int64(headerSize)
	sc := scan{open: off}
	pos := uint32(0) // position in its batch the next record should claim
	for {
		want := s.first + uint64(len(s.offsets))
		if want > upTo || off+recHeaderSize > s.size {
			break
		}
		n := int64(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 {
			break
		}
		end := off + recHeaderSize + n
		word := uint32(batchEnd) // version 1: each entry a batch of its own
		bad := ""
		switch {
		case n < fixed || n > maxRecord || end > s.size:
			bad = fmt.Sprintf("record length %d is invalid", n)
		case crc32.Checksum(data[off+recHeaderSize:end], castagnoli) != sum:
			bad = "record fails its checksum"
		default:
			f := unmaskedFixed(data[off+recHeaderSize:])
			if s.version != versionNoBatch {
				word = binary.BigEndian.Uint32(f[29:])
			}
			if int64(binary.BigEndian.Uint32(f[25:])) > n-fixed {
				bad = "record's extensions overrun its payload"
			} else if got := binary.BigEndian.Uint64(f[:]); got != want {
				bad = fmt.Sprintf("record claims index %d, expected %d", got, want)
			} else if p := word &^ batchEnd; p != pos && p != 0 {
				bad = fmt.Sprintf("record claims position %d in its batch, expected %d or 0", p, pos)
			}
		}
		if bad != "" {
			sc.stop, sc.bad = off, bad
			return sc
		}
		if word&^batchEnd == 0 {
			sc.open, sc.before = off, len(s.offsets)
		}
		s.offsets = append(s.offsets, off)
		off = end
		pos = word&^batchEnd + 1
		if word&batchEnd != 0 || want == cut {
			sc.open, sc.before, pos = off, len(s.offsets), 0
		}
	}
	sc.stop = off
	return sc
}

// load reads a segment that is not the newest: every record must be good,
// and zeros follow the last one. Its last batch may lack its end: a suffix
// delete cut it short before the segment was sealed.
func (l *Log) load(s *segment) error {
	data, err := l.read(s)
	if err != nil {
		return err
	}
	sc := parse(s, data, 0, math.MaxUint64)
	if sc.bad != "" {
		return &CorruptError{Path: s.path, Offset: sc.stop, Reason: sc.bad}
	}
	s.end = sc.stop
	if i := firstNonZero(data[sc.stop:]); i >= 0 {
		return &CorruptError{Path: s.path, Offset: sc.stop + int64(i), Reason: "data after the last record"}
	}
	return nil
}

// loadNewest reads the newest segment. What Open is to zero (a torn last
// batch, the rest of an interrupted suffix delete) it notes in s.dirty and
// l.repaired; anything else that is not good is damage.
func (l *Log) loadNewest(s *segment) error {
	data, err := l.read(s)
	if err != nil {
		return err
	}
	cut, upTo := uint64(0), uint64(math.MaxUint64)
	if l.cut >= s.first {
		cut = l.cut
	}
	if l.deleting {
		if cut == 0 {
			return &CorruptError{Path: filepath.Join(l.dir, newestName), Offset: -1, Reason: fmt.Sprintf("a suffix delete after entry %d is under way in segment %d, which starts after it", l.cut, s.first)}
		}
		upTo = cut
	}
	sc := parse(s, data, cut, upTo)
	s.end = sc.stop
	if cut > 0 && (len(s.offsets) == 0 || s.last() < cut) {
		reason := sc.bad
		if reason == "" {
			reason = "records end"
		}
		return &CorruptError{Path: s.path, Offset: sc.stop, Reason: fmt.Sprintf("%s before entry %d, which the newest record says was synced", reason, cut)}
	}
	if l.deleting {
		// Everything after entry cut is deleted entries, zeroed or not.
		if u := used(data); u > s.end {
			s.dirty = u
			l.repaired = &Repair{Path: s.path, Offset: s.end, Bytes: u - s.end, Deleted: true}
		}
		return nil
	}
	tail := firstNonZero(data[sc.stop:]) >= 0
	if sc.bad == "" && sc.open == sc.stop && !tail {
		return nil // every batch whole, zeros after
	}
	if sc.bad != "" {
		n := int64(binary.BigEndian.Uint32(data[sc.stop:]))
		end := min(sc.stop+recHeaderSize+n, s.size)
		p := data[min(sc.stop+recHeaderSize, end):end]
		if !torn(data, sc.stop, end) || written(p, binary.BigEndian.Uint32(data[sc.stop+4:]), s.fixed()) {
			return &CorruptError{Path: s.path, Offset: sc.stop, Reason: sc.bad}
		}
	}
	b := s.first + uint64(sc.before) // the first entry of the last batch
	if tail && s.version != versionNoBatch {
		if off, index, ok := laterRecord(data, s, sc.stop+1, b); ok {
			what := sc.bad
			if what == "" {
				what = "records stop (zero length)"
			}
			return &CorruptError{Path: s.path, Offset: sc.stop, Reason: fmt.Sprintf("%s, and a valid record of a later batch follows (entry %d at offset %d): damage, not a torn write", what, index, off)}
		}
	}
	// The last batch is torn: all of it goes.
	s.dirty = max(used(data), sc.stop)
	l.repaired = &Repair{Path: s.path, Offset: sc.open, Bytes: s.dirty - sc.open, Entries: len(s.offsets) - sc.before}
	s.offsets = s.offsets[:sc.before]
	s.end = sc.open
	return nil
}

// laterRecord looks at every offset of data from from on (up to its last
// byte that is not zero) for a whole record with a good checksum, an index
// that can be in s, and fields that decode, that is not of the batch whose
// first entry is b. It returns the first one's offset and index.
func laterRecord(data []byte, s *segment, from int64, b uint64) (int64, uint64, bool) {
	to := used(data)
	maxIndex := s.first + uint64(s.size/(recHeaderSize+payloadFixed))
	for off := from; off < to && off+recHeaderSize+payloadFixed <= s.size; off++ {
		n := int64(binary.BigEndian.Uint32(data[off:]))
		if n == 0 {
			// A record's length has at most 3 zero bytes ahead of its
			// first non-zero one: skip runs of zeros.
			i := firstNonZero(data[off:to])
			if i < 0 {
				break
			}
			off = max(off, off+int64(i)-4)
			continue
		}
		if n < payloadFixed || n > maxRecord || off+recHeaderSize+n > s.size {
			continue
		}
		p := data[off+recHeaderSize : off+recHeaderSize+n]
		f := unmaskedFixed(p)
		index := binary.BigEndian.Uint64(f[:])
		if index < s.first || index > maxIndex || int64(binary.BigEndian.Uint32(f[25:])) > n-payloadFixed {
			continue
		}
		if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(data[off+4:]) {
			continue
		}
		if pos := uint64(binary.BigEndian.Uint32(f[29:]) &^ batchEnd); index-pos != b {
			return off, index, true
		}
	}
	return 0, 0, false
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

// written reports whether some prefix of p at least fixed bytes long
// has the checksum sum: the record reached the disk whole and what is
// wrong is its length field (which made its extent take in the zeros
// after it) or its contents, not a torn write, which leaves no bytes that
// match their checksum.
func written(p []byte, sum uint32, fixed int64) bool {
	if int64(len(p)) < fixed {
		return false
	}
	c := crc32.Update(0, castagnoli, p[:fixed-1])
	for i := fixed - 1; i < int64(len(p)); i++ {
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
// disk (a segment never changes size, so a shorter one lost entries), and
// returns its format version.
func checkHeader(data []byte, first uint64) (uint32, error) {
	if len(data) < headerSize {
		return 0, errors.New("segment is shorter than its header")
	}
	if !bytes.Equal(data[:8], magic[:]) {
		return 0, errors.New("not a raft log segment")
	}
	if crc32.Checksum(data[:32], castagnoli) != binary.BigEndian.Uint32(data[32:]) {
		return 0, errors.New("segment header fails its checksum")
	}
	v := binary.BigEndian.Uint32(data[8:])
	if v != version && v != versionNoBatch {
		return 0, fmt.Errorf("segment format version %d is not supported", v)
	}
	if got := binary.BigEndian.Uint64(data[16:]); got != first {
		return 0, fmt.Errorf("segment header says first index %d, its name %d", got, first)
	}
	if size := binary.BigEndian.Uint64(data[24:]); size != uint64(len(data)) {
		return 0, fmt.Errorf("segment is %d bytes but was created with %d (truncated or extended)", len(data), size)
	}
	return v, nil
}

// AppendRecord appends e to b as the segment record of a batch of its own
// (length, CRC-32C, payload), exactly as StoreLogs writes a batch of one.
func AppendRecord(b []byte, e *raft.Log) []byte { return appendRecord(b, e, batchEnd) }

// appendRecord appends e to b as a segment record whose batch field is
// word.
func appendRecord(b []byte, e *raft.Log, word uint32) []byte {
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
	b = binary.BigEndian.AppendUint32(b, word)
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

// unmaskedFixed returns the fixed fields of a stored payload, unmasked
// (for version 1, whatever follows its fixed fields in p or zeros stand in
// for the batch field).
func unmaskedFixed(p []byte) [payloadFixed]byte {
	var f [payloadFixed]byte
	copy(f[:], p)
	Mask(f[:])
	return f
}

// decodePayload decodes an unmasked payload whose fixed fields are fixed
// bytes long.
func decodePayload(p []byte, fixed int64, e *raft.Log) error {
	if int64(len(p)) < fixed {
		return errors.New("record too short")
	}
	ext := binary.BigEndian.Uint32(p[25:])
	if int64(ext) > int64(len(p))-fixed {
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
	rest := p[fixed:]
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
	if err := decodePayload(p, s.fixed(), e); err != nil || e.Index != index {
		return &CorruptError{Path: s.path, Offset: off, Reason: fmt.Sprintf("entry %d does not decode", index)}
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (l *Log) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs implements raft.LogStore: the entries are durable when it
// returns. Entries at or below the last index replace the ones there and
// everything after them; an index past the last one starts a new segment
// after a gap. The entries are one batch: one write and one fdatasync, in
// one segment (a new one if they do not fit in the rest of the newest).
func (l *Log) StoreLogs(es []*raft.Log) error {
	if len(es) == 0 {
		return nil
	}
	if len(es) >= batchEnd {
		return fmt.Errorf("raftlog: %d entries in one batch is too many", len(es))
	}
	need := int64(0)
	for i, e := range es {
		if e.Index != es[0].Index+uint64(i) {
			return fmt.Errorf("raftlog: entries are not contiguous (index %d after %d)", e.Index, es[i-1].Index)
		}
		n := int64(payloadFixed + len(e.Extensions) + len(e.Data))
		if n > maxRecord {
			return fmt.Errorf("raftlog: entry %d is %d bytes, more than a record holds (%d)", e.Index, n, maxRecord)
		}
		need += recHeaderSize + n
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
	if err := l.settle(); err != nil {
		return err
	}
	if last > 0 && es[0].Index <= last {
		if err := l.truncateFrom(es[0].Index); err != nil {
			return err
		}
	}
	var cur *segment
	if n := len(l.segs); n > 0 {
		s := l.segs[n-1]
		switch {
		case s.first+uint64(len(s.offsets)) == es[0].Index && s.version == version && s.end+need <= s.size:
			cur = s
		case len(s.offsets) == 0:
			// Left by a write that failed (for another index, or too big
			// for it).
			if err := l.removeLast(); err != nil {
				return err
			}
		}
	}
	if cur == nil {
		// Sealing the newest segment (if any) after its last batch: the
		// batch never straddles two segments.
		s, err := l.create(es[0].Index, headerSize+need)
		if err != nil {
			return err
		}
		cur = s
	}
	buf := make([]byte, 0, need)
	for i, e := range es {
		word := uint32(i)
		if i == len(es)-1 {
			word |= batchEnd
		}
		buf = appendRecord(buf, e, word)
	}
	pos := cur.end
	cur.dirty = max(cur.dirty, pos+need)
	if _, err := cur.f.WriteAt(buf, pos); err != nil {
		return err
	}
	if err := l.sync(cur.f); err != nil {
		return err
	}
	cur.dirty = 0
	l.mu.Lock()
	for _, e := range es {
		cur.offsets = append(cur.offsets, pos)
		pos += int64(recHeaderSize + payloadFixed + len(e.Extensions) + len(e.Data))
	}
	cur.end = pos
	if l.first == 0 || l.first > es[0].Index {
		// Empty, or es replaced entries from below the first index
		// (which truncateFrom left in place).
		l.first = es[0].Index
	}
	l.mu.Unlock()
	return nil
}

// settle brings the newest segment back to its last record before anything
// else is written or deleted: it finishes a suffix delete that failed
// halfway, and zeroes what a failed write left after the last record (a
// part of the batch it was writing, never acknowledged), so that the only
// bytes after the last record that a crash can leave are the batch being
// written. Caller holds wmu.
func (l *Log) settle() error {
	if l.deleting {
		return l.finishDelete()
	}
	if n := len(l.segs); n > 0 && l.segs[n-1].dirty > l.segs[n-1].end {
		return l.zeroTail(l.segs[n-1])
	}
	return nil
}

// create makes a new, empty segment whose first entry will be first, big
// enough for need bytes, and adds it to l.segs. Caller holds wmu, and has
// settled the newest segment.
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
	s := &segment{first: first, path: path, f: f, version: version, size: size, end: headerSize}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	l.cut = 0
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

// truncateFrom deletes index and everything after it. Caller holds wmu,
// and has settled the newest segment.
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
	// Gone for readers at once; the bytes are zeroed under the deleting
	// flag, so that a crash halfway leaves them known for deleted entries.
	k := index - s.first
	l.mu.Lock()
	end := s.offsets[k]
	s.offsets = s.offsets[:k]
	s.dirty = max(s.dirty, s.end)
	s.end = end
	l.mu.Unlock()
	l.cut, l.deleting, l.deletingOnDisk = index-1, true, false
	return l.finishDelete()
}

// finishDelete zeroes the newest segment after its last record, the rest
// of a suffix delete, under the deleting flag of the newest file: set
// before the first zero is written, cleared once they are all synced.
// Caller holds wmu.
func (l *Log) finishDelete() error {
	if !l.deletingOnDisk {
		if err := l.writeNewest(); err != nil {
			return err
		}
		l.deletingOnDisk = true
	}
	if n := len(l.segs); n > 0 && l.segs[n-1].dirty > l.segs[n-1].end {
		if err := l.zeroTail(l.segs[n-1]); err != nil {
			return err
		}
	}
	l.deleting = false
	if err := l.writeNewest(); err != nil {
		l.deleting = true
		return err
	}
	l.deletingOnDisk = false
	return nil
}

// removeLast deletes the newest segment. Caller holds wmu, and has settled
// the newest segment (or is Open, removing an empty one).
func (l *Log) removeLast() error {
	l.mu.Lock()
	n := len(l.segs)
	s := l.segs[n-1]
	l.segs = l.segs[:n-1]
	if l.lastLocked() == 0 {
		l.first = 0
	}
	l.mu.Unlock()
	// The segment before is the newest now, and its last batch ends at its
	// last entry, whether it has its end bit or a suffix delete cut it
	// short before the segment after it was created.
	l.cut = 0
	if n > 1 && len(l.segs[n-2].offsets) > 0 {
		l.cut = l.segs[n-2].last()
	}
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
		if err := l.settle(); err != nil {
			return err
		}
		return l.truncateFrom(lo)
	}
	// A prefix, possibly everything. The segments leave l.segs together
	// with the change of l.first, so that a reader never sees an entry gone
	// while FirstIndex still reports it. (No settling: a prefix delete
	// frees space on a full disk, and leaves the newest segment as it is
	// unless it removes it too.)
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
		// Whatever was under way in the newest segment goes with it.
		l.cut, l.deleting, l.deletingOnDisk = 0, false, false
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

// newestRecord is the content of the newest file.
type newestRecord struct {
	first, cut uint64
	deleting   bool
}

// readNewest reads the newest file at path: the version-2 record, or the
// version-1 one (first index only).
func readNewest(path string) (newestRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return newestRecord{}, err
	}
	damaged := &CorruptError{Path: path, Offset: -1, Reason: "record of the newest segment is damaged"}
	switch len(b) {
	case newestSizeV1:
		if crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
			return newestRecord{}, damaged
		}
		return newestRecord{first: binary.BigEndian.Uint64(b)}, nil
	case newestSize:
		if crc32.Checksum(b[:20], castagnoli) != binary.BigEndian.Uint32(b[20:]) {
			return newestRecord{}, damaged
		}
		flags := binary.BigEndian.Uint32(b[16:])
		if flags&^newestDeleting != 0 {
			return newestRecord{}, &CorruptError{Path: path, Offset: -1, Reason: fmt.Sprintf("record of the newest segment has unknown flags %#x", flags)}
		}
		return newestRecord{first: binary.BigEndian.Uint64(b), cut: binary.BigEndian.Uint64(b[8:]), deleting: flags&newestDeleting != 0}, nil
	}
	return newestRecord{}, damaged
}

// writeNewest records the first index of the newest segment (0 for none),
// l.cut and l.deleting, atomically and synced. Caller holds wmu (or is
// Open).
func (l *Log) writeNewest() error {
	var first uint64
	if n := len(l.segs); n > 0 {
		first = l.segs[n-1].first
	}
	var flags uint32
	if l.deleting {
		flags |= newestDeleting
	}
	b := binary.BigEndian.AppendUint64(nil, first)
	b = binary.BigEndian.AppendUint64(b, l.cut)
	b = binary.BigEndian.AppendUint32(b, flags)
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
