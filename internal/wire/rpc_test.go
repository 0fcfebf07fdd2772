package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

var updateRPCCorpus = flag.Bool("update-rpc-corpus", false,
	"rewrite the seed-* files of testdata/fuzz/FuzzDecodeRPC{Request,Response} from the round-trip tables")

const (
	rpcRequestCorpusDir  = "testdata/fuzz/FuzzDecodeRPCRequest"
	rpcResponseCorpusDir = "testdata/fuzz/FuzzDecodeRPCResponse"
)

// rpcCommandBytes returns an encoded command for RPCForward requests.
func rpcCommandBytes(c *Command) []byte {
	b, err := EncodeCommand(c)
	if err != nil {
		panic(err)
	}
	return b
}

// rpcKV returns a KeyValue with every field set.
func rpcKV(i int) KeyValue {
	return KeyValue{
		Key: "key/" + strconv.Itoa(i), Value: []byte("v\x00\xff" + strconv.Itoa(i)),
		CreateRevision: int64(i) + 1, ModRevision: math.MaxInt64 - int64(i),
		Version: -int64(i) - 1, Lease: math.MinInt64 + int64(i),
	}
}

func rpcFullStatus() *Status {
	return &Status{
		NodeID: "node-1", Name: "alpha", Leader: "node-2",
		Term: math.MaxUint64, CommitIndex: 1 << 40, AppliedIndex: 1<<40 - 1,
		Revision: 12345, CompactRevision: -7, DBSize: 1 << 33,
		Version: "v0.1.0-dev", IsLearner: true,
	}
}

// rpcFullTxnResponse holds every kind of ResponseOp, full and empty.
func rpcFullTxnResponse() *TxnResponse {
	prev := rpcKV(9)
	return &TxnResponse{Revision: 99, Succeeded: true, Responses: []ResponseOp{
		{Range: &RangeResponse{Revision: 99, KVs: []KeyValue{rpcKV(1), rpcKV(2), {}}, Count: 3, More: true}},
		{Range: &RangeResponse{}},
		{Put: &PutResponse{Revision: 99, PrevKV: &prev}},
		{Put: &PutResponse{Revision: -99}},
		{Put: &PutResponse{PrevKV: &KeyValue{}}},
		{DeleteRange: &DeleteRangeResponse{Revision: 99, Deleted: 2, PrevKVs: []KeyValue{rpcKV(3), rpcKV(4)}}},
		{DeleteRange: &DeleteRangeResponse{Deleted: -1}},
		{Txn: &TxnResponse{Revision: -1, Responses: []ResponseOp{
			{Put: &PutResponse{Revision: 1}},
			{Txn: &TxnResponse{Succeeded: true}},
		}}},
		{Txn: &TxnResponse{}},
	}}
}

// nestedTxnResponse returns a TxnResponse chain of depth n (n
// TxnResponses).
func nestedTxnResponse(n int) *TxnResponse {
	t := &TxnResponse{Revision: int64(n), Responses: []ResponseOp{{Put: &PutResponse{Revision: 1}}}}
	for i := 1; i < n; i++ {
		t = &TxnResponse{Revision: int64(n - i), Succeeded: i%2 == 0, Responses: []ResponseOp{{Txn: t}}}
	}
	return t
}

// nestedTxnResponseBytes encodes, with the primitives alone, a Response
// whose transaction responses nest depth deep, so that depths the encoder
// refuses can be tested.
func nestedTxnResponseBytes(depth int) []byte {
	e := NewEncoder(nil)
	e.Byte(RPCVersion)
	e.Uvarint(respTxn)
	for i := 1; i < depth; i++ {
		e.Varint(0)   // revision
		e.Bool(false) // succeeded
		e.Uvarint(1)  // one response op:
		e.Byte(opTxn) // a txn
	}
	e.Varint(0)
	e.Bool(false)
	e.Uvarint(0)
	return e.Data()
}

var rpcRequestCases = []struct {
	name string
	req  *Request
}{
	{"forward", &Request{Type: RPCForward, Command: rpcCommandBytes(&Command{Type: CmdTxn, Txn: &TxnRequest{
		Success: []RequestOp{{Put: &PutRequest{Key: "k", Value: []byte("v")}}},
	}}), From: "node-1", TimeoutMillis: 5000}},
	{"forward-noop", &Request{Type: RPCForward, Command: rpcCommandBytes(&Command{Type: CmdNoop})}},
	{"forward-empty-command", &Request{Type: RPCForward}},
	{"forward-empty-slice", &Request{Type: RPCForward, Command: []byte{}}},
	{"forward-opaque", &Request{Type: RPCForward, Command: []byte{0xff, 0, 0x80}}},
	{"forward-large", &Request{Type: RPCForward, Command: bytes.Repeat([]byte{7}, 70000), From: strings.Repeat("n", 200)}},
	{"read-index", &Request{Type: RPCReadIndex, From: "node-2", TimeoutMillis: math.MaxInt64}},
	{"read-index-zero", &Request{Type: RPCReadIndex}},
	{"lease-keepalive", &Request{Type: RPCLeaseKeepAlive, LeaseID: math.MaxInt64, TimeoutMillis: -1}},
	{"lease-keepalive-min", &Request{Type: RPCLeaseKeepAlive, LeaseID: math.MinInt64, TimeoutMillis: math.MinInt64}},
	{"lease-ttl", &Request{Type: RPCLeaseTimeToLive, LeaseID: 0x1234_5678_9abc, Keys: true, From: "n"}},
	{"lease-ttl-no-keys", &Request{Type: RPCLeaseTimeToLive, LeaseID: -5}},
	{"status", &Request{Type: RPCStatus, From: "\x00\xff", TimeoutMillis: 100}},
	{"member-lookup", &Request{Type: RPCMemberLookup, Addr: "10.0.0.1:2380", From: "node-3", TimeoutMillis: 1}},
	{"member-lookup-empty", &Request{Type: RPCMemberLookup}},
	{"member-remove", &Request{Type: RPCMemberRemove, MemberID: "node-3", From: "node-3", TimeoutMillis: 10_000}},
	{"member-remove-empty", &Request{Type: RPCMemberRemove}},
	{"member-update", &Request{Type: RPCMemberUpdate, MemberID: "node-3", Addr: "10.0.0.9:2380", From: "node-3"}},
	{"member-add", &Request{Type: RPCMemberAdd, Addr: "10.0.0.4:2380", Learner: true, From: "node-1"}},
	{"member-add-voter", &Request{Type: RPCMemberAdd, Addr: "10.0.0.4:2380"}},
	{"member-promote", &Request{Type: RPCMemberPromote, MemberID: "node-4"}},
	{"member-check", &Request{Type: RPCMemberCheck, MemberID: "node-4", From: "node-4"}},
}

var rpcResponseCases = []struct {
	name string
	resp *Response
}{
	{"empty", &Response{}},
	{"not-leader", &Response{ErrCode: ErrCodeNotLeader, ErrMsg: "accord: not the leader", LeaderID: "node-2", LeaderAddr: "10.0.0.2:2380"}},
	{"no-leader", &Response{ErrCode: ErrCodeNoLeader}},
	{"errcode-last-known", &Response{ErrCode: errCodeMax - 1, ErrMsg: "x"}},
	{"errcode-unknown", &Response{ErrCode: errCodeMax, ErrMsg: "from the future"}},
	{"errcode-1000", &Response{ErrCode: 1000}},
	{"errcode-max", &Response{ErrCode: math.MaxUint16, ErrMsg: "max"}},
	{"errmsg-only", &Response{ErrMsg: "odd but allowed"}},
	{"leader-hint-only", &Response{LeaderAddr: "h:1"}},
	{"forward-revision", &Response{Revision: 42}},
	{"forward-revision-negative", &Response{Revision: math.MinInt64}},
	{"forward-txn", &Response{Txn: rpcFullTxnResponse(), Revision: 99}},
	{"txn-empty", &Response{Txn: &TxnResponse{}}},
	{"txn-empty-slices", &Response{Txn: &TxnResponse{Responses: []ResponseOp{
		{Range: &RangeResponse{KVs: []KeyValue{}}},
		{DeleteRange: &DeleteRangeResponse{PrevKVs: []KeyValue{}}},
		{Txn: &TxnResponse{Responses: []ResponseOp{}}},
		{Put: &PutResponse{PrevKV: &KeyValue{Value: []byte{}}}},
	}}}},
	{"txn-depth-max", &Response{Txn: nestedTxnResponse(MaxTxnDepth)}},
	{"read-index", &Response{Index: 7}},
	{"read-index-max", &Response{Index: math.MaxUint64}},
	{"keepalive", &Response{TTLMillis: 1500}},
	{"ttl-expired", &Response{TTLMillis: -1, GrantedTTLMillis: 10_000}},
	{"ttl-keys", &Response{TTLMillis: 1, GrantedTTLMillis: 2, Keys: []string{"a", "", "b/c\x00"}}},
	{"keys-empty-slice", &Response{Keys: []string{}}},
	{"status", &Response{Status: rpcFullStatus()}},
	{"status-zero", &Response{Status: &Status{}}},
	{"member", &Response{MemberID: "node-2"}},
	{"all-fields", &Response{
		ErrCode: ErrCodeUnknownOutcome, ErrMsg: "m", LeaderID: "l", LeaderAddr: "a",
		Txn: rpcFullTxnResponse(), Revision: 1, Index: 2, TTLMillis: 3, GrantedTTLMillis: 4,
		Keys: []string{"k"}, Status: rpcFullStatus(), MemberID: "id",
	}},
}

// rpcNormalize returns a deep copy of v with empty byte strings and empty
// slices replaced by nil, as the decoders return them.
func rpcNormalize[T any](v *T) *T {
	if v == nil {
		return nil
	}
	out := reflect.New(reflect.TypeFor[T]())
	rpcNormalizeInto(out.Elem(), reflect.ValueOf(v).Elem())
	return out.Interface().(*T)
}

func rpcNormalizeInto(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		rpcNormalizeInto(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Struct:
		for i := range src.NumField() {
			rpcNormalizeInto(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.Len() == 0 {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			rpcNormalizeInto(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	default:
		dst.Set(src)
	}
}

// rpcDump formats a value readably for failure messages.
func rpcDump(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		return "<nil>"
	}
	var sb strings.Builder
	dumpValue(&sb, rv)
	return sb.String()
}

func mustEncodeRequest(t testing.TB, r *Request) []byte {
	t.Helper()
	b, err := AppendRequest(nil, r)
	if err != nil {
		t.Fatalf("AppendRequest: %v", err)
	}
	return b
}

func mustEncodeResponse(t testing.TB, r *Response) []byte {
	t.Helper()
	b, err := AppendResponse(nil, r)
	if err != nil {
		t.Fatalf("AppendResponse: %v", err)
	}
	return b
}

// rpcEncoding is one case of a round-trip table and its encoding.
type rpcEncoding struct {
	name string
	enc  []byte
}

// rpcCodec abstracts over requests and responses so that the generic tests
// run on both.
type rpcCodec struct {
	name   string
	dir    string
	cases  func(t testing.TB) []rpcEncoding // the round-trip table, encoded
	decode func(b []byte) (any, error)      // returns a typed nil pointer on error
	encode func(v any) ([]byte, error)
}

var rpcCodecs = []rpcCodec{
	{
		name: "request",
		dir:  rpcRequestCorpusDir,
		cases: func(t testing.TB) []rpcEncoding {
			var out []rpcEncoding
			for _, tc := range rpcRequestCases {
				out = append(out, rpcEncoding{tc.name, mustEncodeRequest(t, tc.req)})
			}
			return out
		},
		decode: func(b []byte) (any, error) { return DecodeRequest(b) },
		encode: func(v any) ([]byte, error) { return AppendRequest(nil, v.(*Request)) },
	},
	{
		name: "response",
		dir:  rpcResponseCorpusDir,
		cases: func(t testing.TB) []rpcEncoding {
			var out []rpcEncoding
			for _, tc := range rpcResponseCases {
				out = append(out, rpcEncoding{tc.name, mustEncodeResponse(t, tc.resp)})
			}
			return out
		},
		decode: func(b []byte) (any, error) { return DecodeResponse(b) },
		encode: func(v any) ([]byte, error) { return AppendResponse(nil, v.(*Response)) },
	},
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return v == nil || (rv.Kind() == reflect.Pointer && rv.IsNil())
}

func TestRPCRequestRoundTrip(t *testing.T) {
	for _, tc := range rpcRequestCases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEncodeRequest(t, tc.req)
			if b[0] != RPCVersion || RPCType(b[1]) != tc.req.Type {
				t.Fatalf("header = % x, want %02x %02x", b[:2], RPCVersion, tc.req.Type)
			}
			prefix := []byte("prefix")
			ab, err := AppendRequest(bytes.Clone(prefix), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ab[:len(prefix)], prefix) || !bytes.Equal(ab[len(prefix):], b) {
				t.Fatalf("AppendRequest = %x, want prefix + %x", ab, b)
			}
			got, err := DecodeRequest(b)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			want := rpcNormalize(tc.req)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip mismatch\n got: %s\nwant: %s", rpcDump(got), rpcDump(want))
			}
			for i := range b {
				b[i] = 0xa5
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatal("decoded request changed when the input was overwritten")
			}
		})
	}
}

func TestRPCResponseRoundTrip(t *testing.T) {
	for _, tc := range rpcResponseCases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEncodeResponse(t, tc.resp)
			if b[0] != RPCVersion {
				t.Fatalf("version byte %02x", b[0])
			}
			prefix := []byte("prefix")
			ab, err := AppendResponse(bytes.Clone(prefix), tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ab[:len(prefix)], prefix) || !bytes.Equal(ab[len(prefix):], b) {
				t.Fatalf("AppendResponse = %x, want prefix + %x", ab, b)
			}
			got, err := DecodeResponse(b)
			if err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			want := rpcNormalize(tc.resp)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip mismatch\n got: %s\nwant: %s", rpcDump(got), rpcDump(want))
			}
			for i := range b {
				b[i] = 0xa5
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatal("decoded response changed when the input was overwritten")
			}
		})
	}
}

// TestRPCDeepTxnResponse walks the decoded chain of TestRPCResponseRoundTrip's
// deepest case, to check that depth MaxTxnDepth really was reached.
func TestRPCDeepTxnResponse(t *testing.T) {
	r, err := DecodeResponse(mustEncodeResponse(t, &Response{Txn: nestedTxnResponse(MaxTxnDepth)}))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for txn := r.Txn; txn != nil; n++ {
		if txn.Revision != int64(n+1) {
			t.Fatalf("depth %d: revision %d", n+1, txn.Revision)
		}
		txn = txn.Responses[0].Txn
	}
	if n != MaxTxnDepth {
		t.Fatalf("decoded depth %d, want %d", n, MaxTxnDepth)
	}
}

// TestRPCEveryFieldEncoded sets each scalar field of each struct, alone, to
// a non-zero value and checks that it survives a round trip. It fails if a
// field is added to rpc.go without being added to the codec.
func TestRPCEveryFieldEncoded(t *testing.T) {
	type target struct {
		name  string
		typ   reflect.Type
		build func(v reflect.Value) any // v is a pointer to a struct of typ; returns *Request or *Response
	}
	resp := func(txn *TxnResponse) any { return &Response{Txn: txn} }
	targets := []target{
		{"Request", reflect.TypeFor[Request](), func(v reflect.Value) any { return v.Interface() }},
		{"Response", reflect.TypeFor[Response](), func(v reflect.Value) any { return v.Interface() }},
		{"Status", reflect.TypeFor[Status](), func(v reflect.Value) any {
			return &Response{Status: v.Interface().(*Status)}
		}},
		{"KeyValue", reflect.TypeFor[KeyValue](), func(v reflect.Value) any {
			kv := v.Interface().(*KeyValue)
			return resp(&TxnResponse{Responses: []ResponseOp{
				{Range: &RangeResponse{KVs: []KeyValue{*kv}}},
				{Put: &PutResponse{PrevKV: kv}},
				{DeleteRange: &DeleteRangeResponse{PrevKVs: []KeyValue{*kv, {}}}},
			}})
		}},
		{"RangeResponse", reflect.TypeFor[RangeResponse](), func(v reflect.Value) any {
			return resp(&TxnResponse{Responses: []ResponseOp{{Range: v.Interface().(*RangeResponse)}}})
		}},
		{"PutResponse", reflect.TypeFor[PutResponse](), func(v reflect.Value) any {
			return resp(&TxnResponse{Responses: []ResponseOp{{Put: v.Interface().(*PutResponse)}}})
		}},
		{"DeleteRangeResponse", reflect.TypeFor[DeleteRangeResponse](), func(v reflect.Value) any {
			return resp(&TxnResponse{Responses: []ResponseOp{{DeleteRange: v.Interface().(*DeleteRangeResponse)}}})
		}},
		{"TxnResponse", reflect.TypeFor[TxnResponse](), func(v reflect.Value) any {
			txn := v.Interface().(*TxnResponse)
			return resp(&TxnResponse{Responses: []ResponseOp{{Txn: txn}}})
		}},
		{"ResponseOp", reflect.TypeFor[ResponseOp](), nil},
	}
	// Fields that are structural rather than scalar; the round-trip tables
	// cover them.
	structural := map[string]bool{
		"Request.Type": true, "Response.Txn": true, "Response.Status": true,
		"RangeResponse.KVs": true, "PutResponse.PrevKV": true, "DeleteRangeResponse.PrevKVs": true,
		"TxnResponse.Responses": true,
		"ResponseOp.Range":      true, "ResponseOp.Put": true, "ResponseOp.DeleteRange": true, "ResponseOp.Txn": true,
	}
	// Request payload fields only make sense with the matching type.
	requestType := map[string]RPCType{
		"Command": RPCForward, "LeaseID": RPCLeaseKeepAlive, "Keys": RPCLeaseTimeToLive,
		"Addr": RPCMemberLookup, "MemberID": RPCMemberRemove, "Learner": RPCMemberAdd, "From": RPCStatus, "TimeoutMillis": RPCReadIndex,
	}
	for _, tg := range targets {
		for i := 0; i < tg.typ.NumField(); i++ {
			f := tg.typ.Field(i)
			name := tg.name + "." + f.Name
			if structural[name] {
				continue
			}
			if tg.build == nil {
				t.Errorf("%s: unexpected scalar field; extend this test and the codec", name)
				continue
			}
			v := reflect.New(tg.typ)
			fv := v.Elem().Field(i)
			switch {
			case f.Type.Kind() == reflect.String:
				fv.SetString("\x00x\xff")
			case f.Type.Kind() == reflect.Int64:
				fv.SetInt(-1 << 50)
			case f.Type.Kind() == reflect.Uint64:
				fv.SetUint(1<<63 + 5)
			case f.Type.Kind() == reflect.Uint16:
				fv.SetUint(0xfffe)
			case f.Type.Kind() == reflect.Bool:
				fv.SetBool(true)
			case f.Type == reflect.TypeFor[[]byte]():
				fv.SetBytes([]byte{0, 1, 2})
			case f.Type == reflect.TypeFor[[]string]():
				fv.Set(reflect.ValueOf([]string{"", "x"}))
			default:
				t.Errorf("%s: field of type %s not handled by this test; extend it and the codec", name, f.Type)
				continue
			}
			msg := tg.build(v)
			if r, ok := msg.(*Request); ok && tg.name == "Request" {
				typ, ok := requestType[f.Name]
				if !ok {
					t.Errorf("%s: no request type known for this field; extend this test", name)
					continue
				}
				r.Type = typ
			}
			var enc []byte
			var got, want any
			var err error
			switch m := msg.(type) {
			case *Request:
				if enc, err = AppendRequest(nil, m); err == nil {
					got, err = DecodeRequest(enc)
				}
				want = rpcNormalize(m)
			case *Response:
				if enc, err = AppendResponse(nil, m); err == nil {
					got, err = DecodeResponse(enc)
				}
				want = rpcNormalize(m)
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s does not survive a round trip:\n got: %s\nwant: %s", name, rpcDump(got), rpcDump(want))
			}
		}
	}
}

// TestRPCGolden pins the byte format: peers of different builds must agree
// on it, so changing it needs a new RPCVersion.
func TestRPCGolden(t *testing.T) {
	requests := []struct {
		req *Request
		hex string
	}{
		{&Request{Type: RPCReadIndex, From: "n1"}, "01" + "02" + "026e31" + "00"},
		{&Request{Type: RPCForward, Command: []byte{1, 6}, From: "a", TimeoutMillis: 1000},
			"01" + "01" + "0161" + "d00f" + "020106"},
		{&Request{Type: RPCLeaseKeepAlive, LeaseID: -2}, "01" + "03" + "00" + "00" + "03"},
		{&Request{Type: RPCLeaseTimeToLive, LeaseID: 5, Keys: true}, "01" + "04" + "00" + "00" + "0a" + "01"},
		{&Request{Type: RPCStatus, TimeoutMillis: -1}, "01" + "05" + "00" + "01"},
		{&Request{Type: RPCMemberLookup, Addr: "h:1"}, "01" + "06" + "00" + "00" + "03683a31"},
		{&Request{Type: RPCMemberRemove, MemberID: "n3", From: "n3"}, "01" + "07" + "026e33" + "00" + "026e33"},
	}
	for _, tc := range requests {
		if got := hex.EncodeToString(mustEncodeRequest(t, tc.req)); got != tc.hex {
			t.Errorf("AppendRequest(%s)\n = %s\nwant %s", rpcDump(tc.req), got, tc.hex)
		}
	}
	responses := []struct {
		resp *Response
		hex  string
	}{
		{&Response{}, "01" + "00"},
		{&Response{ErrCode: ErrCodeNotLeader, ErrMsg: "x", LeaderID: "n2", LeaderAddr: "h:2"},
			"01" + "0f" + "02" + "0178" + "026e32" + "03683a32"},
		{&Response{ErrCode: 1000}, "01" + "01" + "e807"},
		{&Response{Index: 300}, "01" + "40" + "ac02"},
		{&Response{TTLMillis: -1, GrantedTTLMillis: 2}, "01" + "8003" + "01" + "04"},
		{&Response{Keys: []string{"a"}, MemberID: "m"}, "01" + "8014" + "01" + "0161" + "016d"},
		// txn (bit 4) and revision (bit 5): txn revision 5, succeeded,
		// 3 ops: put (rev 5, no prev), range (rev 5, one kv, count 1, not
		// more), delete_range (rev 5, deleted 0, no prev kvs).
		{&Response{Revision: 5, Txn: &TxnResponse{Revision: 5, Succeeded: true, Responses: []ResponseOp{
			{Put: &PutResponse{Revision: 5}},
			{Range: &RangeResponse{Revision: 5, Count: 1, KVs: []KeyValue{
				{Key: "k", Value: []byte("v"), CreateRevision: 2, ModRevision: 5, Version: 3},
			}}},
			{DeleteRange: &DeleteRangeResponse{Revision: 5}},
		}}}, "01" + "30" +
			"0a" + "01" + "03" +
			"02" + "0a" + "00" +
			"01" + "0a" + "01" + "016b" + "0176" + "04" + "0a" + "06" + "00" + "02" + "00" +
			"03" + "0a" + "00" + "00" +
			"0a"},
		// put with prev kv; nested empty txn.
		{&Response{Txn: &TxnResponse{Responses: []ResponseOp{
			{Put: &PutResponse{PrevKV: &KeyValue{Lease: 1}}},
			{Txn: &TxnResponse{}},
		}}}, "01" + "10" + "00" + "00" + "02" +
			"02" + "00" + "01" + "00" + "00" + "00" + "00" + "00" + "02" +
			"04" + "00" + "00" + "00"},
		{&Response{Status: &Status{NodeID: "a", Term: 1, IsLearner: true}},
			"01" + "8008" + "0161" + "00" + "00" + "01" + "00" + "00" + "00" + "00" + "00" + "00" + "01"},
	}
	for _, tc := range responses {
		if got := hex.EncodeToString(mustEncodeResponse(t, tc.resp)); got != tc.hex {
			t.Errorf("AppendResponse(%s)\n = %s\nwant %s", rpcDump(tc.resp), got, tc.hex)
		}
	}
}

// TestRPCProtocolValues pins the numeric values of RPC types and error
// codes, which are part of the protocol.
func TestRPCProtocolValues(t *testing.T) {
	types := []RPCType{RPCInvalid, RPCForward, RPCReadIndex, RPCLeaseKeepAlive, RPCLeaseTimeToLive, RPCStatus, RPCMemberLookup, RPCMemberRemove, RPCMemberUpdate, RPCMemberAdd, RPCMemberPromote, RPCMemberCheck}
	for i, typ := range types {
		if int(typ) != i {
			t.Errorf("%s = %d, want %d", typ, typ, i)
		}
		if typ.Known() != (i != 0) {
			t.Errorf("%d.Known() = %v", typ, typ.Known())
		}
		if (typ.String() == "unknown") != (i == 0) {
			t.Errorf("%d.String() = %q", typ, typ.String())
		}
	}
	for _, typ := range []RPCType{rpcMax, 200, 255} {
		if typ.Known() || typ.String() != "unknown" {
			t.Errorf("%d: Known %v, String %q", typ, typ.Known(), typ.String())
		}
	}

	codes := []ErrCode{
		ErrCodeNone, ErrCodeUnknown, ErrCodeNotLeader, ErrCodeNoLeader, ErrCodeUnknownOutcome,
		ErrCodeClosed, ErrCodeEmptyKey, ErrCodeKeyNotFound, ErrCodeValueProvided, ErrCodeLeaseProvided,
		ErrCodeTooManyOps, ErrCodeDuplicateKey, ErrCodeRequestTooLarge, ErrCodeCompacted, ErrCodeFutureRev,
		ErrCodeLeaseNotFound, ErrCodeLeaseExists, ErrCodeLeaseTTLTooLarge, ErrCodeUnsupported,
		ErrCodeInvalidArgument, ErrCodeCorrupt, ErrCodeTimeout, ErrCodeNotFound, ErrCodeExists, ErrCodeNoSpace,
		ErrCodeSpaceExceeded,
		ErrCodeNotEnoughStarted, ErrCodeUnhealthy,
	}
	if len(codes) != int(errCodeMax) {
		t.Fatalf("%d codes listed, errCodeMax = %d", len(codes), errCodeMax)
	}
	names := map[string]bool{}
	for i, c := range codes {
		if int(c) != i {
			t.Errorf("%s = %d, want %d", c, c, i)
		}
		if !c.Known() {
			t.Errorf("%d.Known() = false", c)
		}
		name := c.String()
		if name == "" || strings.HasPrefix(name, "code-") || names[name] {
			t.Errorf("%d.String() = %q: empty, generic or duplicate", c, name)
		}
		names[name] = true
	}
	if ErrCodeNotLeader.String() != "not-leader" {
		t.Errorf("ErrCodeNotLeader.String() = %q", ErrCodeNotLeader.String())
	}
	for _, c := range []ErrCode{errCodeMax, 1000, math.MaxUint16} {
		if c.Known() || c.String() != "code-"+strconv.Itoa(int(c)) {
			t.Errorf("%d: Known %v, String %q", c, c.Known(), c.String())
		}
	}
}

// TestRPCUnknownErrCode checks that error codes from a newer peer decode
// instead of failing the protocol.
func TestRPCUnknownErrCode(t *testing.T) {
	for _, c := range []ErrCode{errCodeMax, errCodeMax + 1, 1000, 0x7fff, math.MaxUint16} {
		want := &Response{ErrCode: c, ErrMsg: "newer"}
		got, err := DecodeResponse(mustEncodeResponse(t, want))
		if err != nil {
			t.Fatalf("code %d: %v", c, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("code %d: got %s", c, rpcDump(got))
		}
		if got.ErrCode.Known() {
			t.Fatalf("code %d reported as known", c)
		}
	}
}

func TestRPCUnknownType(t *testing.T) {
	for _, typ := range []RPCType{rpcMax, rpcMax + 1, 200, 255} {
		// Whatever follows the type byte, even nothing or garbage, the
		// answer is ErrUnknownRPC: a newer peer's payload is not ours to judge.
		for _, tail := range [][]byte{nil, {0xff}, {0, 0, 1, 2, 3}} {
			in := append([]byte{RPCVersion, byte(typ)}, tail...)
			r, err := DecodeRequest(in)
			if !errors.Is(err, ErrUnknownRPC) || r != nil {
				t.Fatalf("type %d + % x: %s, %v; want nil, ErrUnknownRPC", typ, tail, rpcDump(r), err)
			}
			var uerr *UnknownRPCError
			if !errors.As(err, &uerr) || uerr.Type != typ {
				t.Fatalf("type %d: err = %#v, want *UnknownRPCError{Type: %d}", typ, err, typ)
			}
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) {
				t.Fatalf("type %d: err %v also matches ErrCorrupt/ErrTruncated", typ, err)
			}
			if !strings.HasPrefix(err.Error(), "wire: ") || !strings.Contains(err.Error(), strconv.Itoa(int(typ))) {
				t.Errorf("error %q lacks the wire: prefix or the type", err)
			}
		}
		// The encoder refuses to produce one.
		if _, err := AppendRequest(nil, &Request{Type: typ}); !errors.Is(err, ErrUnknownRPC) {
			t.Fatalf("AppendRequest(type %d): err = %v, want ErrUnknownRPC", typ, err)
		}
	}
	// Type 0 is never valid.
	if _, err := DecodeRequest([]byte{RPCVersion, 0}); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnknownRPC) {
		t.Fatalf("type 0: err = %v, want ErrCorrupt only", err)
	}
	if _, err := AppendRequest(nil, &Request{}); !errors.Is(err, ErrUnknownRPC) {
		t.Fatalf("AppendRequest(type 0): err = %v, want ErrUnknownRPC", err)
	}
}

func TestRPCDecodeTruncated(t *testing.T) {
	for _, c := range rpcCodecs {
		for _, tc := range c.cases(t) {
			name, b := tc.name, tc.enc
			for i := 0; i < len(b); i++ {
				v, err := c.decode(b[:i:i])
				if err == nil {
					t.Fatalf("%s %s: decode(first %d of %d bytes) = %s, want error", c.name, name, i, len(b), rpcDump(v))
				}
				if !isNilPointer(v) {
					t.Fatalf("%s %s: non-nil result with error %v", c.name, name, err)
				}
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s %s: truncated at %d: error %v is neither ErrTruncated nor ErrCorrupt", c.name, name, i, err)
				}
			}
		}
	}
}

func TestRPCDecodeTrailingBytes(t *testing.T) {
	for _, c := range rpcCodecs {
		for _, tc := range c.cases(t) {
			name, b := tc.name, tc.enc
			for _, extra := range [][]byte{{0}, {1}, {0xff, 0xff}} {
				v, err := c.decode(append(bytes.Clone(b), extra...))
				if !errors.Is(err, ErrCorrupt) || !isNilPointer(v) {
					t.Errorf("%s %s + % x: err = %v, want ErrCorrupt", c.name, name, extra, err)
				}
			}
		}
	}
}

func TestRPCDecodeErrors(t *testing.T) {
	cases := []struct {
		name     string
		response bool
		in       string // hex
		want     error
	}{
		{"req-empty", false, "", ErrTruncated},
		{"req-version-only", false, "01", ErrTruncated},
		{"req-version-0", false, "0002", ErrUnknownVersion},
		{"req-version-2", false, "020200", ErrUnknownVersion},
		{"req-version-2-alone", false, "02", ErrUnknownVersion},
		{"req-type-0", false, "0100", ErrCorrupt},
		{"req-type-12", false, "010c", ErrUnknownRPC},
		{"req-type-255", false, "01ff0000", ErrUnknownRPC},
		{"req-no-from", false, "0102", ErrTruncated},
		{"req-no-timeout", false, "010200", ErrTruncated},
		{"req-from-too-long", false, "0102050000", ErrCorrupt},
		{"req-timeout-overlong", false, "0102008000", ErrCorrupt},
		{"req-timeout-overflow", false, "010200" + strings.Repeat("ff", 9) + "02", ErrCorrupt},
		{"req-forward-no-command", false, "01010000", ErrTruncated},
		{"req-forward-command-too-long", false, "0101000003aabb", ErrCorrupt},
		{"req-forward-command-1<<60", false, "01010000" + "8080808080808080" + "10", ErrCorrupt},
		{"req-keepalive-no-lease", false, "01030000", ErrTruncated},
		{"req-ttl-no-keys", false, "0104000002", ErrTruncated},
		{"req-ttl-keys-2", false, "010400000202", ErrCorrupt},
		{"req-ttl-keys-ff", false, "0104000002ff", ErrCorrupt},
		{"req-status-trailing", false, "01050000" + "00", ErrCorrupt},
		{"req-readindex-trailing", false, "01020000" + "ff", ErrCorrupt},
		{"req-lookup-no-addr", false, "01060000", ErrTruncated},
		{"req-remove-no-member", false, "01070000", ErrTruncated},
		{"req-remove-member-too-long", false, "0107000002aa", ErrCorrupt},

		{"resp-empty", true, "", ErrTruncated},
		{"resp-version-only", true, "01", ErrTruncated},
		{"resp-version-0", true, "0000", ErrUnknownVersion},
		{"resp-version-2", true, "0200", ErrUnknownVersion},
		{"resp-fields-overlong", true, "018000", ErrCorrupt},
		{"resp-fields-bit-12", true, "01" + "8020", ErrCorrupt},
		{"resp-fields-bit-63", true, "01" + "80808080808080808001", ErrCorrupt},
		{"resp-trailing", true, "0100" + "00", ErrCorrupt},
		{"resp-errcode-zero", true, "0101" + "00", ErrCorrupt},
		{"resp-errcode-65536", true, "0101" + "808004", ErrCorrupt},
		{"resp-errcode-huge", true, "0101" + "ffffffffffffffffff01", ErrCorrupt},
		{"resp-errcode-missing", true, "0101", ErrTruncated},
		{"resp-errmsg-empty", true, "0102" + "00", ErrCorrupt},
		{"resp-leaderid-empty", true, "0104" + "00", ErrCorrupt},
		{"resp-leaderaddr-empty", true, "0108" + "00", ErrCorrupt},
		{"resp-revision-zero", true, "0120" + "00", ErrCorrupt},
		{"resp-index-zero", true, "0140" + "00", ErrCorrupt},
		{"resp-ttl-zero", true, "018001" + "00", ErrCorrupt},
		{"resp-granted-zero", true, "018002" + "00", ErrCorrupt},
		{"resp-keys-zero", true, "018004" + "00", ErrCorrupt},
		{"resp-keys-count-too-big", true, "018004" + "03" + "0000", ErrCorrupt},
		{"resp-memberid-empty", true, "018010" + "00", ErrCorrupt},
		{"resp-errmsg-too-long", true, "0102" + "05" + "61", ErrCorrupt},
		{"resp-txn-missing", true, "0110", ErrTruncated},
		{"resp-txn-bad-succeeded", true, "0110" + "00" + "02" + "00", ErrCorrupt},
		{"resp-txn-op-count-too-big", true, "0110" + "00" + "00" + "02" + "020000", ErrCorrupt},
		{"resp-txn-op-count-huge", true, "0110" + "00" + "00" + "ffffffffffffffff7f", ErrCorrupt},
		{"resp-txn-op-tag-0", true, "0110" + "00" + "00" + "01" + "000000", ErrCorrupt},
		{"resp-txn-op-tag-5", true, "0110" + "00" + "00" + "01" + "050000", ErrCorrupt},
		{"resp-put-bad-has-prev", true, "0110" + "00" + "00" + "01" + "02" + "00" + "02", ErrCorrupt},
		{"resp-put-prev-missing", true, "0110" + "00" + "00" + "01" + "02" + "00" + "01", ErrTruncated},
		{"resp-range-bad-more", true, "0110" + "00" + "00" + "01" + "01" + "00" + "00" + "00" + "02", ErrCorrupt},
		{"resp-range-kv-count-too-big", true, "0110" + "00" + "00" + "01" + "01" + "00" + "02" + "000000000000", ErrCorrupt},
		{"resp-delete-kvs-missing", true, "0110" + "00" + "00" + "01" + "03" + "00" + "00", ErrTruncated},
		{"resp-status-missing", true, "018008", ErrTruncated},
		{"resp-status-bad-learner", true, "018008" + "000000" + "000000" + "000000" + "00" + "02", ErrCorrupt},
		{"resp-status-truncated", true, "018008" + "000000" + "000000" + "000000" + "00", ErrTruncated},
		{"resp-txn-depth-max+1", true, hex.EncodeToString(nestedTxnResponseBytes(MaxTxnDepth + 1)), ErrCorrupt},
		{"resp-txn-depth-10000", true, hex.EncodeToString(nestedTxnResponseBytes(10000)), ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := hex.DecodeString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if tc.response {
				v, err = DecodeResponse(in)
			} else {
				v, err = DecodeRequest(in)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode(%s) = %s, %v; want %v", tc.in, rpcDump(v), err, tc.want)
			}
			if !isNilPointer(v) {
				t.Fatal("non-nil result with error")
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		})
	}
}

func TestRPCTxnResponseDepth(t *testing.T) {
	for _, depth := range []int{1, 2, MaxTxnDepth - 1, MaxTxnDepth} {
		in := nestedTxnResponseBytes(depth)
		r, err := DecodeResponse(in)
		if err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		n := 0
		for txn := r.Txn; txn != nil; n++ {
			if len(txn.Responses) == 0 {
				txn = nil
			} else {
				txn = txn.Responses[0].Txn
			}
		}
		if n != depth {
			t.Fatalf("decoded depth %d, want %d", n, depth)
		}
		if b := mustEncodeResponse(t, r); !bytes.Equal(b, in) {
			t.Fatalf("depth %d: re-encoding differs", depth)
		}
	}
	if _, err := AppendResponse(nil, &Response{Txn: nestedTxnResponse(MaxTxnDepth + 1)}); !errors.Is(err, ErrInvalidRPC) {
		t.Fatalf("encode depth %d: err = %v, want ErrInvalidRPC", MaxTxnDepth+1, err)
	}
	// A cyclic transaction response must not hang or overflow the encoder.
	cyc := &TxnResponse{}
	cyc.Responses = []ResponseOp{{Txn: cyc}}
	if _, err := AppendResponse(nil, &Response{Txn: cyc}); !errors.Is(err, ErrInvalidRPC) {
		t.Fatalf("encode cyclic txn response: err = %v, want ErrInvalidRPC", err)
	}
}

func TestRPCEncodeErrors(t *testing.T) {
	reqs := []struct {
		name string
		req  *Request
		want error
	}{
		{"nil", nil, ErrInvalidRPC},
		{"type-invalid", &Request{}, ErrUnknownRPC},
		{"type-unknown", &Request{Type: rpcMax}, ErrUnknownRPC},
		{"readindex-with-command", &Request{Type: RPCReadIndex, Command: []byte{1}}, ErrInvalidRPC},
		{"status-with-lease", &Request{Type: RPCStatus, LeaseID: 1}, ErrInvalidRPC},
		{"forward-with-lease", &Request{Type: RPCForward, Command: []byte{1}, LeaseID: 1}, ErrInvalidRPC},
		{"keepalive-with-keys", &Request{Type: RPCLeaseKeepAlive, LeaseID: 1, Keys: true}, ErrInvalidRPC},
		{"ttl-with-addr", &Request{Type: RPCLeaseTimeToLive, Addr: "a"}, ErrInvalidRPC},
		{"lookup-with-command", &Request{Type: RPCMemberLookup, Addr: "a", Command: []byte{1}}, ErrInvalidRPC},
		{"lookup-with-lease", &Request{Type: RPCMemberLookup, LeaseID: 9}, ErrInvalidRPC},
		{"forward-with-addr", &Request{Type: RPCForward, Addr: "a"}, ErrInvalidRPC},
		{"lookup-with-member", &Request{Type: RPCMemberLookup, Addr: "a", MemberID: "m"}, ErrInvalidRPC},
		{"remove-with-addr", &Request{Type: RPCMemberRemove, MemberID: "m", Addr: "a"}, ErrInvalidRPC},
		{"status-with-member", &Request{Type: RPCStatus, MemberID: "m"}, ErrInvalidRPC},
	}
	for _, tc := range reqs {
		t.Run("request-"+tc.name, func(t *testing.T) {
			dst := make([]byte, 3, 4)
			out, err := AppendRequest(dst, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AppendRequest err = %v, want %v", err, tc.want)
			}
			if len(out) != 3 || &out[0] != &dst[0] {
				t.Fatalf("AppendRequest changed dst on error: len %d", len(out))
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		})
	}
	put := &PutResponse{Revision: 1}
	txn := func(ops ...ResponseOp) *Response {
		return &Response{ErrMsg: "m", Txn: &TxnResponse{Responses: append([]ResponseOp{{Put: put}}, ops...)}, Revision: 3}
	}
	resps := []struct {
		name string
		resp *Response
	}{
		{"nil", nil},
		{"op-empty", txn(ResponseOp{})},
		{"op-two-fields", txn(ResponseOp{Put: put, Range: &RangeResponse{}})},
		{"op-all-fields", txn(ResponseOp{Put: put, Range: &RangeResponse{}, DeleteRange: &DeleteRangeResponse{}, Txn: &TxnResponse{}})},
		{"op-empty-nested", txn(ResponseOp{Txn: &TxnResponse{Responses: []ResponseOp{{Put: put}, {}}}})},
		{"too-deep", &Response{Txn: nestedTxnResponse(MaxTxnDepth + 1)}},
	}
	for _, tc := range resps {
		t.Run("response-"+tc.name, func(t *testing.T) {
			dst := make([]byte, 3, 4)
			out, err := AppendResponse(dst, tc.resp)
			if !errors.Is(err, ErrInvalidRPC) {
				t.Fatalf("AppendResponse err = %v, want ErrInvalidRPC", err)
			}
			if len(out) != 3 || &out[0] != &dst[0] {
				t.Fatalf("AppendResponse changed dst on error: len %d", len(out))
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		})
	}
}

// rpcWorstCaseResponses returns responses made of as many of the smallest
// elements as n allows, the inputs that make a decoder allocate the most per
// input byte.
func rpcWorstCaseResponses(n int) map[string][]byte {
	out := map[string][]byte{}
	e := NewEncoder(nil)

	e.Byte(RPCVersion)
	e.Uvarint(respKeys)
	e.Uvarint(uint64(n))
	for range n {
		e.String("")
	}
	out["empty-keys"] = bytes.Clone(e.Data())

	for _, op := range []struct {
		name string
		body []byte
	}{
		{"puts", []byte{opPut, 0, 0}},
		{"ranges", []byte{opRange, 0, 0, 0, 0}},
		{"deletes", []byte{opDeleteRange, 0, 0, 0}},
		{"txns", []byte{opTxn, 0, 0, 0}},
		{"prev-kvs", []byte{opPut, 0, 1, 0, 0, 0, 0, 0, 0}},
	} {
		e.Reset()
		e.Byte(RPCVersion)
		e.Uvarint(respTxn)
		e.Varint(0)
		e.Bool(false)
		e.Uvarint(uint64(n))
		for range n {
			e.buf = append(e.buf, op.body...)
		}
		out[op.name] = bytes.Clone(e.Data())
	}

	e.Reset()
	e.Byte(RPCVersion)
	e.Uvarint(respTxn)
	e.Varint(0)
	e.Bool(false)
	e.Uvarint(1)
	e.Byte(opRange)
	e.Varint(0)
	e.Uvarint(uint64(n))
	for range n {
		e.buf = append(e.buf, 0, 0, 0, 0, 0, 0)
	}
	e.Varint(0)
	e.Bool(false)
	out["empty-kvs"] = bytes.Clone(e.Data())
	return out
}

// TestRPCDecodeAllocationBound checks that decoding allocates at most a
// constant factor more than the input's size, on valid input and on input
// that fails at the very end.
func TestRPCDecodeAllocationBound(t *testing.T) {
	const factor, slack = 32, 4096
	inputs := rpcWorstCaseResponses(20000)
	for _, c := range rpcCodecs {
		for _, tc := range c.cases(t) {
			inputs[c.name+"-"+tc.name] = tc.enc
		}
	}
	for name, b := range inputs {
		isRequest := strings.HasPrefix(name, "request-")
		for _, in := range [][]byte{b, b[:len(b)-1]} {
			var before, after runtime.MemStats
			const runs = 5
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range runs {
				var err error
				if isRequest {
					_, err = DecodeRequest(in)
				} else {
					_, err = DecodeResponse(in)
				}
				if (err == nil) != (len(in) == len(b)) {
					t.Fatalf("%s (%d of %d bytes): err = %v", name, len(in), len(b), err)
				}
			}
			runtime.ReadMemStats(&after)
			per := (after.TotalAlloc - before.TotalAlloc) / runs
			if per > uint64(factor*len(in)+slack) {
				t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(in), per)
			}
		}
	}
}

// TestRPCHugeLengthNoAllocation checks that lengths and counts claiming far
// more than the input holds fail before anything is allocated for them.
func TestRPCHugeLengthNoAllocation(t *testing.T) {
	var inputs [][]byte
	for _, h := range []string{
		"01010000" + "8080808080808080" + "10",                           // request command length 1<<60
		"01060000" + "ffffffffffffffff7f",                                // request addr length
		"018004" + "8080808080808080" + "10",                             // response key count
		"0102" + "ffffffffffffffff7f",                                    // response err_msg length
		"0110" + "00" + "00" + "ffffffffffffffff7f",                      // txn op count
		"0110" + "00" + "00" + "01" + "01" + "00" + "ffffffffffffffff7f", // kv count
	} {
		in, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		for i, in := range inputs {
			var err error
			if i < 2 {
				_, err = DecodeRequest(in)
			} else {
				_, err = DecodeResponse(in)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("input %d: err = %v, want ErrCorrupt", i, err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("decoding hostile lengths allocated %d bytes", got)
	}
}

func TestRPCAppendNoAlloc(t *testing.T) {
	req := &Request{Type: RPCForward, Command: bytes.Repeat([]byte{1}, 100), From: "node-1", TimeoutMillis: 5000}
	resp := &Response{Txn: rpcFullTxnResponse(), Revision: 99, Status: rpcFullStatus(), Keys: []string{"a", "b"}}
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendRequest(buf[:0], req); err != nil {
			t.Fatal(err)
		}
		if buf, err = AppendResponse(buf[:0], resp); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendRequest+AppendResponse allocated %v times per call, want 0", allocs)
	}
}

// ---- Framing ----

// writeRecorder records each Write call.
type writeRecorder struct {
	writes [][]byte
	n      int   // if > 0, accept at most n bytes per call
	err    error // returned with every write
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	if w.n > 0 && len(p) > w.n {
		return w.n, w.err
	}
	return len(p), w.err
}

func TestFrameRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 127, 128, 300, 16383, 16384, frameChunk - 1, frameChunk, frameChunk + 1, 3*frameChunk + 17, 1 << 20}
	for range 200 {
		sizes = append(sizes, rng.IntN(1000))
	}
	var payloads [][]byte
	var stream bytes.Buffer
	w := &writeRecorder{}
	for _, n := range sizes {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		payloads = append(payloads, p)
		before := len(w.writes)
		if err := WriteFrame(w, p); err != nil {
			t.Fatal(err)
		}
		if len(w.writes) != before+1 {
			t.Fatalf("WriteFrame of %d bytes made %d Write calls, want 1", n, len(w.writes)-before)
		}
		stream.Write(w.writes[len(w.writes)-1])
	}
	for name, src := range map[string]func() io.Reader{
		"buffered": func() io.Reader { return bytes.NewReader(stream.Bytes()) },
		"one-byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream.Bytes())) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream.Bytes())) },
	} {
		t.Run(name, func(t *testing.T) {
			r := bufio.NewReaderSize(src(), 16)
			for i, want := range payloads {
				got, err := ReadFrame(r, 1<<20)
				if err != nil {
					t.Fatalf("frame %d (%d bytes): %v", i, len(want), err)
				}
				if got == nil || !bytes.Equal(got, want) {
					t.Fatalf("frame %d: got %d bytes (nil %v), want %d", i, len(got), got == nil, len(want))
				}
			}
			if got, err := ReadFrame(r, 1<<20); err != io.EOF || got != nil {
				t.Fatalf("after the last frame: %d bytes, %v; want io.EOF", len(got), err)
			}
		})
	}
}

func TestFrameGolden(t *testing.T) {
	for _, tc := range []struct {
		payload []byte
		hex     string
	}{
		{nil, "00"},
		{[]byte{0xab}, "01ab"},
		{bytes.Repeat([]byte{1}, 200), "c801" + strings.Repeat("01", 200)},
	} {
		var buf bytes.Buffer
		if err := WriteFrame(&buf, tc.payload); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(buf.Bytes()); got != tc.hex {
			t.Errorf("WriteFrame(%d bytes) = %s, want %s", len(tc.payload), got, tc.hex)
		}
	}
}

func TestWriteFrameErrors(t *testing.T) {
	boom := errors.New("boom")
	if err := WriteFrame(&writeRecorder{err: boom}, []byte("abc")); err != boom {
		t.Fatalf("err = %v, want the writer's error", err)
	}
	if err := WriteFrame(&writeRecorder{n: 2}, []byte("abc")); err != io.ErrShortWrite {
		t.Fatalf("short write: err = %v, want io.ErrShortWrite", err)
	}
}

func TestReadFrameTooLarge(t *testing.T) {
	frame := func(n uint64, body int) []byte {
		b := binaryAppendUvarint(nil, n)
		return append(b, make([]byte, body)...)
	}
	for _, tc := range []struct {
		n       uint64
		max     int
		wantErr bool
	}{
		{10, 10, false},
		{11, 10, true},
		{0, 0, false},
		{1, 0, true},
		{0, -1, false},
		{1, -1, true},
		{1 << 40, 1 << 30, true},
		{math.MaxUint64, math.MaxInt, true},
		{1<<63 + 1, math.MaxInt, true},
	} {
		body := 0
		if !tc.wantErr {
			body = int(tc.n)
		}
		r := bufio.NewReader(bytes.NewReader(frame(tc.n, body)))
		got, err := ReadFrame(r, tc.max)
		if tc.wantErr {
			if !errors.Is(err, ErrFrameTooLarge) || got != nil {
				t.Errorf("length %d, max %d: %d bytes, %v; want ErrFrameTooLarge", tc.n, tc.max, len(got), err)
			} else if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the wire: prefix", err)
			}
		} else if err != nil || len(got) != int(tc.n) {
			t.Errorf("length %d, max %d: %d bytes, %v", tc.n, tc.max, len(got), err)
		}
	}

	// Refusing a huge frame allocates nothing for it.
	in := frame(1<<40, 0)
	br := bufio.NewReader(bytes.NewReader(in))
	var rd bytes.Reader
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(in)
		br.Reset(&rd)
		if _, err := ReadFrame(br, 1<<30); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	})
	if allocs > 6 { // formatting the error only
		t.Fatalf("refusing a frame allocated %v times", allocs)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		rd.Reset(in)
		br.Reset(&rd)
		if _, err := ReadFrame(br, 1<<30); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("refusing 10 huge frames allocated %d bytes", got)
	}
}

// TestReadFrameCutShortNoBigAlloc checks that a frame within the limit that
// claims far more than arrives costs memory in proportion to what arrived.
func TestReadFrameCutShortNoBigAlloc(t *testing.T) {
	in := append(binaryAppendUvarint(nil, 512<<20), make([]byte, 100)...)
	var rd bytes.Reader
	br := bufio.NewReader(&rd)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		rd.Reset(in)
		br.Reset(&rd)
		got, err := ReadFrame(br, 1<<30)
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) || got != nil {
			t.Fatalf("%d bytes, %v; want ErrTruncated and io.ErrUnexpectedEOF", len(got), err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := (after.TotalAlloc - before.TotalAlloc) / 10; got > 2*frameChunk {
		t.Fatalf("a cut-short 512 MiB frame allocated %d bytes", got)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	var stream bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 300)} {
		if err := WriteFrame(&stream, p); err != nil {
			t.Fatal(err)
		}
	}
	full := stream.Bytes()
	// Frame boundaries: 0, 1 (empty frame), 3, 3+2+300.
	boundaries := map[int]bool{0: true, 1: true, 3: true, len(full): true}
	for i := 0; i <= len(full); i++ {
		r := bufio.NewReader(bytes.NewReader(full[:i]))
		var err error
		frames := 0
		for {
			if _, err = ReadFrame(r, 1000); err != nil {
				break
			}
			frames++
		}
		if boundaries[i] {
			if err != io.EOF {
				t.Fatalf("cut at %d (a frame boundary), after %d frames: err = %v, want io.EOF", i, frames, err)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d, after %d frames: err = %v, want ErrTruncated and io.ErrUnexpectedEOF", i, frames, err)
		}
		if !strings.HasPrefix(err.Error(), "wire: ") {
			t.Errorf("error %q lacks the wire: prefix", err)
		}
	}
}

func TestReadFrameBadLength(t *testing.T) {
	for _, h := range []string{
		"8000",                   // overlong
		"ff00",                   // overlong
		"ffffffffffffffffff02",   // overflows 64 bits
		"80808080808080808080",   // 10th byte has the continuation bit
		"8080808080808080808001", // 11 bytes
	} {
		in, _ := hex.DecodeString(h)
		_, err := ReadFrame(bufio.NewReader(bytes.NewReader(in)), math.MaxInt)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("length prefix %s: err = %v, want ErrCorrupt", h, err)
		}
	}
	// The longest valid prefix, within an unlimited limit but cut short.
	in, _ := hex.DecodeString("ffffffffffffffff7f")
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(in)), math.MaxInt); !errors.Is(err, ErrTruncated) {
		t.Errorf("max-int frame with no body: err = %v, want ErrTruncated", err)
	}
}

func TestReadFrameReaderError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := ReadFrame(bufio.NewReader(iotest.ErrReader(boom)), 10); err != boom {
		t.Fatalf("error before the frame: %v, want boom", err)
	}
	if _, err := ReadFrame(bufio.NewReader(io.MultiReader(bytes.NewReader([]byte{0x80}), iotest.ErrReader(boom))), 10); err != boom {
		t.Fatalf("error in the length: %v, want boom", err)
	}
	if _, err := ReadFrame(bufio.NewReader(io.MultiReader(bytes.NewReader([]byte{5, 1, 2}), iotest.ErrReader(boom))), 10); err != boom {
		t.Fatalf("error in the payload: %v, want boom", err)
	}
}

func binaryAppendUvarint(b []byte, x uint64) []byte {
	e := Encoder{buf: b}
	e.Uvarint(x)
	return e.buf
}

// ---- Fuzzing ----

// rpcSeeds returns the distinct encodings of c's round-trip table, keyed by
// corpus file name.
func rpcSeeds(t testing.TB, c rpcCodec) map[string][]byte {
	seeds := map[string][]byte{}
	seen := map[string]bool{}
	for _, tc := range c.cases(t) {
		if len(tc.enc) <= maxSeedSize && !seen[string(tc.enc)] {
			seen[string(tc.enc)] = true
			seeds["seed-"+tc.name] = tc.enc
		}
	}
	return seeds
}

// TestRPCFuzzCorpus checks that the committed seed corpora hold the current
// encodings of the round-trip tables, which makes them golden vectors for
// the protocol. Run with -update-rpc-corpus to rewrite them.
func TestRPCFuzzCorpus(t *testing.T) {
	for _, c := range rpcCodecs {
		seeds := rpcSeeds(t, c)
		if *updateRPCCorpus {
			if err := os.MkdirAll(c.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range seeds {
				if err := os.WriteFile(filepath.Join(c.dir, name), marshalCorpusEntry(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, ent := range entries {
			data, err := os.ReadFile(filepath.Join(c.dir, ent.Name()))
			if err != nil {
				t.Fatal(err)
			}
			b, err := parseCorpusEntry(data)
			if err != nil {
				t.Errorf("%s/%s: %v", c.dir, ent.Name(), err)
				continue
			}
			if !strings.HasPrefix(ent.Name(), "seed-") {
				continue // an input the fuzzer found; the fuzz target replays it
			}
			found[ent.Name()] = true
			want, ok := seeds[ent.Name()]
			if !ok {
				t.Errorf("%s/%s: no round-trip case of that name", c.dir, ent.Name())
				continue
			}
			if !bytes.Equal(b, want) {
				t.Errorf("%s/%s holds %x, but the case now encodes as %x; the protocol changed (bump RPCVersion) or run go test -run TestRPCFuzzCorpus -update-rpc-corpus",
					c.dir, ent.Name(), b, want)
			}
			if _, err := c.decode(b); err != nil {
				t.Errorf("%s/%s: %v", c.dir, ent.Name(), err)
			}
		}
		for name := range seeds {
			if !found[name] {
				t.Errorf("%s lacks %s; run go test -run TestRPCFuzzCorpus -update-rpc-corpus", c.dir, name)
			}
		}
	}
}

// fuzzRPC is the body of both RPC fuzz targets: decoding never panics,
// fails with a known error kind and a nil result, does not modify or alias
// its input, and a successful decode re-encodes to exactly the input.
func fuzzRPC(t *testing.T, c rpcCodec, in []byte) {
	buf := bytes.Clone(in)
	v, err := c.decode(buf)
	if !bytes.Equal(buf, in) {
		t.Fatal("decode modified its input")
	}
	if err != nil {
		if !isNilPointer(v) {
			t.Fatalf("non-nil %s with error %v", c.name, err)
		}
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) &&
			!errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrUnknownRPC) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "wire: ") {
			t.Fatalf("error %q lacks the wire: prefix", err)
		}
		return
	}
	// The decoded message must not alias the input.
	for i := range buf {
		buf[i] ^= 0xff
	}
	enc, err := c.encode(v)
	if err != nil {
		t.Fatalf("decoded %s does not re-encode: %v\n%s", c.name, err, rpcDump(v))
	}
	if !bytes.Equal(enc, in) {
		t.Fatalf("re-encoding differs:\n in: %x\nout: %x", in, enc)
	}
	v2, err := c.decode(enc)
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v", c.name, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("decode/encode/decode mismatch (or the first decode aliased its input):\n first: %s\nsecond: %s", rpcDump(v), rpcDump(v2))
	}
}

func addHexSeeds(f *testing.F, hexes ...string) {
	for _, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeRPCRequest(f *testing.F) {
	c := rpcCodecs[0]
	for _, b := range rpcSeeds(f, c) {
		f.Add(b)
	}
	addHexSeeds(f, "", "01", "02", "0100", "0108", "01ff", "0101", "010100", "01010000",
		"0104000002", "010400000202", "0102008000", "01010000"+"8080808080808080"+"10")
	f.Fuzz(func(t *testing.T, in []byte) { fuzzRPC(t, c, in) })
}

func FuzzDecodeRPCResponse(f *testing.F) {
	c := rpcCodecs[1]
	for _, b := range rpcSeeds(f, c) {
		f.Add(b)
	}
	addHexSeeds(f, "", "01", "0100", "010000", "0101"+"00", "0101"+"808004", "01"+"8020",
		"0110"+"00"+"00"+"01"+"050000", "018004"+"00", "0120"+"00")
	f.Add(nestedTxnResponseBytes(MaxTxnDepth))
	f.Add(nestedTxnResponseBytes(MaxTxnDepth + 1))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzRPC(t, c, in) })
}
