package schema

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode/utf8"
)

// The protobuf wire format, as far as etcd's stored messages need it:
// varints, length-delimited fields, and skipping whatever else an unknown
// field may hold (fixed32, fixed64, groups). The rules follow protobuf-go's
// decoder (google.golang.org/protobuf/internal/impl/decode.go and
// encoding/protowire), which is what etcd 3.7 unmarshals with, except that a
// known field with a wrong wire type is refused (ErrWireType) instead of
// being kept as unknown.

// Wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

const (
	// maxFieldNumber is the largest field number a message may use
	// (protowire.MaxValidNumber); protobuf-go refuses a larger one at
	// message level.
	maxFieldNumber = 1<<29 - 1
	// maxGroupFieldNumber is the largest field number accepted inside a
	// skipped group: protowire.ConsumeTag only checks that the number fits
	// an int32.
	maxGroupFieldNumber = math.MaxInt32
	// recursionLimit bounds the nesting of skipped groups
	// (protowire.DefaultRecursionLimit).
	recursionLimit = 10000
)

// varint decodes the varint at b[i:] and returns it with the index after
// it. The error is ErrTruncated or ErrOverflow, unwrapped: the caller knows
// the context.
func varint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	return varintSlow(b, i)
}

func varintSlow(b []byte, i int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if i >= len(b) {
			return 0, i, ErrTruncated
		}
		c := b[i]
		i++
		if shift == 63 {
			// The tenth byte holds the 64th bit and nothing else: protobuf
			// refuses anything above 1 (a continuation bit included).
			if c > 1 {
				return 0, i, ErrOverflow
			}
			return v | uint64(c)<<63, i, nil
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
}

// grow returns b with room for n more bytes. Like slices.Grow it doubles the
// capacity when it must grow, so that appending record after record to one
// buffer stays linear; unlike slices.Grow it allocates once in every build
// (slices.Grow's append of make(n) is not fused into one allocation under
// the race detector, and TestKeyValueAllocations holds the count).
func grow(b []byte, n int) []byte {
	if n <= cap(b)-len(b) {
		return b
	}
	nb := make([]byte, len(b), max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

func sizeVarint(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func appendVarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// appendTag appends the tag of a field; num is below 16 for every field this
// package writes, so the tag is one byte.
func appendTag(b []byte, num int, wt byte) []byte { return append(b, byte(num<<3)|wt) }

// appendVarintField appends a varint field, or nothing for 0 (proto3 leaves
// zero scalars out).
func appendVarintField(b []byte, num int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendTag(b, num, wireVarint), v)
}

// appendBytesField appends a length-delimited field, or nothing for an empty
// value (proto3 bytes and strings have no presence).
func appendBytesField[T []byte | string](b []byte, num int, v T) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendVarint(appendTag(b, num, wireBytes), uint64(len(v)))
	return append(b, v...)
}

// sizeVarintField and sizeBytesField are the sizes of the fields above; the
// tag is one byte.
func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + sizeVarint(v)
}

func sizeBytesField(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + sizeVarint(uint64(n)) + n
}

// reader walks the fields of one message. typ names the message in errors.
type reader struct {
	typ string
	b   []byte
	i   int
}

func (r *reader) more() bool { return r.i < len(r.b) }

// tag reads the next field tag.
func (r *reader) tag() (num int, wt byte, err error) {
	start := r.i
	v, i, err := varint(r.b, r.i)
	if err != nil {
		return 0, 0, decodeErr(r.typ, 0, start, err, "bad field tag: %v", err)
	}
	if n := v >> 3; n == 0 || n > maxFieldNumber {
		return 0, 0, decodeErr(r.typ, 0, start, ErrInvalid, "field number %d out of range [1, %d]", n, maxFieldNumber)
	}
	r.i = i
	return int(v >> 3), byte(v & 7), nil
}

func (r *reader) wrongType(num int, wt, want byte) error {
	return decodeErr(r.typ, num, r.i, ErrWireType, "wire type %d, want %d", wt, want)
}

// uvarint reads the value of a varint field.
func (r *reader) uvarint(num int, wt byte) (uint64, error) {
	if wt != wireVarint {
		return 0, r.wrongType(num, wt, wireVarint)
	}
	start := r.i
	v, i, err := varint(r.b, r.i)
	if err != nil {
		return 0, decodeErr(r.typ, num, start, err, "bad varint: %v", err)
	}
	r.i = i
	return v, nil
}

// bytes reads the value of a length-delimited field. The result aliases the
// input and has no spare capacity, so appending to it cannot overwrite what
// follows.
func (r *reader) bytes(num int, wt byte) ([]byte, error) {
	if wt != wireBytes {
		return nil, r.wrongType(num, wt, wireBytes)
	}
	start := r.i
	n, i, err := varint(r.b, r.i)
	if err != nil {
		return nil, decodeErr(r.typ, num, start, err, "bad length: %v", err)
	}
	if n > uint64(len(r.b)-i) {
		return nil, decodeErr(r.typ, num, start, ErrTruncated, "length %d exceeds the %d bytes left", n, len(r.b)-i)
	}
	end := i + int(n)
	r.i = end
	return r.b[i:end:end], nil
}

// str reads a proto3 string field, which protobuf-go requires to be UTF-8.
func (r *reader) str(num int, wt byte) (string, error) {
	start := r.i
	v, err := r.bytes(num, wt)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(v) {
		return "", decodeErr(r.typ, num, start, ErrInvalid, "string is not valid UTF-8")
	}
	return string(v), nil
}

// skip passes over the value of an unknown field, as
// protowire.ConsumeFieldValue does.
func (r *reader) skip(num int, wt byte) error { return r.skipValue(num, wt, recursionLimit) }

func (r *reader) skipValue(num int, wt byte, depth int) error {
	start := r.i
	switch wt {
	case wireVarint:
		_, i, err := varint(r.b, r.i)
		if err != nil {
			return decodeErr(r.typ, num, start, err, "bad varint: %v", err)
		}
		r.i = i
	case wireFixed64, wireFixed32:
		n := 8
		if wt == wireFixed32 {
			n = 4
		}
		if len(r.b)-r.i < n {
			return decodeErr(r.typ, num, start, ErrTruncated, "fixed-size value of %d bytes, %d left", n, len(r.b)-r.i)
		}
		r.i += n
	case wireBytes:
		if _, err := r.bytes(num, wt); err != nil {
			return err
		}
	case wireStartGroup:
		if depth < 0 {
			return decodeErr(r.typ, num, start, ErrInvalid, "groups nested deeper than %d", recursionLimit)
		}
		for {
			tagStart := r.i
			v, i, err := varint(r.b, r.i)
			if err != nil {
				return decodeErr(r.typ, num, tagStart, err, "group without its end: %v", err)
			}
			n := v >> 3
			if n == 0 || n > maxGroupFieldNumber {
				return decodeErr(r.typ, num, tagStart, ErrInvalid, "field number %d out of range inside a group", n)
			}
			r.i = i
			if byte(v&7) == wireEndGroup {
				if int(n) != num {
					return decodeErr(r.typ, num, tagStart, ErrInvalid, "end of group %d inside group %d", n, num)
				}
				return nil
			}
			if err := r.skipValue(int(n), byte(v&7), depth-1); err != nil {
				return err
			}
		}
	case wireEndGroup:
		return decodeErr(r.typ, num, start, ErrInvalid, "end of group %d without its start", num)
	default:
		return decodeErr(r.typ, num, start, ErrInvalid, "reserved wire type %d", wt)
	}
	return nil
}
