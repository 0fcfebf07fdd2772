package schema

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The known bytes below are what etcd 3.7.3's generated types marshal to
// (proto.Marshal of mvccpb.KeyValue, leasepb.Lease, authpb.User and Role,
// etcdserverpb.AlarmMember), recorded once from etcd's own code. The
// etcdapi module checks the same against etcd's types on random values.

var kvCases = []struct {
	name string
	kv   KeyValue
	hex  string
}{
	{"empty", KeyValue{}, ""},
	{"put", KeyValue{Key: []byte("foo"), CreateRevision: 2, ModRevision: 5, Version: 3, Value: []byte("bar"), Lease: 0x694d7e1b2c3a4f01},
		"0a03666f6f1002180520032a0362617230819ee9e1b2c3dfa669"},
	{"tombstone", KeyValue{Key: []byte("foo")}, "0a03666f6f"},
	{"negative", KeyValue{Key: []byte("k"), CreateRevision: -1, Lease: -2}, "0a016b10ffffffffffffffffff0130feffffffffffffffff01"},
	{"big", KeyValue{Key: []byte("a"), ModRevision: 1 << 62, Value: make([]byte, 200)},
		"0a0161188080808080808080402ac801" + strings.Repeat("00", 200)},
}

func TestKeyValueKnownBytes(t *testing.T) {
	for _, tc := range kvCases {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			if got := AppendKeyValue(nil, &tc.kv); !bytes.Equal(got, want) {
				t.Fatalf("AppendKeyValue = %x, want %x", got, want)
			}
			if n := SizeKeyValue(&tc.kv); n != len(want) {
				t.Fatalf("SizeKeyValue = %d, want %d", n, len(want))
			}
			// Appending keeps what dst held.
			if got := AppendKeyValue([]byte("pre"), &tc.kv); !bytes.Equal(got, append([]byte("pre"), want...)) {
				t.Fatalf("AppendKeyValue after a prefix = %x", got)
			}
			for _, dec := range []struct {
				name string
				f    func([]byte, *KeyValue) error
			}{{"DecodeKeyValue", DecodeKeyValue}, {"DecodeKeyValueNoCopy", DecodeKeyValueNoCopy}} {
				var kv KeyValue
				if err := dec.f(want, &kv); err != nil {
					t.Fatalf("%s: %v", dec.name, err)
				}
				if !kvEqual(&kv, &tc.kv) {
					t.Fatalf("%s = %+v, want %+v", dec.name, kv, tc.kv)
				}
			}
			var h KeyValueHeader
			if err := DecodeKeyValueHeader(want, &h); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Key, tc.kv.Key) || h.CreateRevision != tc.kv.CreateRevision || h.ModRevision != tc.kv.ModRevision ||
				h.Version != tc.kv.Version || h.Lease != tc.kv.Lease {
				t.Fatalf("DecodeKeyValueHeader = %+v, want the fields of %+v", h, tc.kv)
			}
		})
	}
}

func kvEqual(a, b *KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease
}

func TestKeyValueAliasing(t *testing.T) {
	in := AppendKeyValue(nil, &KeyValue{Key: []byte("key"), Value: []byte("value"), ModRevision: 9})
	var alias, cp KeyValue
	if err := DecodeKeyValueNoCopy(in, &alias); err != nil {
		t.Fatal(err)
	}
	if err := DecodeKeyValue(in, &cp); err != nil {
		t.Fatal(err)
	}
	if cap(alias.Key) != len(alias.Key) || cap(cp.Key) != len(cp.Key) {
		t.Fatal("a decoded key has spare capacity: appending to it would overwrite the value")
	}
	for i := range in {
		in[i] = 'X'
	}
	if string(alias.Key) != "XXX" || string(alias.Value) != "XXXXX" {
		t.Fatalf("NoCopy does not alias its input: %q %q", alias.Key, alias.Value)
	}
	if string(cp.Key) != "key" || string(cp.Value) != "value" {
		t.Fatalf("DecodeKeyValue aliases its input: %q %q", cp.Key, cp.Value)
	}
}

func TestKeyValueAllocations(t *testing.T) {
	kv := KeyValue{Key: []byte("some/key"), CreateRevision: 10, ModRevision: 12, Version: 2, Value: bytes.Repeat([]byte("v"), 256), Lease: 7}
	enc := AppendKeyValue(nil, &kv)
	buf := make([]byte, 0, len(enc))
	var out KeyValue
	var h KeyValueHeader
	for _, tc := range []struct {
		name string
		want float64
		f    func()
	}{
		{"AppendKeyValue into a buffer that fits", 0, func() { buf = AppendKeyValue(buf[:0], &kv) }},
		{"AppendKeyValue into nil", 1, func() { buf = AppendKeyValue(nil, &kv) }},
		{"DecodeKeyValueNoCopy", 0, func() { _ = DecodeKeyValueNoCopy(enc, &out) }},
		{"DecodeKeyValueHeader", 0, func() { _ = DecodeKeyValueHeader(enc, &h) }},
		{"DecodeKeyValue", 1, func() { _ = DecodeKeyValue(enc, &out) }},
	} {
		if got := testing.AllocsPerRun(100, tc.f); got != tc.want {
			t.Errorf("%s: %v allocations, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAppendGrowsGeometrically: appending record after record to one buffer
// (a batch, a snapshot chunk) reallocates it a logarithmic number of times,
// not once per record.
func TestAppendGrowsGeometrically(t *testing.T) {
	kv := KeyValue{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100), ModRevision: 3}
	const records = 1000
	got := testing.AllocsPerRun(10, func() {
		var buf []byte
		for range records {
			buf = AppendKeyValue(buf, &kv)
		}
	})
	// Doubling from 106 bytes to 106 kB takes 10 steps.
	if got > 12 {
		t.Fatalf("%d appends to one buffer made %v allocations, want at most 12", records, got)
	}
}

// TestKeyValueDecodeRules covers protobuf's decoding rules: unknown fields of
// every wire type are skipped, a repeated scalar field takes its last
// value, varints may be non-minimal.
func TestKeyValueDecodeRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want KeyValue
	}{
		{"unknown varint", "0a016b" + "3801" + "1005", KeyValue{Key: []byte("k"), CreateRevision: 5}},
		{"unknown fixed64", "39" + "0102030405060708" + "1805", KeyValue{ModRevision: 5}},
		{"unknown fixed32", "3d" + "01020304" + "2005", KeyValue{Version: 5}},
		{"unknown bytes", "42" + "03616263" + "2a0176", KeyValue{Value: []byte("v")}},
		{"unknown group", "4b" + "0801" + "5b" + "0a00" + "5c" + "4c" + "3007", KeyValue{Lease: 7}},
		{"big field number", "f8ffffff0f" + "01" + "1001", KeyValue{CreateRevision: 1}},
		{"group field numbers beyond 2^29 inside a group", "4b" + "f8ffffff3f01" + "4c", KeyValue{}},
		{"last value wins", "0a0161" + "1001" + "0a0162" + "1002", KeyValue{Key: []byte("b"), CreateRevision: 2}},
		{"non-minimal varint", "108100" + "0a810061", KeyValue{Key: []byte("a"), CreateRevision: 1}},
		{"non-minimal tag", "8a00" + "0161", KeyValue{Key: []byte("a")}},
		{"10-byte varint", "10ffffffffffffffffff01", KeyValue{CreateRevision: -1}},
		{"empty key present", "0a00", KeyValue{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kv KeyValue
			if err := DecodeKeyValue(mustHex(t, tc.hex), &kv); err != nil {
				t.Fatal(err)
			}
			if !kvEqual(&kv, &tc.want) {
				t.Fatalf("got %+v, want %+v", kv, tc.want)
			}
		})
	}
}

var kvErrorCases = []struct {
	name  string
	hex   string
	kind  error
	field int
	off   int
}{
	{"truncated tag", "80", ErrTruncated, 0, 0},
	{"truncated varint", "0a016b" + "10ff", ErrTruncated, 2, 4},
	{"truncated length", "0a", ErrTruncated, 1, 1},
	{"length beyond the input", "0a05616263", ErrTruncated, 1, 1},
	{"huge length", "0affffffffffffffffff01", ErrTruncated, 1, 1},
	{"truncated fixed64", "3901020304050607", ErrTruncated, 7, 1},
	{"truncated fixed32", "3d010203", ErrTruncated, 7, 1},
	{"group without end", "4b0801", ErrTruncated, 9, 3},
	{"varint overflow", "10ffffffffffffffffff02", ErrOverflow, 2, 1},
	{"varint of 11 bytes", "10ffffffffffffffffff8001", ErrOverflow, 2, 1},
	{"tag overflow", "ffffffffffffffffff02", ErrOverflow, 0, 0},
	{"key as varint", "0801", ErrWireType, 1, 1},
	{"create_revision as bytes", "1200", ErrWireType, 2, 1},
	{"lease as fixed64", "310000000000000000", ErrWireType, 6, 1},
	{"value as group", "2b2c", ErrWireType, 5, 1},
	{"field number 0", "0001", ErrInvalid, 0, 0},
	{"field number 2^29", "8080808010", ErrInvalid, 0, 0},
	{"end group at top level", "3c", ErrInvalid, 7, 1},
	{"mismatched end group", "4b54", ErrInvalid, 9, 1},
	{"reserved wire type 6", "3e", ErrInvalid, 7, 1},
	{"reserved wire type 7", "3f", ErrInvalid, 7, 1},
	{"field number 0 inside a group", "4b0001", ErrInvalid, 9, 1},
}

func TestKeyValueDecodeErrors(t *testing.T) {
	for _, tc := range kvErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			in := mustHex(t, tc.hex)
			kv := KeyValue{Key: []byte("stale"), Lease: 9}
			err := DecodeKeyValue(in, &kv)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Type != "KeyValue" || de.Field != tc.field || de.Offset != tc.off {
				t.Fatalf("err = %+v, want field %d at offset %d", err, tc.field, tc.off)
			}
			if !strings.HasPrefix(err.Error(), "schema: decode KeyValue") {
				t.Fatalf("message %q", err)
			}
			if !reflect.DeepEqual(kv, KeyValue{}) {
				t.Fatalf("kv not zeroed on error: %+v", kv)
			}
			// The other decoders of the record agree.
			var h KeyValueHeader
			if err2 := DecodeKeyValueHeader(in, &h); err2 == nil || err2.Error() != err.Error() || !reflect.DeepEqual(h, KeyValueHeader{}) {
				t.Fatalf("DecodeKeyValueHeader: %v, %+v; DecodeKeyValue: %v", err2, h, err)
			}
			if err2 := DecodeKeyValueNoCopy(in, &kv); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("DecodeKeyValueNoCopy: %v; DecodeKeyValue: %v", err2, err)
			}
		})
	}
}

func TestGroupNestingLimit(t *testing.T) {
	// protowire.ConsumeFieldValue accepts recursionLimit+1 nested groups
	// and refuses one more.
	nest := func(n int) []byte {
		b := bytes.Repeat([]byte{0x4b}, n) // field 9, start group
		return append(b, bytes.Repeat([]byte{0x4c}, n)...)
	}
	var kv KeyValue
	if err := DecodeKeyValue(nest(recursionLimit+1), &kv); err != nil {
		t.Fatalf("%d nested groups: %v", recursionLimit+1, err)
	}
	if err := DecodeKeyValue(nest(recursionLimit+2), &kv); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%d nested groups: %v, want ErrInvalid", recursionLimit+2, err)
	}
}

func TestLeaseKnownBytes(t *testing.T) {
	for _, tc := range []struct {
		l   Lease
		hex string
	}{
		{Lease{}, ""},
		{Lease{ID: 0x694d7e1b2c3a4f01, TTL: 60, RemainingTTL: 17}, "08819ee9e1b2c3dfa669103c1811"},
		{Lease{ID: -1, TTL: 5}, "08ffffffffffffffffff011005"},
	} {
		want := mustHex(t, tc.hex)
		if got := AppendLease(nil, &tc.l); !bytes.Equal(got, want) || SizeLease(&tc.l) != len(want) {
			t.Errorf("AppendLease(%+v) = %x (size %d), want %x", tc.l, got, SizeLease(&tc.l), want)
		}
		var l Lease
		if err := DecodeLease(want, &l); err != nil || l != tc.l {
			t.Errorf("DecodeLease(%x) = %+v, %v", want, l, err)
		}
		key := AppendLeaseKey(nil, tc.l.ID)
		if id, err := ParseLeaseKey(key); err != nil || id != tc.l.ID || len(key) != LeaseKeyLen {
			t.Errorf("lease key of %d: %x -> %d, %v", tc.l.ID, key, id, err)
		}
	}
	if got := AppendLeaseKey(nil, 0x0102030405060708); !bytes.Equal(got, mustHex(t, "0102030405060708")) {
		t.Errorf("AppendLeaseKey = %x", got)
	}
	for _, bad := range []string{"", "01", "010203040506070809"} {
		if _, err := ParseLeaseKey(mustHex(t, bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseLeaseKey(%s): %v", bad, err)
		}
	}
	l := Lease{ID: 3}
	for _, bad := range []string{"08", "0a00", "08ffffffffffffffffff7f"} {
		if err := DecodeLease(mustHex(t, bad), &l); err == nil || l != (Lease{}) {
			t.Errorf("DecodeLease(%s) = %+v, %v", bad, l, err)
		}
	}
}

func TestAlarmMemberKnownBytes(t *testing.T) {
	for _, tc := range []struct {
		a   AlarmMember
		hex string
	}{
		{AlarmMember{}, ""},
		{AlarmMember{MemberID: 0x8e9e05c52164694d, Alarm: AlarmNoSpace}, "08cdd2918bd2b881cf8e011001"},
		{AlarmMember{MemberID: 1, Alarm: AlarmCorrupt}, "08011002"},
		{AlarmMember{Alarm: -1}, "10ffffffffffffffffff01"},
	} {
		want := mustHex(t, tc.hex)
		if got := AppendAlarmMember(nil, tc.a); !bytes.Equal(got, want) || SizeAlarmMember(tc.a) != len(want) {
			t.Errorf("AppendAlarmMember(%+v) = %x, want %x", tc.a, got, want)
		}
		if a, err := DecodeAlarmMember(want); err != nil || a != tc.a {
			t.Errorf("DecodeAlarmMember(%x) = %+v, %v", want, a, err)
		}
	}
	// An enum is truncated to 32 bits, as protobuf-go does.
	if a, err := DecodeAlarmMember(mustHex(t, "108180808010")); err != nil || a.Alarm != 1 {
		t.Errorf("alarm 2^32+1 decodes as %+v, %v; want alarm 1", a, err)
	}
	if _, err := DecodeAlarmMember(mustHex(t, "0a00")); !errors.Is(err, ErrWireType) {
		t.Errorf("memberID as bytes: %v", err)
	}
	for _, tc := range []struct {
		t    AlarmType
		want string
	}{{AlarmNone, "NONE"}, {AlarmNoSpace, "NOSPACE"}, {AlarmCorrupt, "CORRUPT"}, {7, "7"}} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("AlarmType(%d).String() = %q", tc.t, got)
		}
	}
}

var userCases = []struct {
	name string
	u    User
	hex  string
}{
	{"root", User{Name: []byte("root"), Password: []byte("$2a$10$x"), Roles: []string{"root", ""}, Options: &UserOptions{}},
		"0a04726f6f74120824326124313024781a04726f6f741a002200"},
	{"no password", User{Name: []byte("svc"), Options: &UserOptions{NoPassword: true}}, "0a0373766322020801"},
	{"no options", User{Name: []byte("u"), Roles: []string{"r"}}, "0a01751a0172"},
	{"empty", User{}, ""},
}

func TestUserKnownBytes(t *testing.T) {
	for _, tc := range userCases {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			got, err := AppendUser(nil, &tc.u)
			if err != nil || !bytes.Equal(got, want) || SizeUser(&tc.u) != len(want) {
				t.Fatalf("AppendUser = %x, %v (size %d), want %x", got, err, SizeUser(&tc.u), want)
			}
			var u User
			if err := DecodeUser(want, &u); err != nil {
				t.Fatal(err)
			}
			if !userEqual(&u, &tc.u) {
				t.Fatalf("DecodeUser = %+v, want %+v", u, tc.u)
			}
		})
	}
}

func userEqual(a, b *User) bool {
	return bytes.Equal(a.Name, b.Name) && bytes.Equal(a.Password, b.Password) &&
		len(a.Roles) == len(b.Roles) && (len(a.Roles) == 0 || reflect.DeepEqual(a.Roles, b.Roles)) &&
		reflect.DeepEqual(a.Options, b.Options)
}

func TestUserDecodeRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want User
	}{
		// A message field given twice is merged: the second options leave
		// no_password as the first set it.
		{"options merged", "22020801" + "2200", User{Options: &UserOptions{NoPassword: true}}},
		{"options overridden", "22020801" + "22020800", User{Options: &UserOptions{NoPassword: false}}},
		{"bool from a big varint", "2206088080808010", User{Options: &UserOptions{NoPassword: true}}},
		{"unknown field in options", "220418010801", User{Options: &UserOptions{NoPassword: true}}},
		{"roles accumulate", "1a01611a0162", User{Roles: []string{"a", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u User
			if err := DecodeUser(mustHex(t, tc.hex), &u); err != nil {
				t.Fatal(err)
			}
			if !userEqual(&u, &tc.want) {
				t.Fatalf("got %+v (options %+v), want %+v", u, u.Options, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		hex   string
		kind  error
		typ   string
		field int
		off   int
	}{
		{"role not UTF-8", "0a0175" + "1a02c328", ErrInvalid, "User", 3, 4},
		{"options truncated inside", "2202" + "08ff", ErrTruncated, "User.UserAddOptions", 1, 3},
		{"options field as bytes", "2202" + "0a00", ErrWireType, "User.UserAddOptions", 1, 3},
		{"options as varint", "2001", ErrWireType, "User", 4, 1},
		{"name as fixed32", "0d00000000", ErrWireType, "User", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := User{Name: []byte("stale")}
			err := DecodeUser(mustHex(t, tc.hex), &u)
			var de *DecodeError
			if !errors.Is(err, tc.kind) || !errors.As(err, &de) || de.Type != tc.typ || de.Field != tc.field || de.Offset != tc.off {
				t.Fatalf("err = %+v, want %v in %s field %d at offset %d", err, tc.kind, tc.typ, tc.field, tc.off)
			}
			if !reflect.DeepEqual(u, User{}) {
				t.Fatalf("u not zeroed on error: %+v", u)
			}
		})
	}
	bad := User{Name: []byte("n"), Roles: []string{"ok", "\xff"}}
	if out, err := AppendUser([]byte("pre"), &bad); err == nil || string(out) != "pre" {
		t.Fatalf("AppendUser with a non-UTF-8 role = %q, %v; want an error and dst unchanged", out, err)
	}
}

var roleCases = []struct {
	name string
	r    Role
	hex  string
}{
	{"three permissions", Role{Name: []byte("r"), KeyPermission: []Permission{
		{PermType: PermReadWrite, Key: []byte("a"), RangeEnd: []byte("b")},
		{},
		{PermType: PermWrite, Key: []byte("k")},
	}}, "0a0172120808021201611a016212001205080112016b"},
	{"empty", Role{}, ""},
	{"negative type", Role{KeyPermission: []Permission{{PermType: -1}}}, "120b08ffffffffffffffffff01"},
}

func TestRoleKnownBytes(t *testing.T) {
	for _, tc := range roleCases {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			if got := AppendRole(nil, &tc.r); !bytes.Equal(got, want) || SizeRole(&tc.r) != len(want) {
				t.Fatalf("AppendRole = %x (size %d), want %x", got, SizeRole(&tc.r), want)
			}
			var r Role
			if err := DecodeRole(want, &r); err != nil {
				t.Fatal(err)
			}
			if !roleEqual(&r, &tc.r) {
				t.Fatalf("DecodeRole = %+v, want %+v", r, tc.r)
			}
		})
	}
	var r Role
	err := DecodeRole(mustHex(t, "0a0172"+"1204"+"1a05"+"6162"), &r)
	var de *DecodeError
	if !errors.Is(err, ErrTruncated) || !errors.As(err, &de) || de.Type != "Role.Permission" || de.Field != 3 || de.Offset != 6 {
		t.Fatalf("truncated range_end: %+v", err)
	}
	if err := DecodeRole(mustHex(t, "1203"+"0a0100"), &r); !errors.Is(err, ErrWireType) {
		t.Fatalf("permType as bytes: %v", err)
	}
	for _, tc := range []struct {
		t    PermType
		want string
	}{{PermRead, "READ"}, {PermWrite, "WRITE"}, {PermReadWrite, "READWRITE"}, {-3, "-3"}} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("PermType(%d).String() = %q", tc.t, got)
		}
	}
}

func roleEqual(a, b *Role) bool {
	if !bytes.Equal(a.Name, b.Name) || len(a.KeyPermission) != len(b.KeyPermission) {
		return false
	}
	for i := range a.KeyPermission {
		p, q := a.KeyPermission[i], b.KeyPermission[i]
		if p.PermType != q.PermType || !bytes.Equal(p.Key, q.Key) || !bytes.Equal(p.RangeEnd, q.RangeEnd) {
			return false
		}
	}
	return true
}

func TestVarintSizes(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 1<<14 - 1, 1 << 14, 1<<63 - 1, 1 << 63, math.MaxUint64} {
		b := appendVarint(nil, v)
		if len(b) != sizeVarint(v) {
			t.Errorf("sizeVarint(%d) = %d, encoding is %d bytes", v, sizeVarint(v), len(b))
		}
		got, n, err := varint(b, 0)
		if err != nil || got != v || n != len(b) {
			t.Errorf("varint(%x) = %d, %d, %v", b, got, n, err)
		}
	}
}
