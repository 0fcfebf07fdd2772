package schema

import (
	"encoding/binary"
	"math"
)

// Revision keys of the "key" bucket (etcd: server/storage/mvcc/revision.go).
//
// A revision key is 17 bytes: Main as 8 bytes big-endian, the byte '_', Sub
// as 8 bytes big-endian. A deletion is stored under the 18-byte tombstone
// form: the same 17 bytes followed by 't'. Because both numbers are
// big-endian and non-negative, bytes.Compare orders keys as Revision.Compare
// orders revisions, so a bbolt cursor walks the bucket in revision order.
const (
	// RevisionKeyLen is the length of a revision key.
	RevisionKeyLen = 8 + 1 + 8
	// TombstoneKeyLen is the length of a tombstone key: a revision key and
	// the marker byte.
	TombstoneKeyLen = RevisionKeyLen + 1

	revisionSeparator = '_'
	tombstoneMarker   = 't'
)

// Revision is etcd's mvcc.Revision: Main is the revision of a write
// transaction, Sub numbers the changes within it from 0.
type Revision struct {
	Main int64
	Sub  int64
}

// Compare returns -1, 0 or +1 as a sorts before, equal to or after b.
func (a Revision) Compare(b Revision) int {
	switch {
	case a.Main < b.Main:
		return -1
	case a.Main > b.Main:
		return 1
	case a.Sub < b.Sub:
		return -1
	case a.Sub > b.Sub:
		return 1
	}
	return 0
}

// GreaterThan reports whether a sorts after b (etcd's Revision.GreaterThan).
func (a Revision) GreaterThan(b Revision) bool { return a.Compare(b) > 0 }

// AppendRevisionKey appends the 17-byte key of r. Main and Sub must not be
// negative: ParseRevisionKey refuses such a key, as etcd does.
func AppendRevisionKey(dst []byte, r Revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Main))
	dst = append(dst, revisionSeparator)
	return binary.BigEndian.AppendUint64(dst, uint64(r.Sub))
}

// AppendTombstoneKey appends the 18-byte tombstone key of r, the key etcd
// stores a deletion under.
func AppendTombstoneKey(dst []byte, r Revision) []byte {
	return append(AppendRevisionKey(dst, r), tombstoneMarker)
}

// AppendMainBound appends the 8 bytes of main alone. As a range bound it
// sorts after every key of main-1 and before every key of main: etcd's
// compaction scans [start, AppendMainBound(compactRev+1)). main must not be
// negative.
func AppendMainBound(dst []byte, main int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(main))
}

// IsTombstoneKey reports whether b has the tombstone form (etcd's
// mvcc.IsTombstone). It does not validate the rest of the key.
func IsTombstoneKey(b []byte) bool {
	return len(b) == TombstoneKeyLen && b[RevisionKeyLen] == tombstoneMarker
}

// ParseRevisionKey decodes a key of the "key" bucket. It accepts the 17-byte
// form and the 18-byte tombstone form and returns a *DecodeError (ErrInvalid)
// for any other length, a separator other than '_', an 18th byte other than
// 't', or a negative Main or Sub. etcd's BytesToBucketKey panics on the same
// inputs except the marker: it reads an 18-byte key with another last byte
// as a live revision, which no etcd version writes.
func ParseRevisionKey(b []byte) (r Revision, tombstone bool, err error) {
	const typ = "revision key"
	switch len(b) {
	case RevisionKeyLen:
	case TombstoneKeyLen:
		if b[RevisionKeyLen] != tombstoneMarker {
			return Revision{}, false, decodeErr(typ, 0, RevisionKeyLen, ErrInvalid, "marker byte %q, want %q", b[RevisionKeyLen], tombstoneMarker)
		}
		tombstone = true
	default:
		return Revision{}, false, decodeErr(typ, 0, 0, ErrInvalid, "length %d, want %d or %d", len(b), RevisionKeyLen, TombstoneKeyLen)
	}
	if b[8] != revisionSeparator {
		return Revision{}, false, decodeErr(typ, 0, 8, ErrInvalid, "separator %q, want %q", b[8], revisionSeparator)
	}
	main, sub := binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[9:17])
	if main > math.MaxInt64 || sub > math.MaxInt64 {
		return Revision{}, false, decodeErr(typ, 0, 0, ErrInvalid, "negative revision: main=%d sub=%d", int64(main), int64(sub))
	}
	return Revision{Main: int64(main), Sub: int64(sub)}, tombstone, nil
}
