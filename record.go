package accord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// This file encodes the records of kv.db. The layout is etcd's (v3.7,
// server/storage/schema and mvcc), so that a kv.db, and a snapshot made of
// one, is a file etcdutl reads and etcd restores, and an etcd snapshot is a
// file accord loads:
//
//	bucket "key":   revision key -> mvccpb.KeyValue
//	bucket "lease": 8-byte big-endian lease ID -> leasepb.Lease
//	bucket "meta":  consistent_index, term, scheduled/finishedCompactRev, ...
//	bucket "alarm": etcdserverpb.AlarmMember -> (empty; accord: the node ID)
//
// A revision key is the 8-byte big-endian main revision, '_', the 8-byte
// big-endian sub revision (the write's position in its transaction), and a
// trailing 't' for a tombstone (a delete).
//
// Values are protobuf messages, written by hand here so that the root
// module needs no protobuf library. accord appends one field etcd does not
// define, number 15 (fixed32): a CRC-32C of every byte before it. Protobuf
// readers, etcd's among them, skip unknown fields, so the record stays
// etcd's; accord checks the sum whenever it is present, because bbolt
// checksums nothing but its meta pages and a flipped byte in a value would
// otherwise be served as data. Records without it (loaded from an etcd
// snapshot) are read unchecked.

const (
	revKeyLen     = 17
	revKeyTombLen = 18
	revKeySep     = '_'
	revKeyTomb    = 't'

	fieldCRC = 15 // accord's record checksum (fixed32)
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errRecord = errors.New("malformed record")

// appendRevKey appends the bucket key of revision r.
func appendRevKey(dst []byte, r revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.main))
	dst = append(dst, revKeySep)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.sub))
	if r.tomb {
		dst = append(dst, revKeyTomb)
	}
	return dst
}

// parseRevKey decodes a bucket key of the key bucket.
func parseRevKey(b []byte) (revision, error) {
	if (len(b) != revKeyLen && len(b) != revKeyTombLen) || b[8] != revKeySep ||
		(len(b) == revKeyTombLen && b[17] != revKeyTomb) {
		return revision{}, fmt.Errorf("%w: revision key %x", errRecord, b)
	}
	main := binary.BigEndian.Uint64(b[:8])
	sub := binary.BigEndian.Uint64(b[9:17])
	if main > math.MaxInt64 || sub > math.MaxInt32 {
		return revision{}, fmt.Errorf("%w: revision key %x out of range", errRecord, b)
	}
	return revision{main: int64(main), sub: int32(sub), tomb: len(b) == revKeyTombLen}, nil
}

func appendTag(dst []byte, field, wt int) []byte {
	return binary.AppendUvarint(dst, uint64(field)<<3|uint64(wt))
}

func appendVarintField(dst []byte, field int, v int64) []byte {
	if v == 0 {
		return dst // proto3: zero scalars are left out
	}
	return binary.AppendUvarint(appendTag(dst, field, wireVarint), uint64(v))
}

func appendBytesField(dst []byte, field int, b []byte) []byte {
	if len(b) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(appendTag(dst, field, wireBytes), uint64(len(b)))
	return append(dst, b...)
}

func appendStringField(dst []byte, field int, s string) []byte {
	if len(s) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(appendTag(dst, field, wireBytes), uint64(len(s)))
	return append(dst, s...)
}

// appendCRC seals a record that starts at dst[start:].
func appendCRC(dst []byte, start int) []byte {
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = appendTag(dst, fieldCRC, wireFixed32)
	return binary.LittleEndian.AppendUint32(dst, sum)
}

// appendKVRecord appends the record of one version (mvccpb.KeyValue). A
// tombstone holds only the key, as etcd writes it.
func appendKVRecord(dst []byte, key string, v *KeyValue) []byte {
	start := len(dst)
	dst = appendStringField(dst, 1, key)
	if v != nil {
		dst = appendVarintField(dst, 2, v.CreateRevision)
		dst = appendVarintField(dst, 3, v.ModRevision)
		dst = appendVarintField(dst, 4, v.Version)
		dst = appendBytesField(dst, 5, v.Value)
		dst = appendVarintField(dst, 6, int64(v.Lease))
	}
	return appendCRC(dst, start)
}

// protoField is one decoded field of a message.
type protoField struct {
	num  int
	wt   int
	u    uint64 // varint and fixed values
	data []byte // length-delimited values (aliases the input)
	end  int    // offset just past the field
}

// nextField decodes the field at b[off:].
func nextField(b []byte, off int) (protoField, error) {
	tag, n := binary.Uvarint(b[off:])
	if n <= 0 || tag>>3 == 0 || tag>>3 > math.MaxInt32 {
		return protoField{}, errRecord
	}
	f := protoField{num: int(tag >> 3), wt: int(tag & 7)}
	off += n
	switch f.wt {
	case wireVarint:
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return protoField{}, errRecord
		}
		f.u, off = v, off+n
	case wireFixed64:
		if len(b)-off < 8 {
			return protoField{}, errRecord
		}
		f.u, off = binary.LittleEndian.Uint64(b[off:]), off+8
	case wireFixed32:
		if len(b)-off < 4 {
			return protoField{}, errRecord
		}
		f.u, off = uint64(binary.LittleEndian.Uint32(b[off:])), off+4
	case wireBytes:
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || l > uint64(len(b)-off-n) {
			return protoField{}, errRecord
		}
		off += n
		f.data, off = b[off:off+int(l)], off+int(l)
	default:
		return protoField{}, errRecord
	}
	f.end = off
	return f, nil
}

// forEachField calls fn for every field of a record and checks accord's
// CRC field when there is one (it must be the last field).
func forEachField(b []byte, fn func(f *protoField) error) error {
	for off := 0; off < len(b); {
		f, err := nextField(b, off)
		if err != nil {
			return err
		}
		if f.num == fieldCRC && f.wt == wireFixed32 {
			if f.end != len(b) {
				return fmt.Errorf("%w: checksum field is not last", errRecord)
			}
			if uint32(f.u) != crc32.Checksum(b[:off], castagnoli) {
				return fmt.Errorf("%w: checksum mismatch", errRecord)
			}
			return nil
		}
		if err := fn(&f); err != nil {
			return err
		}
		off = f.end
	}
	return nil
}

func asInt64(f *protoField) (int64, error) {
	if f.wt != wireVarint {
		return 0, fmt.Errorf("%w: field %d has wire type %d", errRecord, f.num, f.wt)
	}
	return int64(f.u), nil
}

// decodeKVRecord decodes a version record. The returned Key and Value
// alias rec.
func decodeKVRecord(rec []byte) (key []byte, kv KeyValue, err error) {
	err = forEachField(rec, func(f *protoField) error {
		var err error
		switch f.num {
		case 1:
			if f.wt != wireBytes {
				return errRecord
			}
			key = f.data
		case 2:
			kv.CreateRevision, err = asInt64(f)
		case 3:
			kv.ModRevision, err = asInt64(f)
		case 4:
			kv.Version, err = asInt64(f)
		case 5:
			if f.wt != wireBytes {
				return errRecord
			}
			kv.Value = f.data
		case 6:
			var l int64
			l, err = asInt64(f)
			kv.Lease = LeaseID(l)
		}
		return err
	})
	if err == nil && len(key) == 0 {
		err = fmt.Errorf("%w: version without a key", errRecord)
	}
	return key, kv, err
}

// leaseRecord is a lease as kv.db holds it (leasepb.Lease). etcd keeps
// TTLs in whole seconds; accord's are milliseconds, kept in field 14, which
// etcd skips. A record without it (from etcd) has TTL seconds only.
type leaseRecord struct {
	id        int64
	ttlMillis int64
}

const fieldLeaseTTLMillis = 14

func appendLeaseRecord(dst []byte, l leaseRecord) []byte {
	start := len(dst)
	dst = appendVarintField(dst, 1, l.id)
	dst = appendVarintField(dst, 2, (l.ttlMillis+999)/1000)
	dst = appendVarintField(dst, fieldLeaseTTLMillis, l.ttlMillis)
	return appendCRC(dst, start)
}

func decodeLeaseRecord(rec []byte) (leaseRecord, error) {
	var l leaseRecord
	var secs int64
	err := forEachField(rec, func(f *protoField) error {
		var err error
		switch f.num {
		case 1:
			l.id, err = asInt64(f)
		case 2:
			secs, err = asInt64(f)
		case fieldLeaseTTLMillis:
			l.ttlMillis, err = asInt64(f)
		}
		return err
	})
	if err != nil {
		return l, err
	}
	if l.ttlMillis == 0 && secs > 0 && secs <= math.MaxInt64/1000 {
		l.ttlMillis = secs * 1000
	}
	return l, nil
}

func leaseKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// alarmKey is the alarm bucket's key: etcdserverpb.AlarmMember{MemberID,
// Alarm}. The member ID is etcd's for the node (etcdMemberID).
func alarmKey(memberID uint64, alarm AlarmType) []byte {
	var b []byte
	if memberID != 0 {
		b = binary.AppendUvarint(appendTag(b, 1, wireVarint), memberID)
	}
	return appendVarintField(b, 2, int64(alarm))
}

func parseAlarmKey(b []byte) (memberID uint64, alarm AlarmType, err error) {
	err = forEachField(b, func(f *protoField) error {
		if f.wt != wireVarint {
			return errRecord
		}
		switch f.num {
		case 1:
			memberID = f.u
		case 2:
			alarm = AlarmType(f.u)
		}
		return nil
	})
	return memberID, alarm, err
}
