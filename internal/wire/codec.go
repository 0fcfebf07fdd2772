package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Encoding format (CodecVersion 1)
//
// Integers are varints as in encoding/binary: unsigned fields (lengths,
// counts) are uvarints, signed fields (int64) are zig-zag varints. The decoder
// accepts only the minimal encoding of a varint, so every value has exactly
// one encoding and decode(b) followed by encode reproduces b byte for byte.
// bytes and string fields are a uvarint length followed by that many bytes.
// uint8 fields are one raw byte; a bool is one byte, 0 or 1; a flags byte
// packs several bools and must have no undefined bit set.
//
//	command     = version:byte type:byte payload
//	payload     = txn                          ; CmdTxn
//	            | compact:varint               ; CmdCompact
//	            | lease:varint ttl:varint      ; CmdLeaseGrant
//	            | lease:varint                 ; CmdLeaseRevoke, CmdLeaseExpire
//	            |                              ; CmdNoop: empty
//	            | id:string name:string n:uvarint url:string*n ; CmdMemberAttrs
//	            | action:byte type:varint node:string ; CmdAlarm
//	txn         = ncmp:uvarint compare*ncmp
//	              nsucc:uvarint op*nsucc nfail:uvarint op*nfail
//	compare     = result:byte target:byte key:string range_end:string
//	              int:varint value:bytes
//	op          = 1 range | 2 put | 3 delete_range | 4 txn
//	range       = key:string range_end:string limit:varint revision:varint
//	              sort_order:byte sort_target:byte flags:byte
//	              min_mod_rev:varint max_mod_rev:varint
//	              min_create_rev:varint max_create_rev:varint
//	              ; flags: 1 Serializable, 2 KeysOnly, 4 CountOnly
//	put         = key:string value:bytes lease:varint flags:byte
//	              ; flags: 1 PrevKV, 2 IgnoreValue, 4 IgnoreLease
//	delete_range = key:string range_end:string prev_kv:bool
//
// The payload must end exactly at the end of the input. Enumerated uint8
// fields (SortOrder, Compare.Result, ...) are carried as raw bytes and are not
// validated here; that is the apply path's job. A new kind of RequestOp needs
// a new CodecVersion or CmdType, because an old decoder rejects an unknown op
// tag as ErrCorrupt.

// Sentinel errors. Decoding errors wrap one of these with detail (such as the
// offset of the problem), so test them with errors.Is, not ==.
var (
	// ErrTruncated reports input that ends in the middle of a value.
	ErrTruncated = errors.New("wire: truncated input")

	// ErrCorrupt reports input that cannot be a valid encoding: an overlong
	// or overflowing varint, a length or element count larger than the
	// remaining input, a bool byte other than 0 or 1, an undefined flag bit
	// or op tag, transactions nested deeper than MaxTxnDepth, or trailing
	// bytes after the payload.
	ErrCorrupt = errors.New("wire: corrupt input")

	// ErrUnknownVersion reports an encoded command whose first byte is not
	// CodecVersion.
	ErrUnknownVersion = errors.New("wire: unknown codec version")

	// ErrUnknownCommand reports a command type this version does not know.
	// The concrete error is an *UnknownCommandError carrying the type.
	ErrUnknownCommand = errors.New("wire: unknown command type")

	// ErrInvalidCommand reports a Command that cannot be encoded: nil, a
	// CmdTxn without Txn, a payload field that does not belong to the
	// command's Type, a RequestOp with zero or several fields set, or
	// transactions nested deeper than MaxTxnDepth.
	ErrInvalidCommand = errors.New("wire: invalid command")
)

// MaxTxnDepth is the deepest nesting of transactions that can be encoded or
// decoded. A Command's own TxnRequest is at depth 1, a TxnRequest inside one
// of its RequestOps at depth 2, and so on. The bound keeps a hostile entry
// from overflowing the decoder's stack.
const MaxTxnDepth = 32

// UnknownCommandError is returned for a command whose type this version does
// not know. errors.Is(err, ErrUnknownCommand) holds for it.
type UnknownCommandError struct {
	Type CmdType
}

// Error implements error.
func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("wire: unknown command type %d", uint8(e.Type))
}

// Unwrap returns ErrUnknownCommand.
func (e *UnknownCommandError) Unwrap() error { return ErrUnknownCommand }

// Encoder appends primitive values to a byte slice in the wire format. The
// zero value is ready to use. Encoding never fails and allocates only to grow
// the buffer.
type Encoder struct{ buf []byte }

// NewEncoder returns an Encoder that appends to buf[:0], reusing its
// capacity.
func NewEncoder(buf []byte) *Encoder { return &Encoder{buf: buf[:0]} }

// Uvarint appends x as an unsigned varint.
func (e *Encoder) Uvarint(x uint64) { e.buf = binary.AppendUvarint(e.buf, x) }

// Varint appends x as a zig-zag signed varint.
func (e *Encoder) Varint(x int64) { e.buf = binary.AppendVarint(e.buf, x) }

// Byte appends b.
func (e *Encoder) Byte(b byte) { e.buf = append(e.buf, b) }

// Bool appends v as one byte, 1 for true and 0 for false.
func (e *Encoder) Bool(v bool) {
	var b byte
	if v {
		b = 1
	}
	e.buf = append(e.buf, b)
}

// Bytes appends the length of b as a uvarint, then b. A nil and an empty
// slice encode the same.
func (e *Encoder) Bytes(b []byte) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(b)))
	e.buf = append(e.buf, b...)
}

// String appends the length of s as a uvarint, then s.
func (e *Encoder) String(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Data returns the encoded bytes. The slice aliases the Encoder's buffer and
// is valid until the next call that appends or resets.
func (e *Encoder) Data() []byte { return e.buf }

// Len returns the number of encoded bytes.
func (e *Encoder) Len() int { return len(e.buf) }

// Reset empties the Encoder, keeping its buffer for reuse.
func (e *Encoder) Reset() { e.buf = e.buf[:0] }

// Decoder reads primitive values written by an Encoder from a byte slice.
//
// Errors are sticky: after the first failure every method returns the zero
// value, Len returns 0 and Err returns that first error, which wraps
// ErrTruncated or ErrCorrupt. A caller can therefore decode a whole structure
// and check Err (or Finish) once at the end.
//
// Lengths and counts are checked against the remaining input before anything
// is allocated, so the bytes allocated by Bytes and String together never
// exceed the length of the input.
//
// Note that Decoder.String consumes input; do not print a Decoder with fmt,
// which would call it.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder returns a Decoder reading b. The Decoder does not modify b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Reset makes d read b from the start and clears its error.
func (d *Decoder) Reset(b []byte) { *d = Decoder{buf: b} }

// Err returns the first error the Decoder met, or nil.
func (d *Decoder) Err() error { return d.err }

// Len returns the number of unread bytes, or 0 after an error.
func (d *Decoder) Len() int {
	if d.err != nil {
		return 0
	}
	return len(d.buf) - d.off
}

// Offset returns the number of bytes consumed so far.
func (d *Decoder) Offset() int { return d.off }

// Finish returns Err if it is set, and otherwise an error wrapping
// ErrCorrupt if unread bytes remain. It does not change the Decoder's state.
func (d *Decoder) Finish() error {
	if d.err != nil {
		return d.err
	}
	if n := len(d.buf) - d.off; n > 0 {
		return fmt.Errorf("%w: %d trailing bytes at offset %d", ErrCorrupt, n, d.off)
	}
	return nil
}

// Fail records err as the Decoder's error unless one is already recorded,
// so that a caller's own validation failures are sticky like the Decoder's.
// A nil err is ignored.
func (d *Decoder) Fail(err error) {
	if d.err == nil && err != nil {
		d.err = err
	}
}

// fail records an error wrapping base (ErrTruncated or ErrCorrupt) at the
// current offset, unless an error is already recorded.
func (d *Decoder) fail(base error, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", base, what, d.off)
	}
}

// Uvarint reads an unsigned varint. A varint that is not minimally encoded
// or does not fit in 64 bits is ErrCorrupt; one cut short is ErrTruncated.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	// Fast path: one byte.
	if d.off < len(d.buf) && d.buf[d.off] < 0x80 {
		x := uint64(d.buf[d.off])
		d.off++
		return x
	}
	var x uint64
	var s uint
	for i := 0; ; i++ {
		if d.off+i >= len(d.buf) {
			d.fail(ErrTruncated, "varint")
			return 0
		}
		b := d.buf[d.off+i]
		if i == binary.MaxVarintLen64-1 && b > 1 {
			d.fail(ErrCorrupt, "varint overflows 64 bits")
			return 0
		}
		if b < 0x80 {
			if b == 0 && i > 0 {
				d.fail(ErrCorrupt, "overlong varint")
				return 0
			}
			d.off += i + 1
			return x | uint64(b)<<s
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
}

// Varint reads a zig-zag signed varint, with the same rules as Uvarint.
func (d *Decoder) Varint() int64 {
	ux := d.Uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail(ErrTruncated, "byte")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

// Bool reads one byte that must be 0 (false) or 1 (true); any other value
// is ErrCorrupt.
func (d *Decoder) Bool() bool {
	if d.err != nil {
		return false
	}
	if d.off >= len(d.buf) {
		d.fail(ErrTruncated, "bool")
		return false
	}
	switch d.buf[d.off] {
	case 0:
		d.off++
		return false
	case 1:
		d.off++
		return true
	}
	d.fail(ErrCorrupt, "bool byte not 0 or 1")
	return false
}

// Flags reads one byte and checks that no bit outside mask is set; an
// undefined bit is ErrCorrupt.
func (d *Decoder) Flags(mask byte) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail(ErrTruncated, "flags")
		return 0
	}
	b := d.buf[d.off]
	if b&^mask != 0 {
		d.fail(ErrCorrupt, "undefined flag bit")
		return 0
	}
	d.off++
	return b
}

// take reads a uvarint length and returns that many bytes of the input.
// A length beyond the remaining input is ErrCorrupt.
func (d *Decoder) take() []byte {
	start := d.off
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if rem := len(d.buf) - d.off; n > uint64(rem) {
		d.off = start
		d.fail(ErrCorrupt, fmt.Sprintf("length %d exceeds remaining %d bytes", n, rem))
		return nil
	}
	p := d.buf[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return p
}

// Bytes reads a length-prefixed byte string and returns a copy of it, which
// the caller may keep after the input is reused. An empty string is returned
// as nil.
func (d *Decoder) Bytes() []byte {
	p := d.take()
	if len(p) == 0 {
		return nil
	}
	b := make([]byte, len(p))
	copy(b, p)
	return b
}

// BytesNoCopy reads a length-prefixed byte string and returns it as a
// subslice of the input, with its capacity capped at its length. It is only
// valid as long as the input is. An empty string is returned as nil.
func (d *Decoder) BytesNoCopy() []byte {
	p := d.take()
	if len(p) == 0 {
		return nil
	}
	return p
}

// String reads a length-prefixed string. The result does not alias the
// input.
func (d *Decoder) String() string {
	p := d.take()
	if len(p) == 0 {
		return ""
	}
	return string(p)
}

// Count reads a uvarint element count for a list whose elements each take at
// least minItemSize bytes (values below 1 count as 1). A count that the
// remaining input cannot hold is ErrCorrupt, so a caller may allocate a slice
// of the returned length without trusting the input.
func (d *Decoder) Count(minItemSize int) int {
	start := d.off
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if minItemSize < 1 {
		minItemSize = 1
	}
	if rem := len(d.buf) - d.off; n > uint64(rem/minItemSize) {
		d.off = start
		d.fail(ErrCorrupt, fmt.Sprintf("count %d exceeds what remaining %d bytes can hold", n, rem))
		return 0
	}
	return int(n)
}

// RequestOp tags.
const (
	opRange       byte = 1
	opPut         byte = 2
	opDeleteRange byte = 3
	opTxn         byte = 4
)

// Flag bits.
const (
	rangeSerializable byte = 1 << 0
	rangeKeysOnly     byte = 1 << 1
	rangeCountOnly    byte = 1 << 2
	rangeFlagsMask         = rangeSerializable | rangeKeysOnly | rangeCountOnly

	putPrevKV      byte = 1 << 0
	putIgnoreValue byte = 1 << 1
	putIgnoreLease byte = 1 << 2
	putFlagsMask        = putPrevKV | putIgnoreValue | putIgnoreLease
)

// Smallest encodings, used to bound element counts.
const (
	// result, target, key, range_end, int, value: one byte each at least.
	minCompareSize = 6
	// delete_range: tag, key, range_end, prev_kv; txn: tag and three
	// counts. Range and put are larger.
	minOpSize = 4
)

// EncodeCommand returns the encoding of c in a new slice. See AppendCommand
// for the errors.
func EncodeCommand(c *Command) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	b, err := AppendCommand(make([]byte, 0, commandSize(c)), c)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// AppendCommand appends the encoding of c to dst and returns the extended
// slice. It returns an *UnknownCommandError for a type that is not Known and
// an error wrapping ErrInvalidCommand for a command that cannot be encoded
// (see ErrInvalidCommand); on error dst is returned unchanged in length.
// It allocates nothing beyond growing dst.
func AppendCommand(dst []byte, c *Command) ([]byte, error) {
	start := len(dst)
	e := Encoder{buf: dst}
	if err := encodeCommand(&e, c); err != nil {
		return dst[:start], err
	}
	return e.buf, nil
}

func encodeCommand(e *Encoder, c *Command) error {
	if c == nil {
		return fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	if !c.Type.Known() {
		return &UnknownCommandError{Type: c.Type}
	}
	isLease := c.Type == CmdLeaseGrant || c.Type == CmdLeaseRevoke || c.Type == CmdLeaseExpire
	switch {
	case c.Txn != nil && c.Type != CmdTxn:
		return strayField(c.Type, "Txn")
	case c.Compact != 0 && c.Type != CmdCompact:
		return strayField(c.Type, "Compact")
	case c.LeaseID != 0 && !isLease:
		return strayField(c.Type, "LeaseID")
	case c.LeaseTTLMillis != 0 && c.Type != CmdLeaseGrant:
		return strayField(c.Type, "LeaseTTLMillis")
	case c.Member != nil && c.Type != CmdMemberAttrs:
		return strayField(c.Type, "Member")
	case c.Alarm != nil && c.Type != CmdAlarm:
		return strayField(c.Type, "Alarm")
	}
	e.Byte(CodecVersion)
	e.Byte(byte(c.Type))
	switch c.Type {
	case CmdTxn:
		if c.Txn == nil {
			return fmt.Errorf("%w: %s command without Txn", ErrInvalidCommand, c.Type)
		}
		return encodeTxn(e, c.Txn, 1)
	case CmdCompact:
		e.Varint(c.Compact)
	case CmdLeaseGrant:
		e.Varint(c.LeaseID)
		e.Varint(c.LeaseTTLMillis)
	case CmdLeaseRevoke, CmdLeaseExpire:
		e.Varint(c.LeaseID)
	case CmdMemberAttrs:
		if c.Member == nil || c.Member.ID == "" {
			return fmt.Errorf("%w: %s command without a member ID", ErrInvalidCommand, c.Type)
		}
		e.String(c.Member.ID)
		e.String(c.Member.Name)
		e.Uvarint(uint64(len(c.Member.ClientURLs)))
		for _, u := range c.Member.ClientURLs {
			e.String(u)
		}
	case CmdAlarm:
		if c.Alarm == nil || c.Alarm.NodeID == "" {
			return fmt.Errorf("%w: %s command without a member", ErrInvalidCommand, c.Type)
		}
		e.Byte(c.Alarm.Action)
		e.Varint(int64(c.Alarm.Type))
		e.String(c.Alarm.NodeID)
	case CmdNoop:
	}
	return nil
}

func strayField(t CmdType, field string) error {
	return fmt.Errorf("%w: %s command has %s set", ErrInvalidCommand, t, field)
}

func encodeTxn(e *Encoder, t *TxnRequest, depth int) error {
	if depth > MaxTxnDepth {
		return fmt.Errorf("%w: transactions nested deeper than %d", ErrInvalidCommand, MaxTxnDepth)
	}
	e.Uvarint(uint64(len(t.Compare)))
	for i := range t.Compare {
		c := &t.Compare[i]
		e.Byte(c.Result)
		e.Byte(c.Target)
		e.String(c.Key)
		e.String(c.RangeEnd)
		e.Varint(c.Int)
		e.Bytes(c.Value)
	}
	if err := encodeOps(e, t.Success, depth); err != nil {
		return err
	}
	return encodeOps(e, t.Failure, depth)
}

func encodeOps(e *Encoder, ops []RequestOp, depth int) error {
	e.Uvarint(uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		n := 0
		if op.Range != nil {
			n++
		}
		if op.Put != nil {
			n++
		}
		if op.DeleteRange != nil {
			n++
		}
		if op.Txn != nil {
			n++
		}
		if n != 1 {
			return fmt.Errorf("%w: request op with %d fields set, want 1", ErrInvalidCommand, n)
		}
		switch {
		case op.Range != nil:
			r := op.Range
			e.Byte(opRange)
			e.String(r.Key)
			e.String(r.RangeEnd)
			e.Varint(r.Limit)
			e.Varint(r.Revision)
			e.Byte(r.SortOrder)
			e.Byte(r.SortTarget)
			var f byte
			if r.Serializable {
				f |= rangeSerializable
			}
			if r.KeysOnly {
				f |= rangeKeysOnly
			}
			if r.CountOnly {
				f |= rangeCountOnly
			}
			e.Byte(f)
			e.Varint(r.MinModRev)
			e.Varint(r.MaxModRev)
			e.Varint(r.MinCreateRev)
			e.Varint(r.MaxCreateRev)
		case op.Put != nil:
			p := op.Put
			e.Byte(opPut)
			e.String(p.Key)
			e.Bytes(p.Value)
			e.Varint(p.Lease)
			var f byte
			if p.PrevKV {
				f |= putPrevKV
			}
			if p.IgnoreValue {
				f |= putIgnoreValue
			}
			if p.IgnoreLease {
				f |= putIgnoreLease
			}
			e.Byte(f)
		case op.DeleteRange != nil:
			r := op.DeleteRange
			e.Byte(opDeleteRange)
			e.String(r.Key)
			e.String(r.RangeEnd)
			e.Bool(r.PrevKV)
		case op.Txn != nil:
			e.Byte(opTxn)
			if err := encodeTxn(e, op.Txn, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// commandSize returns the length of c's encoding, or an underestimate if c
// cannot be encoded. EncodeCommand uses it to allocate once.
func commandSize(c *Command) int {
	n := 2
	switch c.Type {
	case CmdTxn:
		if c.Txn != nil {
			n += txnSize(c.Txn, 1)
		}
	case CmdCompact:
		n += varintSize(c.Compact)
	case CmdLeaseGrant:
		n += varintSize(c.LeaseID) + varintSize(c.LeaseTTLMillis)
	case CmdLeaseRevoke, CmdLeaseExpire:
		n += varintSize(c.LeaseID)
	case CmdMemberAttrs:
		if m := c.Member; m != nil {
			n += stringSize(len(m.ID)) + stringSize(len(m.Name)) + uvarintSize(uint64(len(m.ClientURLs)))
			for _, u := range m.ClientURLs {
				n += stringSize(len(u))
			}
		}
	case CmdAlarm:
		if a := c.Alarm; a != nil {
			n += 1 + varintSize(int64(a.Type)) + stringSize(len(a.NodeID))
		}
	}
	return n
}

func txnSize(t *TxnRequest, depth int) int {
	if depth > MaxTxnDepth {
		return 0
	}
	n := uvarintSize(uint64(len(t.Compare))) +
		uvarintSize(uint64(len(t.Success))) +
		uvarintSize(uint64(len(t.Failure)))
	for i := range t.Compare {
		c := &t.Compare[i]
		n += 2 + stringSize(len(c.Key)) + stringSize(len(c.RangeEnd)) +
			varintSize(c.Int) + stringSize(len(c.Value))
	}
	for _, ops := range [2][]RequestOp{t.Success, t.Failure} {
		for i := range ops {
			n += opSize(&ops[i], depth)
		}
	}
	return n
}

func opSize(op *RequestOp, depth int) int {
	switch {
	case op.Range != nil:
		r := op.Range
		return 1 + stringSize(len(r.Key)) + stringSize(len(r.RangeEnd)) +
			varintSize(r.Limit) + varintSize(r.Revision) + 3 +
			varintSize(r.MinModRev) + varintSize(r.MaxModRev) +
			varintSize(r.MinCreateRev) + varintSize(r.MaxCreateRev)
	case op.Put != nil:
		p := op.Put
		return 1 + stringSize(len(p.Key)) + stringSize(len(p.Value)) +
			varintSize(p.Lease) + 1
	case op.DeleteRange != nil:
		r := op.DeleteRange
		return 1 + stringSize(len(r.Key)) + stringSize(len(r.RangeEnd)) + 1
	case op.Txn != nil:
		return 1 + txnSize(op.Txn, depth+1)
	}
	return 0
}

func uvarintSize(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintSize(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintSize(ux)
}

func stringSize(n int) int { return uvarintSize(uint64(n)) + n }

// DecodeCommand decodes one command encoded by AppendCommand. It is strict:
// it returns an error wrapping ErrUnknownVersion if the first byte is not
// CodecVersion, an *UnknownCommandError for a type this version does not
// know (a type byte of 0, CmdInvalid, is ErrCorrupt instead, since no version
// uses it), and an error wrapping ErrTruncated or ErrCorrupt for any other
// malformed input, including bytes left over after the payload. It never
// panics.
//
// The result shares no memory with b, which the caller may reuse. Empty byte
// strings decode as nil and empty lists as nil slices; for CmdTxn, Txn is
// never nil. Memory allocated is linear in len(b).
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrTruncated)
	}
	if b[0] != CodecVersion {
		return nil, fmt.Errorf("%w %d (this build knows %d)", ErrUnknownVersion, b[0], CodecVersion)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: command type at offset 1", ErrTruncated)
	}
	t := CmdType(b[1])
	if t == CmdInvalid {
		return nil, fmt.Errorf("%w: command type 0 at offset 1", ErrCorrupt)
	}
	if !t.Known() {
		return nil, &UnknownCommandError{Type: t}
	}
	d := Decoder{buf: b, off: 2}
	c := &Command{Type: t}
	switch t {
	case CmdTxn:
		c.Txn = decodeTxn(&d, 1)
	case CmdCompact:
		c.Compact = d.Varint()
	case CmdLeaseGrant:
		c.LeaseID = d.Varint()
		c.LeaseTTLMillis = d.Varint()
	case CmdLeaseRevoke, CmdLeaseExpire:
		c.LeaseID = d.Varint()
	case CmdMemberAttrs:
		m := &MemberAttrs{ID: d.String(), Name: d.String()}
		if n := d.Count(1); n > 0 {
			m.ClientURLs = make([]string, n)
			for i := range m.ClientURLs {
				m.ClientURLs[i] = d.String()
			}
		}
		if d.Err() == nil && m.ID == "" {
			d.Fail(fmt.Errorf("%w: member attributes without an ID", ErrCorrupt))
		}
		c.Member = m
	case CmdAlarm:
		a := &AlarmChange{Action: d.Byte()}
		t := d.Varint()
		a.NodeID = d.String()
		if d.Err() == nil && (a.NodeID == "" || t < math.MinInt32 || t > math.MaxInt32) {
			d.Fail(fmt.Errorf("%w: bad alarm change", ErrCorrupt))
		}
		a.Type = int32(t)
		c.Alarm = a
	case CmdNoop:
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeTxn(d *Decoder, depth int) *TxnRequest {
	t := &TxnRequest{}
	if n := d.Count(minCompareSize); n > 0 {
		t.Compare = make([]Compare, n)
		for i := range t.Compare {
			c := &t.Compare[i]
			c.Result = d.Byte()
			c.Target = d.Byte()
			c.Key = d.String()
			c.RangeEnd = d.String()
			c.Int = d.Varint()
			c.Value = d.Bytes()
			if d.err != nil {
				return t
			}
		}
	}
	t.Success = decodeOps(d, depth)
	t.Failure = decodeOps(d, depth)
	return t
}

func decodeOps(d *Decoder, depth int) []RequestOp {
	n := d.Count(minOpSize)
	if n == 0 {
		return nil
	}
	ops := make([]RequestOp, n)
	for i := range ops {
		op := &ops[i]
		switch tag := d.Byte(); tag {
		case opRange:
			r := &RangeRequest{}
			r.Key = d.String()
			r.RangeEnd = d.String()
			r.Limit = d.Varint()
			r.Revision = d.Varint()
			r.SortOrder = d.Byte()
			r.SortTarget = d.Byte()
			f := d.Flags(rangeFlagsMask)
			r.Serializable = f&rangeSerializable != 0
			r.KeysOnly = f&rangeKeysOnly != 0
			r.CountOnly = f&rangeCountOnly != 0
			r.MinModRev = d.Varint()
			r.MaxModRev = d.Varint()
			r.MinCreateRev = d.Varint()
			r.MaxCreateRev = d.Varint()
			op.Range = r
		case opPut:
			p := &PutRequest{}
			p.Key = d.String()
			p.Value = d.Bytes()
			p.Lease = d.Varint()
			f := d.Flags(putFlagsMask)
			p.PrevKV = f&putPrevKV != 0
			p.IgnoreValue = f&putIgnoreValue != 0
			p.IgnoreLease = f&putIgnoreLease != 0
			op.Put = p
		case opDeleteRange:
			r := &DeleteRangeRequest{}
			r.Key = d.String()
			r.RangeEnd = d.String()
			r.PrevKV = d.Bool()
			op.DeleteRange = r
		case opTxn:
			if depth >= MaxTxnDepth {
				d.off--
				d.fail(ErrCorrupt, fmt.Sprintf("transactions nested deeper than %d", MaxTxnDepth))
				return ops
			}
			op.Txn = decodeTxn(d, depth+1)
		default:
			if d.err == nil {
				d.off--
				d.fail(ErrCorrupt, fmt.Sprintf("unknown request op tag %d", tag))
			}
		}
		if d.err != nil {
			return ops
		}
	}
	return ops
}
