package accord

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/accordkv/accord/internal/schema"
)

// This file turns the records of kv.db into the store's types. The layout
// and encodings are etcd's (v3.7), written by internal/schema, so that a
// kv.db, and a snapshot made of one, is a file etcdutl reads and etcd
// restores, and an etcd snapshot is a file accord loads:
//
//	bucket "key":   revision key -> mvccpb.KeyValue
//	bucket "lease": 8-byte big-endian lease ID -> leasepb.Lease
//	bucket "meta":  consistent_index, term, scheduled/finishedCompactRev, ...
//	bucket "alarm": etcdserverpb.AlarmMember -> (etcd: empty; accord: the node ID)
//
// Every record accord writes is sealed with a checksum (schema's
// FieldChecksum), checked on every read of a sealed record.

var errRecord = errors.New("malformed record")

// appendRevKey appends the bucket key of revision r.
func appendRevKey(dst []byte, r revision) []byte {
	sr := schema.Revision{Main: r.main, Sub: int64(r.sub)}
	if r.tomb {
		return schema.AppendTombstoneKey(dst, sr)
	}
	return schema.AppendRevisionKey(dst, sr)
}

// parseRevKey decodes a key of the key bucket.
func parseRevKey(b []byte) (revision, error) {
	r, tomb, err := schema.ParseRevisionKey(b)
	if err != nil {
		return revision{}, err
	}
	if r.Sub > math.MaxInt32 {
		return revision{}, fmt.Errorf("%w: revision key %x: sub revision out of range", errRecord, b)
	}
	return revision{main: r.Main, sub: int32(r.Sub), tomb: tomb}, nil
}

// appendKVRecord appends the sealed record of one version of key. A
// tombstone (v nil) holds only the key, as etcd writes it.
func appendKVRecord(dst []byte, key string, v *KeyValue) []byte {
	start := len(dst)
	kv := schemaKV(key, v)
	dst = slices.Grow(dst, schema.SizeKeyValue(&kv)+schema.ChecksumLen) // one allocation at most
	dst = schema.AppendKeyValue(dst, &kv)
	return schema.AppendChecksum(dst, start)
}

// kvRecordSize is the length of appendKVRecord's record.
func kvRecordSize(key string, v *KeyValue) int {
	kv := schemaKV(key, v)
	return schema.SizeKeyValue(&kv) + schema.ChecksumLen
}

func schemaKV(key string, v *KeyValue) schema.KeyValue {
	kv := schema.KeyValue{Key: []byte(key)}
	if v != nil {
		kv.CreateRevision, kv.ModRevision, kv.Version = v.CreateRevision, v.ModRevision, v.Version
		kv.Value, kv.Lease = v.Value, int64(v.Lease)
	}
	return kv
}

// decodeKVRecord decodes a version record, checking its checksum. The
// returned key and value alias rec.
func decodeKVRecord(rec []byte) (key []byte, kv KeyValue, err error) {
	if _, err := schema.VerifyChecksum("KeyValue", rec); err != nil {
		return nil, KeyValue{}, err
	}
	var s schema.KeyValue
	if err := schema.DecodeKeyValueNoCopy(rec, &s); err != nil {
		return nil, KeyValue{}, err
	}
	if len(s.Key) == 0 {
		return nil, KeyValue{}, fmt.Errorf("%w: version without a key", errRecord)
	}
	return s.Key, KeyValue{CreateRevision: s.CreateRevision, ModRevision: s.ModRevision, Version: s.Version, Value: s.Value, Lease: LeaseID(s.Lease)}, nil
}

// leaseRecord is a lease as kv.db holds it. etcd keeps TTLs in whole
// seconds; accord's are milliseconds (schema's TTLMillis extension). A
// record without them (from etcd) has its TTL in seconds only.
type leaseRecord struct {
	id        int64
	ttlMillis int64
}

func appendLeaseRecord(dst []byte, l leaseRecord) []byte {
	start := len(dst)
	dst = schema.AppendLease(dst, &schema.Lease{ID: l.id, TTL: (l.ttlMillis + 999) / 1000, TTLMillis: l.ttlMillis})
	return schema.AppendChecksum(dst, start)
}

func decodeLeaseRecord(rec []byte) (leaseRecord, error) {
	if _, err := schema.VerifyChecksum("Lease", rec); err != nil {
		return leaseRecord{}, err
	}
	var s schema.Lease
	if err := schema.DecodeLease(rec, &s); err != nil {
		return leaseRecord{}, err
	}
	l := leaseRecord{id: s.ID, ttlMillis: s.TTLMillis}
	if l.ttlMillis == 0 && s.TTL > 0 && s.TTL <= math.MaxInt64/1000 {
		l.ttlMillis = s.TTL * 1000
	}
	return l, nil
}

func leaseKey(id int64) []byte { return schema.AppendLeaseKey(nil, id) }

// alarmKey is the alarm bucket's key: etcdserverpb.AlarmMember{MemberID,
// Alarm}. The member ID is etcd's for the node (etcdMemberID).
func alarmKey(memberID uint64, alarm AlarmType) []byte {
	return schema.AppendAlarmMember(nil, schema.AlarmMember{MemberID: memberID, Alarm: schema.AlarmType(alarm)})
}

func parseAlarmKey(b []byte) (memberID uint64, alarm AlarmType, err error) {
	a, err := schema.DecodeAlarmMember(b)
	return a.MemberID, AlarmType(a.Alarm), err
}
