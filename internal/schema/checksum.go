package schema

import (
	"encoding/binary"
	"hash/crc32"
)

// Record checksums: accord's extension to etcd's records.
//
// bbolt checksums nothing but its meta pages, so a flipped byte in a value
// of the "key" or "lease" bucket would be read back as data. accord seals
// each record it writes with one more protobuf field, FieldChecksum
// (fixed32): the CRC-32C (Castagnoli) of every byte before it. Protobuf
// readers skip fields they do not know, etcd's among them, so a sealed
// record is still etcd's. Records without it (written by etcd) are read
// unchecked.

// FieldChecksum is the field number of a record's checksum.
const FieldChecksum = 15

// ChecksumLen is the length of the checksum field: its tag and 4 bytes.
const ChecksumLen = 1 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendChecksum seals the record that starts at dst[start:] and ends at
// the end of dst.
func AppendChecksum(dst []byte, start int) []byte {
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = appendTag(dst, FieldChecksum, wireFixed32)
	return binary.LittleEndian.AppendUint32(dst, sum)
}

// VerifyChecksum walks the fields of rec (a record of message type typ,
// for errors) and checks its checksum if it has one. It reports whether it
// had one. A checksum that does not match, a checksum field that is not
// the last, or a malformed record is a *DecodeError.
func VerifyChecksum(typ string, rec []byte) (sealed bool, err error) {
	r := reader{typ: typ, b: rec}
	for r.more() {
		start := r.i
		num, wt, err := r.tag()
		if err != nil {
			return false, err
		}
		if num != FieldChecksum {
			if err := r.skip(num, wt); err != nil {
				return false, err
			}
			continue
		}
		if wt != wireFixed32 {
			return false, r.wrongType(num, wt, wireFixed32)
		}
		if len(rec)-r.i != 4 {
			return false, decodeErr(typ, num, start, ErrInvalid, "checksum field is not the last")
		}
		if got, want := binary.LittleEndian.Uint32(rec[r.i:]), crc32.Checksum(rec[:start], castagnoli); got != want {
			return false, decodeErr(typ, num, start, ErrInvalid, "checksum %08x, the record sums to %08x", got, want)
		}
		return true, nil
	}
	return false, nil
}
