package schema

import (
	"errors"
	"fmt"
)

// The kinds of decoding failure. Every decoder of this package returns a
// *DecodeError that wraps exactly one of them, so callers can test the kind
// with errors.Is and read the position with errors.As.
var (
	// ErrTruncated is returned when the input ends inside a value: a varint
	// without its last byte, a length-delimited field longer than what is
	// left, a group without its end.
	ErrTruncated = errors.New("schema: truncated input")
	// ErrOverflow is returned for a varint of more than 64 bits (ten bytes
	// with a tenth byte above 1), as protobuf refuses it.
	ErrOverflow = errors.New("schema: varint overflows 64 bits")
	// ErrWireType is returned when a field this package knows arrives with
	// another wire type than the one its message declares. protobuf-go would
	// keep such a field as an unknown field and leave the known one unset;
	// etcd never writes one, so here it is taken for damage.
	ErrWireType = errors.New("schema: wrong wire type")
	// ErrInvalid is returned for every other malformed input: field number 0
	// or out of range, a reserved wire type, an unmatched end of group, a
	// string that is not UTF-8, a revision key of the wrong length or marker,
	// a negative revision, a fixed-size value of the wrong size, bad JSON.
	ErrInvalid = errors.New("schema: invalid input")
)

// DecodeError describes where and why a value could not be decoded.
type DecodeError struct {
	// Type names what was being decoded: "KeyValue", "revision key",
	// "member JSON", ...
	Type string
	// Field is the protobuf field number the problem was found in, or 0
	// when it is not inside a field (a tag, a fixed-size value, JSON).
	Field int
	// Offset is the byte offset in the input where the bad value starts.
	Offset int
	// Reason says what is wrong, in words.
	Reason string
	// Err is ErrTruncated, ErrOverflow, ErrWireType or ErrInvalid.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Field != 0 {
		return fmt.Sprintf("schema: decode %s: field %d at offset %d: %s", e.Type, e.Field, e.Offset, e.Reason)
	}
	return fmt.Sprintf("schema: decode %s at offset %d: %s", e.Type, e.Offset, e.Reason)
}

// Unwrap returns the kind of the error (ErrTruncated, ...).
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(typ string, field, off int, kind error, format string, args ...any) error {
	return &DecodeError{Type: typ, Field: field, Offset: off, Reason: fmt.Sprintf(format, args...), Err: kind}
}
