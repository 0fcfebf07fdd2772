package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// fullRange, fullPut, ... set every field to a non-zero value.
func fullRange() *RangeRequest {
	return &RangeRequest{
		Key: "a", RangeEnd: "z", Limit: 10, Revision: 42,
		SortOrder: SortDescend, SortTarget: SortByValue,
		Serializable: true, KeysOnly: true, CountOnly: true,
		MinModRev: 1, MaxModRev: math.MaxInt64, MinCreateRev: -3, MaxCreateRev: math.MinInt64,
	}
}

func fullPut() *PutRequest {
	return &PutRequest{
		Key: "key", Value: []byte("value\x00\xff"), Lease: 7,
		PrevKV: true, IgnoreValue: true, IgnoreLease: true,
	}
}

func fullDelete() *DeleteRangeRequest {
	return &DeleteRangeRequest{Key: "k", RangeEnd: "\x00", PrevKV: true}
}

func fullCompares() []Compare {
	return []Compare{
		{Result: CmpNotEqual, Target: CmpValue, Key: "k1", RangeEnd: "k9", Int: -5, Value: []byte("v")},
		{Result: CmpGreater, Target: CmpMod, Key: "k2", Int: 1 << 40},
		{Result: 0xff, Target: 0xff},
	}
}

func putCmd(key, value string) *Command {
	return &Command{Type: CmdTxn, Txn: &TxnRequest{
		Success: []RequestOp{{Put: &PutRequest{Key: key, Value: []byte(value)}}},
	}}
}

// nestedTxn returns a TxnRequest chain of depth n (n TxnRequests).
func nestedTxn(n int) *TxnRequest {
	t := &TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: "leaf"}}}}
	for i := 1; i < n; i++ {
		t = &TxnRequest{Failure: []RequestOp{{Txn: t}}}
	}
	return t
}

var roundTripCases = []struct {
	name string
	cmd  *Command
}{
	{"noop", &Command{Type: CmdNoop}},
	{"compact", &Command{Type: CmdCompact, Compact: 123456}},
	{"compact-negative", &Command{Type: CmdCompact, Compact: -1}},
	{"compact-max", &Command{Type: CmdCompact, Compact: math.MaxInt64}},
	{"lease-grant", &Command{Type: CmdLeaseGrant, LeaseID: 0x7fff_0000_1234, LeaseTTLMillis: 60_000}},
	{"lease-grant-min", &Command{Type: CmdLeaseGrant, LeaseID: math.MinInt64, LeaseTTLMillis: math.MinInt64}},
	{"lease-revoke", &Command{Type: CmdLeaseRevoke, LeaseID: 99}},
	{"lease-expire", &Command{Type: CmdLeaseExpire, LeaseID: 100}},
	{"member-attrs", &Command{Type: CmdMemberAttrs, Member: &MemberAttrs{ID: "n1", Name: "infra1", ClientURLs: []string{"http://127.0.0.1:2379", "http://10.0.0.1:2379"}}}},
	{"member-attrs-bare", &Command{Type: CmdMemberAttrs, Member: &MemberAttrs{ID: "n1"}}},
	{"alarm-activate", &Command{Type: CmdAlarm, Alarm: &AlarmChange{Action: AlarmActivate, Type: 1, NodeID: "n1"}}},
	{"alarm-deactivate", &Command{Type: CmdAlarm, Alarm: &AlarmChange{Action: AlarmDeactivate, Type: 2, NodeID: "n2"}}},
	{"lease-zero", &Command{Type: CmdLeaseRevoke}},
	{"txn-empty", &Command{Type: CmdTxn, Txn: &TxnRequest{}}},
	{"txn-empty-slices", &Command{Type: CmdTxn, Txn: &TxnRequest{Compare: []Compare{}, Success: []RequestOp{}, Failure: []RequestOp{}}}},
	{"put", putCmd("hello", "world")},
	{"put-empty", putCmd("", "")},
	{"put-large", putCmd(strings.Repeat("k", 300), strings.Repeat("v", 70000))},
	{"put-full", &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Put: fullPut()}}}}},
	{"range-full", &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Range: fullRange()}}}}},
	{"range-zero", &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Range: &RangeRequest{}}}}}},
	{"delete-full", &Command{Type: CmdTxn, Txn: &TxnRequest{Failure: []RequestOp{{DeleteRange: fullDelete()}}}}},
	{"delete-zero", &Command{Type: CmdTxn, Txn: &TxnRequest{Failure: []RequestOp{{DeleteRange: &DeleteRangeRequest{}}}}}},
	{"txn-full", &Command{Type: CmdTxn, Txn: &TxnRequest{
		Compare: fullCompares(),
		Success: []RequestOp{
			{Range: fullRange()},
			{Put: fullPut()},
			{DeleteRange: fullDelete()},
			{Txn: &TxnRequest{
				Compare: []Compare{{Target: CmpLease, Key: "x", Int: 3}},
				Success: []RequestOp{{Put: &PutRequest{Key: "inner"}}},
				Failure: []RequestOp{{Range: &RangeRequest{Key: "inner", CountOnly: true}}},
			}},
		},
		Failure: []RequestOp{
			{Put: &PutRequest{Key: "f", Value: []byte{0}}},
			{Txn: &TxnRequest{}},
		},
	}}},
	{"txn-depth-max", &Command{Type: CmdTxn, Txn: nestedTxn(MaxTxnDepth)}},
}

// normalize returns a deep copy of c with empty byte strings and empty
// slices replaced by nil, as DecodeCommand returns them.
func normalize(c *Command) *Command {
	if c == nil {
		return nil
	}
	n := *c
	n.Txn = normalizeTxn(c.Txn)
	return &n
}

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func normalizeTxn(t *TxnRequest) *TxnRequest {
	if t == nil {
		return nil
	}
	n := &TxnRequest{}
	for _, c := range t.Compare {
		c.Value = normBytes(c.Value)
		n.Compare = append(n.Compare, c)
	}
	n.Success = normalizeOps(t.Success)
	n.Failure = normalizeOps(t.Failure)
	return n
}

func normalizeOps(ops []RequestOp) []RequestOp {
	var out []RequestOp
	for _, op := range ops {
		var o RequestOp
		if op.Range != nil {
			r := *op.Range
			o.Range = &r
		}
		if op.Put != nil {
			p := *op.Put
			p.Value = normBytes(p.Value)
			o.Put = &p
		}
		if op.DeleteRange != nil {
			r := *op.DeleteRange
			o.DeleteRange = &r
		}
		o.Txn = normalizeTxn(op.Txn)
		out = append(out, o)
	}
	return out
}

func mustEncode(t testing.TB, c *Command) []byte {
	t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatalf("EncodeCommand: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEncode(t, tc.cmd)
			if b[0] != CodecVersion || CmdType(b[1]) != tc.cmd.Type {
				t.Fatalf("header = % x, want %02x %02x", b[:2], CodecVersion, tc.cmd.Type)
			}
			if got := commandSize(tc.cmd); got != len(b) {
				t.Errorf("commandSize = %d, encoding is %d bytes", got, len(b))
			}
			// AppendCommand appends after existing content.
			prefix := []byte("prefix")
			ab, err := AppendCommand(append([]byte(nil), prefix...), tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ab[:len(prefix)], prefix) || !bytes.Equal(ab[len(prefix):], b) {
				t.Fatalf("AppendCommand = %x, want prefix + %x", ab, b)
			}

			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if want := normalize(tc.cmd); !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip mismatch\n got: %s\nwant: %s", dump(got), dump(want))
			}
			if tc.cmd.Type == CmdTxn && got.Txn == nil {
				t.Fatal("decoded CmdTxn has nil Txn")
			}

			// The decoded command must not alias the input.
			for i := range b {
				b[i] = 0xa5
			}
			if want := normalize(tc.cmd); !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded command changed when the input was overwritten")
			}
		})
	}
}

// TestEveryFieldEncoded sets each scalar field of each struct, alone, to a
// non-zero value and checks that it survives a round trip. It fails if a
// field is added to wire.go without being added to the codec.
func TestEveryFieldEncoded(t *testing.T) {
	type target struct {
		name  string
		typ   reflect.Type
		build func(v reflect.Value) *Command // v is a pointer to a struct of typ
	}
	targets := []target{
		{"Command", reflect.TypeOf(Command{}), nil},
		{"RangeRequest", reflect.TypeOf(RangeRequest{}), func(v reflect.Value) *Command {
			return &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Range: v.Interface().(*RangeRequest)}}}}
		}},
		{"PutRequest", reflect.TypeOf(PutRequest{}), func(v reflect.Value) *Command {
			return &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Put: v.Interface().(*PutRequest)}}}}
		}},
		{"DeleteRangeRequest", reflect.TypeOf(DeleteRangeRequest{}), func(v reflect.Value) *Command {
			return &Command{Type: CmdTxn, Txn: &TxnRequest{Failure: []RequestOp{{DeleteRange: v.Interface().(*DeleteRangeRequest)}}}}
		}},
		{"Compare", reflect.TypeOf(Compare{}), func(v reflect.Value) *Command {
			return &Command{Type: CmdTxn, Txn: &TxnRequest{Compare: []Compare{*v.Interface().(*Compare)}}}
		}},
		{"TxnRequest", reflect.TypeOf(TxnRequest{}), nil},
		{"RequestOp", reflect.TypeOf(RequestOp{}), nil},
		{"MemberAttrs", reflect.TypeOf(MemberAttrs{}), func(v reflect.Value) *Command {
			m := v.Interface().(*MemberAttrs)
			if m.ID == "" {
				m.ID = "id" // required
			}
			return &Command{Type: CmdMemberAttrs, Member: m}
		}},
		{"AlarmChange", reflect.TypeOf(AlarmChange{}), func(v reflect.Value) *Command {
			a := v.Interface().(*AlarmChange)
			if a.NodeID == "" {
				a.NodeID = "n" // required
			}
			return &Command{Type: CmdAlarm, Alarm: a}
		}},
	}
	// Fields whose round trip the table in TestRoundTrip covers, because
	// they are structural rather than scalar.
	structural := map[string]bool{
		"Command.Type": true, "Command.Txn": true, "Command.Member": true, "Command.Alarm": true,
		"TxnRequest.Compare": true, "TxnRequest.Success": true, "TxnRequest.Failure": true,
		"RequestOp.Range": true, "RequestOp.Put": true, "RequestOp.DeleteRange": true, "RequestOp.Txn": true,
	}
	// Command's scalar fields only make sense with the matching type.
	commandType := map[string]CmdType{
		"Compact": CmdCompact, "LeaseID": CmdLeaseGrant, "LeaseTTLMillis": CmdLeaseGrant,
	}
	for _, tg := range targets {
		for i := 0; i < tg.typ.NumField(); i++ {
			f := tg.typ.Field(i)
			name := tg.name + "." + f.Name
			if structural[name] {
				continue
			}
			v := reflect.New(tg.typ)
			fv := v.Elem().Field(i)
			switch {
			case f.Type.Kind() == reflect.String:
				fv.SetString("\x00x\xff")
			case f.Type.Kind() == reflect.Int64:
				fv.SetInt(-1 << 50)
			case f.Type.Kind() == reflect.Int32:
				fv.SetInt(-1 << 30)
			case f.Type.Kind() == reflect.Uint8:
				fv.SetUint(0xfe)
			case f.Type.Kind() == reflect.Bool:
				fv.SetBool(true)
			case f.Type == reflect.TypeOf([]byte(nil)):
				fv.SetBytes([]byte{0, 1, 2})
			case f.Type == reflect.TypeOf([]string(nil)):
				fv.Set(reflect.ValueOf([]string{"a", "\x00", ""}))
			default:
				t.Errorf("%s: field of type %s not handled by this test; extend it and the codec", name, f.Type)
				continue
			}
			var c *Command
			if tg.build == nil {
				if tg.name != "Command" {
					t.Errorf("%s: unexpected scalar field; extend this test and the codec", name)
					continue
				}
				c = v.Interface().(*Command)
				c.Type = commandType[f.Name]
			} else {
				c = tg.build(v)
			}
			b, err := EncodeCommand(c)
			if err != nil {
				t.Errorf("%s: encode: %v", name, err)
				continue
			}
			got, err := DecodeCommand(b)
			if err != nil {
				t.Errorf("%s: decode: %v", name, err)
				continue
			}
			if !reflect.DeepEqual(got, normalize(c)) {
				t.Errorf("%s does not survive a round trip:\n got: %s\nwant: %s", name, dump(got), dump(c))
			}
		}
	}
}

// TestGolden pins the byte format: these encodings are stored in raft logs
// and snapshots, so changing them needs a new CodecVersion.
func TestGolden(t *testing.T) {
	cases := []struct {
		cmd *Command
		hex string
	}{
		{&Command{Type: CmdNoop}, "0106"},
		{&Command{Type: CmdCompact, Compact: 100}, "0102c801"},
		{&Command{Type: CmdLeaseGrant, LeaseID: -1, LeaseTTLMillis: 5000}, "010301904e"},
		{&Command{Type: CmdLeaseRevoke, LeaseID: 1}, "010402"},
		{&Command{Type: CmdLeaseExpire, LeaseID: 2}, "010504"},
		// member attrs: id "a", name "b", 1 client URL "c"
		{&Command{Type: CmdMemberAttrs, Member: &MemberAttrs{ID: "a", Name: "b", ClientURLs: []string{"c"}}}, "0107" + "0161" + "0162" + "01" + "0163"},
		{&Command{Type: CmdAlarm, Alarm: &AlarmChange{Action: AlarmActivate, Type: 1, NodeID: "a"}}, "0108" + "01" + "02" + "0161"},
		// txn: 0 compares, 1 success op (put "k"="v", lease 3, PrevKV|IgnoreLease), 0 failure ops
		{&Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Put: &PutRequest{
			Key: "k", Value: []byte("v"), Lease: 3, PrevKV: true, IgnoreLease: true,
		}}}}}, "0101" + "00" + "01" + "02" + "016b" + "0176" + "06" + "05" + "00"},
		// txn: 1 compare (result 3, target 3, key "a", no end, int -1, value "b"),
		// 0 success, 2 failure ops: range, delete_range.
		{&Command{Type: CmdTxn, Txn: &TxnRequest{
			Compare: []Compare{{Result: CmpNotEqual, Target: CmpValue, Key: "a", Int: -1, Value: []byte("b")}},
			Failure: []RequestOp{
				{Range: &RangeRequest{Key: "a", RangeEnd: "b", Limit: 1, Revision: 2, SortOrder: 1, SortTarget: 4,
					KeysOnly: true, MinModRev: 1, MaxModRev: 2, MinCreateRev: 3, MaxCreateRev: 4}},
				{DeleteRange: &DeleteRangeRequest{Key: "c", PrevKV: true}},
			},
		}}, "0101" + "01" + "0303" + "0161" + "00" + "01" + "0162" +
			"00" + "02" +
			"01" + "0161" + "0162" + "02" + "04" + "01" + "04" + "02" + "02" + "04" + "06" + "08" +
			"03" + "0163" + "00" + "01"},
		// nested txn op: one success op holding an empty txn.
		{&Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Txn: &TxnRequest{}}}}}, "0101" + "00" + "01" + "04000000" + "00"},
	}
	for _, tc := range cases {
		got := hex.EncodeToString(mustEncode(t, tc.cmd))
		if got != tc.hex {
			t.Errorf("EncodeCommand(%s)\n = %s\nwant %s", dump(tc.cmd), got, tc.hex)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	for _, tc := range roundTripCases {
		b := mustEncode(t, tc.cmd)
		for i := 0; i < len(b); i++ {
			c, err := DecodeCommand(b[:i:i])
			if err == nil {
				t.Fatalf("%s: DecodeCommand(first %d of %d bytes) = %s, want error", tc.name, i, len(b), dump(c))
			}
			if c != nil {
				t.Fatalf("%s: non-nil command with error %v", tc.name, err)
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: truncated at %d: error %v is neither ErrTruncated nor ErrCorrupt", tc.name, i, err)
			}
		}
	}
}

func TestDecodeTrailingBytes(t *testing.T) {
	for _, tc := range roundTripCases {
		for _, extra := range [][]byte{{0}, {1}, {0xff, 0xff}} {
			b := append(mustEncode(t, tc.cmd), extra...)
			_, err := DecodeCommand(b)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s + % x: err = %v, want ErrCorrupt", tc.name, extra, err)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string // hex
		want error
	}{
		{"empty", "", ErrTruncated},
		{"version-only", "01", ErrTruncated},
		{"version-0", "0006", ErrUnknownVersion},
		{"version-2", "0206", ErrUnknownVersion},
		{"version-2-alone", "02", ErrUnknownVersion},
		{"type-0", "0100", ErrCorrupt},
		{"type-9", "0109", ErrUnknownCommand},
		{"alarm-truncated", "0108", ErrTruncated},
		{"alarm-no-node", "0108" + "01" + "02" + "00", ErrCorrupt},
		{"attrs-empty-id", "0107000000", ErrCorrupt},
		{"attrs-url-count-lies", "01070161000005", ErrCorrupt},
		{"type-255", "01ff", ErrUnknownCommand},
		{"compact-truncated-varint", "010280", ErrTruncated},
		{"compact-overlong-varint", "01028000", ErrCorrupt},
		{"compact-11-byte-varint", "0102" + strings.Repeat("80", 10) + "01", ErrCorrupt},
		{"compact-overflow-varint", "0102" + strings.Repeat("ff", 9) + "02", ErrCorrupt},
		{"lease-grant-missing-ttl", "010302", ErrTruncated},
		{"noop-trailing", "010600", ErrCorrupt},
		{"txn-no-body", "0101", ErrTruncated},
		{"txn-missing-failure", "01010000", ErrTruncated},
		{"txn-compare-count-too-big", "0101" + "02" + "000000000000", ErrCorrupt},
		{"txn-op-count-too-big", "0101" + "00" + "05" + "0200000000", ErrCorrupt},
		{"txn-op-count-huge", "0101" + "00" + "ffffffffffffffff7f", ErrCorrupt},
		{"txn-op-tag-0", "0101" + "00" + "01" + "00000000" + "00", ErrCorrupt},
		{"txn-op-tag-5", "0101" + "00" + "01" + "05000000" + "00", ErrCorrupt},
		{"put-bad-flag", "0101" + "00" + "01" + "02" + "00" + "00" + "00" + "08" + "00", ErrCorrupt},
		{"range-bad-flag", "0101" + "00" + "01" + "01" + "0000000000" + "00" + "80" + "00000000" + "00", ErrCorrupt},
		{"delete-bad-bool", "0101" + "00" + "01" + "03" + "00" + "00" + "02" + "00", ErrCorrupt},
		{"put-key-length-beyond-input", "0101" + "00" + "01" + "02" + "05" + "6b" + "00" + "00" + "00", ErrCorrupt},
		{"put-key-length-1<<60", "0101" + "00" + "01" + "02" + "8080808080808080" + "10" + "00000000", ErrCorrupt},
		{"put-value-length-max", "0101" + "00" + "01" + "02" + "00" + "ffffffffffffffffff01" + "0000" + "00", ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := hex.DecodeString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := DecodeCommand(in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeCommand(%s) = %s, %v; want %v", tc.in, dump(c), err, tc.want)
			}
			if c != nil {
				t.Fatalf("non-nil command with error")
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		})
	}
}

func TestDecodeUnknownCommandType(t *testing.T) {
	for _, typ := range []CmdType{cmdMax, cmdMax + 1, 200, 255} {
		_, err := DecodeCommand([]byte{CodecVersion, byte(typ), 1, 2, 3})
		if !errors.Is(err, ErrUnknownCommand) {
			t.Fatalf("type %d: err = %v, want ErrUnknownCommand", typ, err)
		}
		var uerr *UnknownCommandError
		if !errors.As(err, &uerr) || uerr.Type != typ {
			t.Fatalf("type %d: err = %#v, want *UnknownCommandError{Type: %d}", typ, err, typ)
		}
		if !strings.Contains(err.Error(), "wire: ") {
			t.Errorf("error %q lacks the wire: prefix", err)
		}
	}
}

// nestedTxnBytes encodes, with the primitives alone, a CmdTxn whose
// transactions nest depth deep, so that depths the encoder refuses can be
// tested.
func nestedTxnBytes(depth int) []byte {
	e := NewEncoder(nil)
	e.Byte(CodecVersion)
	e.Byte(byte(CmdTxn))
	for i := 1; i < depth; i++ {
		e.Uvarint(0) // compares
		e.Uvarint(1) // success ops
		e.Byte(opTxn)
	}
	e.Uvarint(0) // innermost: no compares,
	e.Uvarint(0) // no success ops,
	e.Uvarint(0) // no failure ops
	for i := 1; i < depth; i++ {
		e.Uvarint(0) // failure ops of each enclosing txn
	}
	return e.Data()
}

func TestTxnDepth(t *testing.T) {
	for _, depth := range []int{1, 2, MaxTxnDepth - 1, MaxTxnDepth} {
		c, err := DecodeCommand(nestedTxnBytes(depth))
		if err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		n := 0
		for txn := c.Txn; txn != nil; n++ {
			if len(txn.Success) == 0 {
				txn = nil
			} else {
				txn = txn.Success[0].Txn
			}
		}
		if n != depth {
			t.Fatalf("decoded depth %d, want %d", n, depth)
		}
		// And the encoder agrees byte for byte.
		if b := mustEncode(t, c); !bytes.Equal(b, nestedTxnBytes(depth)) {
			t.Fatalf("depth %d: re-encoding differs", depth)
		}
	}
	for _, depth := range []int{MaxTxnDepth + 1, MaxTxnDepth + 2, 10000} {
		_, err := DecodeCommand(nestedTxnBytes(depth))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("depth %d: err = %v, want ErrCorrupt", depth, err)
		}
	}

	if _, err := EncodeCommand(&Command{Type: CmdTxn, Txn: nestedTxn(MaxTxnDepth)}); err != nil {
		t.Fatalf("encode depth %d: %v", MaxTxnDepth, err)
	}
	if _, err := EncodeCommand(&Command{Type: CmdTxn, Txn: nestedTxn(MaxTxnDepth + 1)}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("encode depth %d: err = %v, want ErrInvalidCommand", MaxTxnDepth+1, err)
	}
	// A cyclic transaction must not hang or overflow the encoder.
	cyc := &TxnRequest{}
	cyc.Success = []RequestOp{{Txn: cyc}}
	if _, err := EncodeCommand(&Command{Type: CmdTxn, Txn: cyc}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("encode cyclic txn: err = %v, want ErrInvalidCommand", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	put := &PutRequest{Key: "k"}
	txn := func(ops ...RequestOp) *Command {
		return &Command{Type: CmdTxn, Txn: &TxnRequest{Success: []RequestOp{{Put: put}}, Failure: ops}}
	}
	cases := []struct {
		name string
		cmd  *Command
		want error
	}{
		{"nil", nil, ErrInvalidCommand},
		{"type-invalid", &Command{}, ErrUnknownCommand},
		{"type-unknown", &Command{Type: cmdMax}, ErrUnknownCommand},
		{"type-255", &Command{Type: 255}, ErrUnknownCommand},
		{"txn-nil", &Command{Type: CmdTxn}, ErrInvalidCommand},
		{"op-empty", txn(RequestOp{}), ErrInvalidCommand},
		{"op-two-fields", txn(RequestOp{Put: put, Range: &RangeRequest{}}), ErrInvalidCommand},
		{"op-all-fields", txn(RequestOp{Put: put, Range: &RangeRequest{}, DeleteRange: &DeleteRangeRequest{}, Txn: &TxnRequest{}}), ErrInvalidCommand},
		{"op-empty-nested", txn(RequestOp{Txn: &TxnRequest{Success: []RequestOp{{Put: put}, {}}}}), ErrInvalidCommand},
		{"txn-with-compact", &Command{Type: CmdTxn, Txn: &TxnRequest{}, Compact: 1}, ErrInvalidCommand},
		{"compact-with-txn", &Command{Type: CmdCompact, Txn: &TxnRequest{}}, ErrInvalidCommand},
		{"compact-with-lease", &Command{Type: CmdCompact, LeaseID: 1}, ErrInvalidCommand},
		{"revoke-with-ttl", &Command{Type: CmdLeaseRevoke, LeaseID: 1, LeaseTTLMillis: 5}, ErrInvalidCommand},
		{"expire-with-compact", &Command{Type: CmdLeaseExpire, Compact: 5}, ErrInvalidCommand},
		{"noop-with-lease", &Command{Type: CmdNoop, LeaseID: 5}, ErrInvalidCommand},
		{"noop-with-ttl", &Command{Type: CmdNoop, LeaseTTLMillis: 5}, ErrInvalidCommand},
		{"attrs-nil", &Command{Type: CmdMemberAttrs}, ErrInvalidCommand},
		{"attrs-no-id", &Command{Type: CmdMemberAttrs, Member: &MemberAttrs{Name: "x"}}, ErrInvalidCommand},
		{"alarm-nil", &Command{Type: CmdAlarm}, ErrInvalidCommand},
		{"alarm-no-node", &Command{Type: CmdAlarm, Alarm: &AlarmChange{Action: AlarmActivate, Type: 1}}, ErrInvalidCommand},
		{"alarm-stray", &Command{Type: CmdNoop, Alarm: &AlarmChange{NodeID: "n"}}, ErrInvalidCommand},
		{"noop-with-member", &Command{Type: CmdNoop, Member: &MemberAttrs{ID: "x"}}, ErrInvalidCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := EncodeCommand(tc.cmd); !errors.Is(err, tc.want) || b != nil {
				t.Fatalf("EncodeCommand = %x, %v; want nil, %v", b, err, tc.want)
			}
			dst := make([]byte, 3, 4)
			out, err := AppendCommand(dst, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AppendCommand err = %v, want %v", err, tc.want)
			}
			if len(out) != 3 || &out[0] != &dst[0] {
				t.Fatalf("AppendCommand changed dst on error: len %d", len(out))
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		})
	}
	var uerr *UnknownCommandError
	if _, err := EncodeCommand(&Command{Type: 42}); !errors.As(err, &uerr) || uerr.Type != 42 {
		t.Fatalf("err = %v, want *UnknownCommandError{42}", err)
	}
}

// TestHugeLengthNoAllocation checks that a length prefix claiming far more
// bytes than the input holds fails before anything is allocated for it.
func TestHugeLengthNoAllocation(t *testing.T) {
	e := NewEncoder(nil)
	e.Byte(CodecVersion)
	e.Byte(byte(CmdTxn))
	e.Uvarint(0)
	e.Uvarint(1)
	e.Byte(opPut)
	e.Uvarint(1 << 60) // key length
	e.String("k")
	cmdBytes := append([]byte(nil), e.Data()...)

	e.Reset()
	e.Uvarint(1 << 60)
	e.Byte(1)
	primBytes := append([]byte(nil), e.Data()...)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		if _, err := DecodeCommand(cmdBytes); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeCommand: err = %v, want ErrCorrupt", err)
		}
		for _, read := range []func(d *Decoder) int{
			func(d *Decoder) int { return len(d.Bytes()) },
			func(d *Decoder) int { return len(d.BytesNoCopy()) },
			func(d *Decoder) int { return len(d.String()) },
			func(d *Decoder) int { return d.Count(1) },
		} {
			d := NewDecoder(primBytes)
			if n := read(d); n != 0 || !errors.Is(d.Err(), ErrCorrupt) {
				t.Fatalf("read %d, err %v; want 0, ErrCorrupt", n, d.Err())
			}
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("decoding hostile lengths allocated %d bytes", got)
	}
}

func TestAppendCommandPutNoAlloc(t *testing.T) {
	c := putCmd("some/key/0001", strings.Repeat("v", 100))
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = AppendCommand(buf[:0], c)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendCommand allocated %v times per call, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := EncodeCommand(c); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Fatalf("EncodeCommand allocated %v times per call, want 1", allocs)
	}
}

// dump formats a command readably for failure messages.
func dump(c *Command) string {
	if c == nil {
		return "<nil>"
	}
	var sb strings.Builder
	dumpValue(&sb, reflect.ValueOf(c))
	return sb.String()
}

func dumpValue(sb *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			sb.WriteString("nil")
			return
		}
		sb.WriteString("&")
		dumpValue(sb, v.Elem())
	case reflect.Struct:
		sb.WriteString(v.Type().Name() + "{")
		first := true
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).IsZero() {
				continue
			}
			if !first {
				sb.WriteString(" ")
			}
			first = false
			sb.WriteString(v.Type().Field(i).Name + ":")
			dumpValue(sb, v.Field(i))
		}
		sb.WriteString("}")
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.IsNil() {
				sb.WriteString("[]byte(nil)")
			} else {
				sb.WriteString("[]byte(" + strconvQuote(v.Bytes()) + ")")
			}
			return
		}
		if v.IsNil() {
			sb.WriteString("nil")
			return
		}
		sb.WriteString("[")
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				sb.WriteString(" ")
			}
			dumpValue(sb, v.Index(i))
		}
		sb.WriteString("]")
	case reflect.String:
		sb.WriteString(strconvQuote([]byte(v.String())))
	default:
		fmt.Fprint(sb, v.Interface())
	}
}

func strconvQuote(b []byte) string {
	if len(b) > 40 {
		return strconv.Quote(string(b[:40])) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}

func TestPrimitivesRoundTrip(t *testing.T) {
	uvals := []uint64{0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 1<<32 - 1, 1 << 56, 1<<63 - 1, 1 << 63, math.MaxUint64}
	ivals := []int64{0, 1, -1, 63, -64, 64, -65, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64}
	blobs := [][]byte{nil, {0}, []byte("hello"), bytes.Repeat([]byte{0xff}, 300)}

	e := NewEncoder(make([]byte, 10))
	if e.Len() != 0 {
		t.Fatalf("NewEncoder did not reset: Len = %d", e.Len())
	}
	for _, v := range uvals {
		e.Uvarint(v)
	}
	for _, v := range ivals {
		e.Varint(v)
	}
	for _, b := range blobs {
		e.Bytes(b)
		e.String(string(b))
	}
	e.Byte(0)
	e.Byte(0xff)
	e.Bool(false)
	e.Bool(true)
	e.Uvarint(3) // a count

	d := NewDecoder(e.Data())
	for _, want := range uvals {
		if got := d.Uvarint(); got != want {
			t.Fatalf("Uvarint = %d, want %d", got, want)
		}
	}
	for _, want := range ivals {
		if got := d.Varint(); got != want {
			t.Fatalf("Varint = %d, want %d", got, want)
		}
	}
	for i, want := range blobs {
		var got []byte
		if i%2 == 0 {
			got = d.Bytes()
		} else {
			got = d.BytesNoCopy()
		}
		if !bytes.Equal(got, want) || (len(want) == 0) != (got == nil) {
			t.Fatalf("Bytes = %q, want %q", got, want)
		}
		if s := d.String(); s != string(want) {
			t.Fatalf("String = %q, want %q", s, want)
		}
	}
	if b := d.Byte(); b != 0 {
		t.Fatalf("Byte = %d", b)
	}
	if b := d.Byte(); b != 0xff {
		t.Fatalf("Byte = %d", b)
	}
	if d.Bool() || !d.Bool() {
		t.Fatal("Bool mismatch")
	}
	if d.Len() != 1 {
		t.Fatalf("Len = %d before the count, want 1", d.Len())
	}
	if err := d.Finish(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Finish with 1 byte left = %v, want ErrCorrupt", err)
	}
	// A count of 3 does not fit in 0 remaining bytes.
	if n := d.Count(1); n != 0 || !errors.Is(d.Err(), ErrCorrupt) {
		t.Fatalf("Count = %d, err %v; want 0, ErrCorrupt", n, d.Err())
	}

	e.Reset()
	if e.Len() != 0 || len(e.Data()) != 0 {
		t.Fatal("Reset did not empty the encoder")
	}
	// Every varint has exactly the encoding encoding/binary gives it.
	for _, v := range uvals {
		e.Reset()
		e.Uvarint(v)
		d := NewDecoder(e.Data())
		if got := d.Uvarint(); got != v || d.Finish() != nil {
			t.Fatalf("Uvarint(%d) -> %d, %v", v, got, d.Finish())
		}
	}
}

func TestDecoderCount(t *testing.T) {
	for _, tc := range []struct {
		in      string
		min     int
		want    int
		wantErr error
	}{
		{"00", 1, 0, nil},
		{"03aabbcc", 1, 3, nil},
		{"03aabbcc", 0, 3, nil},
		{"03aabbcc", -5, 3, nil},
		{"04aabbcc", 1, 0, ErrCorrupt},
		{"01aabbcc", 3, 1, nil},
		{"02aabbcc", 2, 0, ErrCorrupt},
		{"02aabbccdd", 2, 2, nil},
		{"80", 1, 0, ErrTruncated},
		{"", 1, 0, ErrTruncated},
		{"ffffffffffffffffff01", 1, 0, ErrCorrupt},
	} {
		in, _ := hex.DecodeString(tc.in)
		d := NewDecoder(in)
		got := d.Count(tc.min)
		if got != tc.want || !errors.Is(d.Err(), tc.wantErr) || (tc.wantErr == nil) != (d.Err() == nil) {
			t.Errorf("Count(%d) on %s = %d, %v; want %d, %v", tc.min, tc.in, got, d.Err(), tc.want, tc.wantErr)
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	read := map[string]func(d *Decoder) bool{ // reports whether the zero value came back
		"Uvarint":     func(d *Decoder) bool { return d.Uvarint() == 0 },
		"Varint":      func(d *Decoder) bool { return d.Varint() == 0 },
		"Byte":        func(d *Decoder) bool { return d.Byte() == 0 },
		"Bool":        func(d *Decoder) bool { return !d.Bool() },
		"Flags":       func(d *Decoder) bool { return d.Flags(0x0f) == 0 },
		"Bytes":       func(d *Decoder) bool { return d.Bytes() == nil },
		"BytesNoCopy": func(d *Decoder) bool { return d.BytesNoCopy() == nil },
		"String":      func(d *Decoder) bool { return d.String() == "" },
		"Count":       func(d *Decoder) bool { return d.Count(1) == 0 },
	}
	cases := []struct {
		op, in string
		want   error
	}{
		{"Uvarint", "", ErrTruncated},
		{"Uvarint", "ff", ErrTruncated},
		{"Uvarint", "ffffffffffffffffff", ErrTruncated},
		{"Uvarint", "8000", ErrCorrupt},
		{"Uvarint", "ff00", ErrCorrupt},
		{"Uvarint", "ffffffffffffffffff00", ErrCorrupt},
		{"Uvarint", "ffffffffffffffffff02", ErrCorrupt},
		{"Uvarint", "ffffffffffffffffff80", ErrCorrupt},
		{"Uvarint", "8080808080808080808001", ErrCorrupt},
		{"Varint", "8000", ErrCorrupt},
		{"Varint", "", ErrTruncated},
		{"Byte", "", ErrTruncated},
		{"Bool", "", ErrTruncated},
		{"Bool", "02", ErrCorrupt},
		{"Bool", "ff", ErrCorrupt},
		{"Flags", "", ErrTruncated},
		{"Flags", "10", ErrCorrupt},
		{"Bytes", "", ErrTruncated},
		{"Bytes", "02aa", ErrCorrupt},
		{"Bytes", "808080808080808010aa", ErrCorrupt},
		{"BytesNoCopy", "05aabbccdd", ErrCorrupt},
		{"String", "05aabbccdd", ErrCorrupt},
		{"String", "8001", ErrCorrupt},
		{"Count", "02aa", ErrCorrupt},
	}
	for _, tc := range cases {
		in, err := hex.DecodeString(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		d := NewDecoder(in)
		if !read[tc.op](d) {
			t.Errorf("%s(%s): non-zero value on error", tc.op, tc.in)
		}
		first := d.Err()
		if !errors.Is(first, tc.want) {
			t.Errorf("%s(%s): err = %v, want %v", tc.op, tc.in, first, tc.want)
			continue
		}
		if !strings.HasPrefix(first.Error(), "wire: ") {
			t.Errorf("error %q lacks the wire: prefix", first)
		}
		// Sticky: every later call returns zero values and keeps the first error.
		if d.Len() != 0 {
			t.Errorf("%s(%s): Len = %d after error", tc.op, tc.in, d.Len())
		}
		for name, r := range read {
			if !r(d) {
				t.Errorf("%s(%s) then %s: non-zero value after error", tc.op, tc.in, name)
			}
		}
		d.Fail(errors.New("later"))
		if d.Err() != first || d.Finish() != first {
			t.Errorf("%s(%s): error changed from %v to %v", tc.op, tc.in, first, d.Err())
		}
		d.Reset([]byte{7})
		if d.Err() != nil || d.Byte() != 7 || d.Finish() != nil {
			t.Errorf("Reset did not clear the decoder")
		}
	}
}

func TestDecoderFail(t *testing.T) {
	d := NewDecoder([]byte{1, 2})
	d.Fail(nil)
	if d.Err() != nil {
		t.Fatal("Fail(nil) set an error")
	}
	mine := errors.New("mine")
	d.Fail(mine)
	if d.Err() != mine || d.Byte() != 0 || d.Len() != 0 {
		t.Fatal("Fail did not make the decoder sticky")
	}
}

func TestDecoderBytesCopy(t *testing.T) {
	in := []byte{3, 'a', 'b', 'c', 3, 'd', 'e', 'f', 3, 'g', 'h', 'i'}
	d := NewDecoder(in)
	cp := d.Bytes()
	nc := d.BytesNoCopy()
	s := d.String()
	if d.Offset() != len(in) || d.Finish() != nil {
		t.Fatalf("Offset = %d, Finish = %v", d.Offset(), d.Finish())
	}
	if cap(nc) != len(nc) {
		t.Errorf("BytesNoCopy capacity %d, want %d", cap(nc), len(nc))
	}
	for i := range in {
		in[i] = 'X'
	}
	if string(cp) != "abc" || s != "ghi" {
		t.Errorf("Bytes/String alias the input: %q %q", cp, s)
	}
	if string(nc) != "XXX" {
		t.Errorf("BytesNoCopy = %q, want it to alias the input", nc)
	}
}

func BenchmarkEncodePut(b *testing.B) {
	c := putCmd("registry/pods/default/web-0001", strings.Repeat("v", 256))
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = AppendCommand(buf[:0], c)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeCommandPut(b *testing.B) {
	c := putCmd("registry/pods/default/web-0001", strings.Repeat("v", 256))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		buf, err := EncodeCommand(c)
		if err != nil {
			b.Fatal(err)
		}
		n = len(buf)
	}
	b.SetBytes(int64(n))
}

func BenchmarkDecodePut(b *testing.B) {
	enc := mustEncode(b, putCmd("registry/pods/default/web-0001", strings.Repeat("v", 256)))
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := DecodeCommand(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTxnFull(b *testing.B) {
	var enc []byte
	for _, tc := range roundTripCases {
		if tc.name == "txn-full" {
			enc = mustEncode(b, tc.cmd)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := DecodeCommand(enc); err != nil {
			b.Fatal(err)
		}
	}
}
