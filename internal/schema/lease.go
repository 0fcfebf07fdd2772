package schema

import (
	"encoding/binary"
)

// Lease is leasepb.Lease (server/lease/leasepb/lease.proto), the value of the
// "lease" bucket, keyed by AppendLeaseKey(ID):
//
//	message Lease {
//	  int64 ID = 1;
//	  int64 TTL = 2;
//	  int64 RemainingTTL = 3;
//	}
//
// TTL is the granted TTL in seconds; RemainingTTL is the remaining TTL the
// last lease checkpoint recorded, 0 when none did (server/lease/lease.go,
// persistTo).
type Lease struct {
	ID           int64
	TTL          int64
	RemainingTTL int64
	// TTLMillis is accord's extension, field 14 (which etcd skips): the
	// granted TTL in milliseconds, since accord's TTLs are not whole
	// seconds. 0 (left out) in etcd's records.
	TTLMillis int64
}

// FieldLeaseTTLMillis is the field number of Lease.TTLMillis.
const FieldLeaseTTLMillis = 14

// LeaseKeyLen is the length of a key of the "lease" bucket.
const LeaseKeyLen = 8

const typeLease = "Lease"

// AppendLeaseKey appends the key etcd stores lease id under: its 8 bytes
// big-endian (schema/lease.go, leaseIDToBytes).
func AppendLeaseKey(dst []byte, id int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(id))
}

// ParseLeaseKey decodes a key of the "lease" bucket. A key that is not 8
// bytes long is a *DecodeError (ErrInvalid); etcd panics on it.
func ParseLeaseKey(b []byte) (int64, error) {
	if len(b) != LeaseKeyLen {
		return 0, decodeErr("lease key", 0, 0, ErrInvalid, "length %d, want %d", len(b), LeaseKeyLen)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// SizeLease returns the length of l's encoding.
func SizeLease(l *Lease) int {
	return sizeVarintField(uint64(l.ID)) + sizeVarintField(uint64(l.TTL)) + sizeVarintField(uint64(l.RemainingTTL)) +
		sizeVarintField(uint64(l.TTLMillis))
}

// AppendLease appends l's protobuf encoding to dst, byte for byte what
// proto.Marshal writes for the same leasepb.Lease.
func AppendLease(dst []byte, l *Lease) []byte {
	dst = grow(dst, SizeLease(l))
	dst = appendVarintField(dst, 1, uint64(l.ID))
	dst = appendVarintField(dst, 2, uint64(l.TTL))
	dst = appendVarintField(dst, 3, uint64(l.RemainingTTL))
	return appendVarintField(dst, FieldLeaseTTLMillis, uint64(l.TTLMillis))
}

// DecodeLease decodes b into l, skipping unknown fields. On error l is zero
// and the error is a *DecodeError.
func DecodeLease(b []byte, l *Lease) error {
	*l = Lease{}
	r := reader{typ: typeLease, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err != nil {
			*l = Lease{}
			return err
		}
		var v uint64
		switch num {
		case 1:
			v, err = r.uvarint(num, wt)
			l.ID = int64(v)
		case 2:
			v, err = r.uvarint(num, wt)
			l.TTL = int64(v)
		case 3:
			v, err = r.uvarint(num, wt)
			l.RemainingTTL = int64(v)
		case FieldLeaseTTLMillis:
			v, err = r.uvarint(num, wt)
			l.TTLMillis = int64(v)
		default:
			err = r.skip(num, wt)
		}
		if err != nil {
			*l = Lease{}
			return err
		}
	}
	return nil
}
