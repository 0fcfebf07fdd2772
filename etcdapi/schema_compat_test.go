package etcdapi_test

// internal/schema writes and reads etcd 3.7's bbolt values by hand, so that
// the root module stays free of protobuf. This file checks it against the
// code etcd itself runs: the generated types of go.etcd.io/etcd/api/v3
// (mvccpb.KeyValue, authpb.User and Role, etcdserverpb.AlarmMember),
// marshalled and unmarshalled by protobuf-go, and go-semver for the version
// strings. The tests marshal random values both ways and compare the bytes
// (protobuf-go writes the fields of these messages in field-number order, so
// one value has exactly one encoding); the fuzz targets feed arbitrary bytes
// to both decoders and require them to agree.
//
// leasepb.Lease lives in etcd's server module, which this module must not
// require. Its bytes are pinned by internal/schema's TestLeaseKnownBytes;
// here it is checked against protobuf-go's encoding of the same schema,
// built from a descriptor transcribed from server/lease/leasepb/lease.proto.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-semver/semver"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/accordkv/accord/internal/schema"
)

// compatRounds is how many random values each round-trip test checks.
const compatRounds = 3000

// gen makes the random values. Its seed is fixed so that a failure
// reproduces; the values lean on the edges of the encoding: zero (left
// out), one-byte and ten-byte varints, empty and multi-byte-length fields.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) gen { return gen{rand.New(rand.NewPCG(seed, 0x5eed))} }

func (g gen) int64() int64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return g.r.Int64N(128)
	case 2:
		return g.r.Int64()
	case 3:
		return -g.r.Int64() - 1
	case 4:
		return []int64{1, 127, 128, 1<<14 - 1, 1 << 14, math.MaxInt64, math.MinInt64, -1}[g.r.IntN(8)]
	default:
		return g.r.Int64N(1 << 35)
	}
}

func (g gen) bytes() []byte {
	switch g.r.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		return g.fill(1 + g.r.IntN(16))
	case 3:
		return g.fill(100 + g.r.IntN(300))
	default:
		return g.fill(g.r.IntN(20000))
	}
}

func (g gen) fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// str returns a valid UTF-8 string, sometimes empty, sometimes with
// multi-byte runes.
func (g gen) str() string {
	runes := []rune{'a', 'z', '0', '/', '-', 'é', '€', '😀', 0, '\u2028'}
	var b []rune
	for range g.r.IntN(12) {
		b = append(b, runes[g.r.IntN(len(runes))])
	}
	return string(b)
}

// equalEncodings requires schema's encoding and protobuf-go's to be the
// same bytes.
func equalEncodings(t *testing.T, what string, v any, ours []byte, theirs proto.Message) []byte {
	t.Helper()
	want, err := proto.Marshal(theirs)
	if err != nil {
		t.Fatalf("%s %+v: proto.Marshal: %v", what, v, err)
	}
	if !bytes.Equal(ours, want) {
		t.Fatalf("%s %+v:\nschema   %x\nprotobuf %x", what, v, ours, want)
	}
	return want
}

// agree checks the outcome of decoding b with schema (errOurs) against
// protobuf-go (errTheirs) and reports whether both accepted it. schema
// refuses what protobuf-go refuses, and accepts what it accepts except in
// the one case schema documents: a known field with another wire type,
// which protobuf-go keeps as an unknown field and schema takes for damage
// (ErrWireType). Every refusal of schema is a *DecodeError.
func agree(t *testing.T, what string, b []byte, errOurs, errTheirs error) bool {
	t.Helper()
	if errOurs != nil {
		var de *schema.DecodeError
		if !errors.As(errOurs, &de) {
			t.Fatalf("%s %x: schema's error %v (%T) is not a *DecodeError", what, b, errOurs, errOurs)
		}
	}
	switch {
	case errOurs == nil && errTheirs != nil:
		t.Fatalf("%s %x: schema accepts what protobuf-go refuses (%v)", what, b, errTheirs)
	case errOurs != nil && errTheirs == nil && !errors.Is(errOurs, schema.ErrWireType):
		t.Fatalf("%s %x: schema refuses (%v) what protobuf-go accepts", what, b, errOurs)
	}
	return errOurs == nil && errTheirs == nil
}

func kvToPB(kv *schema.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision,
		Version: kv.Version, Value: kv.Value, Lease: kv.Lease}
}

func kvMatches(kv *schema.KeyValue, m *mvccpb.KeyValue) bool {
	return bytes.Equal(kv.Key, m.Key) && kv.CreateRevision == m.CreateRevision && kv.ModRevision == m.ModRevision &&
		kv.Version == m.Version && bytes.Equal(kv.Value, m.Value) && kv.Lease == m.Lease
}

func TestSchemaKeyValueMatchesMvccpb(t *testing.T) {
	g := newGen(1)
	for range compatRounds {
		kv := schema.KeyValue{Key: g.bytes(), CreateRevision: g.int64(), ModRevision: g.int64(),
			Version: g.int64(), Value: g.bytes(), Lease: g.int64()}
		m := kvToPB(&kv)
		enc := equalEncodings(t, "KeyValue", kv, schema.AppendKeyValue(nil, &kv), m)
		if n := schema.SizeKeyValue(&kv); n != proto.Size(m) {
			t.Fatalf("SizeKeyValue = %d, proto.Size = %d", n, proto.Size(m))
		}
		var got schema.KeyValue
		if err := schema.DecodeKeyValue(enc, &got); err != nil || !kvMatches(&got, m) {
			t.Fatalf("DecodeKeyValue(%x) = %+v, %v; want %+v", enc, got, err, kv)
		}
		var h schema.KeyValueHeader
		if err := schema.DecodeKeyValueHeader(enc, &h); err != nil || !bytes.Equal(h.Key, m.Key) ||
			h.CreateRevision != m.CreateRevision || h.ModRevision != m.ModRevision || h.Version != m.Version || h.Lease != m.Lease {
			t.Fatalf("DecodeKeyValueHeader(%x) = %+v, %v; want the fields of %+v", enc, h, err, kv)
		}
		var back mvccpb.KeyValue
		if err := proto.Unmarshal(schema.AppendKeyValue(nil, &kv), &back); err != nil || !kvMatches(&kv, &back) {
			t.Fatalf("proto.Unmarshal of schema's encoding = %v, %v; want %+v", &back, err, kv)
		}
	}
}

// TestSchemaKeyValueExtraFields decodes a record with fields etcd does not
// know, as a newer writer may add them (a checksum in field 15, say): both
// decoders skip them and read the rest alike, and protobuf-go keeps them as
// unknown bytes, so etcd would send them on to its clients inside every
// KeyValue it serves.
func TestSchemaKeyValueExtraFields(t *testing.T) {
	kv := schema.KeyValue{Key: []byte("foo"), CreateRevision: 2, ModRevision: 5, Version: 3, Value: []byte("bar"), Lease: 7}
	base := schema.AppendKeyValue(nil, &kv)
	// Field 15, wire type 5 (fixed32): tag 0x7d and 4 bytes.
	extra := append(bytes.Clone(base), 0x7d, 1, 2, 3, 4)
	var got schema.KeyValue
	if err := schema.DecodeKeyValue(extra, &got); err != nil || !kvMatches(&got, kvToPB(&kv)) {
		t.Fatalf("DecodeKeyValue = %+v, %v", got, err)
	}
	var m mvccpb.KeyValue
	if err := proto.Unmarshal(extra, &m); err != nil || !kvMatches(&kv, &m) {
		t.Fatalf("proto.Unmarshal = %v, %v", &m, err)
	}
	if u := m.ProtoReflect().GetUnknown(); !bytes.Equal(u, []byte{0x7d, 1, 2, 3, 4}) {
		t.Fatalf("protobuf-go kept unknown bytes %x, want 7d01020304", u)
	}
	if out, err := proto.Marshal(&m); err != nil || !bytes.Equal(out, extra) {
		t.Fatalf("proto.Marshal after Unmarshal = %x, %v; want the input %x back", out, err, extra)
	}
}

func FuzzSchemaKeyValueCompat(f *testing.F) {
	g := newGen(2)
	for range 8 {
		kv := schema.KeyValue{Key: g.fill(g.r.IntN(20)), CreateRevision: g.int64(), ModRevision: g.int64(),
			Version: g.int64(), Value: g.fill(g.r.IntN(200)), Lease: g.int64()}
		f.Add(schema.AppendKeyValue(nil, &kv))
	}
	for _, h := range []string{
		"0a03666f6f7d01020304",          // field 15 fixed32 after a key
		"0a016b" + "4b" + "0801" + "4c", // a group
		"0801",                          // key as a varint
		"10ffffffffffffffffff01",        // ten-byte varint
		"10ffffffffffffffffff02",        // overflow
		"f8ffffff0f01",                  // field 2^29-1
		"8080808010",                    // field 2^29
		"0a05616263",                    // length beyond the end
		"4b" + "f8ffffff3f01" + "4c",    // field numbers beyond 2^29 in a group
		"3c",                            // end group without start
		"4b54",                          // mismatched end group
		"4b" + "0001" + "4c",            // field number 0 inside a complete group
		"0a0161" + "0a0162" + "108100",  // repeated key, non-minimal varint
	} {
		b, err := hexBytes(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSchemaCorpus(f, "FuzzKeyValue", func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var ours schema.KeyValue
		errOurs := schema.DecodeKeyValue(b, &ours)
		var theirs mvccpb.KeyValue
		errTheirs := proto.Unmarshal(b, &theirs)
		if agree(t, "KeyValue", b, errOurs, errTheirs) && !kvMatches(&ours, &theirs) {
			t.Fatalf("KeyValue %x: schema %+v, protobuf-go %v", b, ours, &theirs)
		}
	})
}

// leaseDescriptor is leasepb.Lease, transcribed from
// server/lease/leasepb/lease.proto of etcd 3.7.3.
var leaseDescriptor = sync.OnceValues(func() (protoreflect.MessageDescriptor, error) {
	field := func(name string, num int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(num),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:  descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(),
		}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("accord_compat/lease.proto"), Package: proto.String("accordcompat.leasepb"),
		Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:  proto.String("Lease"),
			Field: []*descriptorpb.FieldDescriptorProto{field("ID", 1), field("TTL", 2), field("RemainingTTL", 3)},
		}},
	}, nil)
	if err != nil {
		return nil, err
	}
	return fd.Messages().Get(0), nil
})

func leaseMsg(t testing.TB) (*dynamicpb.Message, [3]protoreflect.FieldDescriptor) {
	t.Helper()
	md, err := leaseDescriptor()
	if err != nil {
		t.Fatal(err)
	}
	fs := md.Fields()
	return dynamicpb.NewMessage(md), [3]protoreflect.FieldDescriptor{fs.ByNumber(1), fs.ByNumber(2), fs.ByNumber(3)}
}

func leaseOf(m *dynamicpb.Message, fs [3]protoreflect.FieldDescriptor) schema.Lease {
	return schema.Lease{ID: m.Get(fs[0]).Int(), TTL: m.Get(fs[1]).Int(), RemainingTTL: m.Get(fs[2]).Int()}
}

func TestSchemaLeaseMatchesLeasepbSchema(t *testing.T) {
	g := newGen(3)
	// A dynamic message has no generated field order: Deterministic makes
	// protobuf-go write its fields by number, as it does for leasepb.Lease.
	det := proto.MarshalOptions{Deterministic: true}
	for range compatRounds {
		l := schema.Lease{ID: g.int64(), TTL: g.int64(), RemainingTTL: g.int64()}
		m, fs := leaseMsg(t)
		for i, v := range []int64{l.ID, l.TTL, l.RemainingTTL} {
			if v != 0 {
				m.Set(fs[i], protoreflect.ValueOfInt64(v))
			}
		}
		want, err := det.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		ours := schema.AppendLease(nil, &l)
		if !bytes.Equal(ours, want) || schema.SizeLease(&l) != len(want) {
			t.Fatalf("Lease %+v:\nschema   %x (size %d)\nprotobuf %x", l, ours, schema.SizeLease(&l), want)
		}
		var got schema.Lease
		if err := schema.DecodeLease(want, &got); err != nil || got != l {
			t.Fatalf("DecodeLease(%x) = %+v, %v; want %+v", want, got, err, l)
		}
		back, _ := leaseMsg(t)
		if err := proto.Unmarshal(ours, back); err != nil || leaseOf(back, fs) != l {
			t.Fatalf("proto.Unmarshal of schema's encoding = %v, %v; want %+v", back, err, l)
		}
	}
}

func FuzzSchemaLeaseCompat(f *testing.F) {
	for _, h := range []string{
		"08819ee9e1b2c3dfa669103c1811", "08ffffffffffffffffff011005", "1001" + "4200" + "1802", "08",
		"080110051800" + "70e807" + "7d01020304", // fields 14 (varint) and 15 (fixed32) after etcd's
		"0a00",                                   // ID as bytes
	} {
		b, err := hexBytes(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSchemaCorpus(f, "FuzzLease", func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var ours schema.Lease
		errOurs := schema.DecodeLease(b, &ours)
		theirs, fs := leaseMsg(t)
		errTheirs := proto.Unmarshal(b, theirs)
		// Field 14 is accord's extension (TTLMillis): etcd's message has
		// no such field and keeps it as an unknown one.
		cmp := ours
		cmp.TTLMillis = 0
		if agree(t, "Lease", b, errOurs, errTheirs) && cmp != leaseOf(theirs, fs) {
			t.Fatalf("Lease %x: schema %+v, protobuf-go %v", b, ours, theirs)
		}
	})
}

func TestSchemaAlarmMemberMatchesEtcdserverpb(t *testing.T) {
	g := newGen(4)
	for range compatRounds {
		a := schema.AlarmMember{MemberID: uint64(g.int64()), Alarm: schema.AlarmType(int32(g.int64()))}
		if g.r.IntN(2) == 0 {
			a.Alarm = schema.AlarmType(g.r.IntN(3))
		}
		m := &pb.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType(a.Alarm)}
		enc := equalEncodings(t, "AlarmMember", a, schema.AppendAlarmMember(nil, a), m)
		if schema.SizeAlarmMember(a) != len(enc) {
			t.Fatalf("SizeAlarmMember(%+v) = %d, want %d", a, schema.SizeAlarmMember(a), len(enc))
		}
		if got, err := schema.DecodeAlarmMember(enc); err != nil || got != a {
			t.Fatalf("DecodeAlarmMember(%x) = %+v, %v; want %+v", enc, got, err, a)
		}
		if a.Alarm >= 0 && a.Alarm <= 2 && a.Alarm.String() != m.Alarm.String() {
			t.Fatalf("AlarmType(%d).String() = %q, etcd says %q", a.Alarm, a.Alarm, m.Alarm)
		}
	}
}

func FuzzSchemaAlarmMemberCompat(f *testing.F) {
	for _, h := range []string{"08cdd2918bd2b881cf8e011001", "08011002", "10ffffffffffffffffff01", "108180808010", "0a00"} {
		b, err := hexBytes(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSchemaCorpus(f, "FuzzAlarmMember", func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		ours, errOurs := schema.DecodeAlarmMember(b)
		var theirs pb.AlarmMember
		errTheirs := proto.Unmarshal(b, &theirs)
		if agree(t, "AlarmMember", b, errOurs, errTheirs) &&
			(ours.MemberID != theirs.MemberID || int32(ours.Alarm) != int32(theirs.Alarm)) {
			t.Fatalf("AlarmMember %x: schema %+v, protobuf-go %v", b, ours, &theirs)
		}
	})
}

func (g gen) user() schema.User {
	u := schema.User{Name: g.bytes(), Password: g.bytes()}
	for range g.r.IntN(4) {
		u.Roles = append(u.Roles, g.str())
	}
	if g.r.IntN(3) > 0 {
		u.Options = &schema.UserOptions{NoPassword: g.r.IntN(2) == 0}
	}
	return u
}

func userToPB(u *schema.User) *authpb.User {
	m := &authpb.User{Name: u.Name, Password: u.Password, Roles: u.Roles}
	if u.Options != nil {
		m.Options = &authpb.UserAddOptions{NoPassword: u.Options.NoPassword}
	}
	return m
}

func userMatches(u *schema.User, m *authpb.User) bool {
	if !bytes.Equal(u.Name, m.Name) || !bytes.Equal(u.Password, m.Password) || len(u.Roles) != len(m.Roles) {
		return false
	}
	for i := range u.Roles {
		if u.Roles[i] != m.Roles[i] {
			return false
		}
	}
	if (u.Options == nil) != (m.Options == nil) {
		return false
	}
	return u.Options == nil || u.Options.NoPassword == m.Options.NoPassword
}

func TestSchemaUserMatchesAuthpb(t *testing.T) {
	g := newGen(5)
	for range compatRounds {
		u := g.user()
		ours, err := schema.AppendUser(nil, &u)
		if err != nil {
			t.Fatalf("AppendUser(%+v): %v", u, err)
		}
		m := userToPB(&u)
		enc := equalEncodings(t, "User", u, ours, m)
		if schema.SizeUser(&u) != len(enc) {
			t.Fatalf("SizeUser = %d, want %d", schema.SizeUser(&u), len(enc))
		}
		var got schema.User
		if err := schema.DecodeUser(enc, &got); err != nil || !userMatches(&got, m) {
			t.Fatalf("DecodeUser(%x) = %+v, %v; want %+v", enc, got, err, u)
		}
		var back authpb.User
		if err := proto.Unmarshal(ours, &back); err != nil || !userMatches(&u, &back) {
			t.Fatalf("proto.Unmarshal of schema's encoding = %v, %v; want %+v", &back, err, u)
		}
	}
	// A role that is not UTF-8: both refuse to write it.
	bad := schema.User{Name: []byte("u"), Roles: []string{"ok", "\xc3("}}
	if _, err := schema.AppendUser(nil, &bad); err == nil {
		t.Fatal("AppendUser accepts a role that is not UTF-8")
	}
	if _, err := proto.Marshal(userToPB(&bad)); err == nil {
		t.Fatal("proto.Marshal accepts a role that is not UTF-8: schema's refusal no longer matches etcd")
	}
}

func FuzzSchemaUserCompat(f *testing.F) {
	for _, h := range []string{
		"0a04726f6f74120824326124313024781a04726f6f741a002200", "0a0373766322020801", "0a01751a0172",
		"22020801" + "2200", "22020801" + "22020800", "220418010801", "1a02c328", "2202" + "0a00", "2001",
	} {
		b, err := hexBytes(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSchemaCorpus(f, "FuzzUser", func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var ours schema.User
		errOurs := schema.DecodeUser(b, &ours)
		var theirs authpb.User
		errTheirs := proto.Unmarshal(b, &theirs)
		if agree(t, "User", b, errOurs, errTheirs) && !userMatches(&ours, &theirs) {
			t.Fatalf("User %x: schema %+v (options %+v), protobuf-go %v", b, ours, ours.Options, &theirs)
		}
	})
}

func (g gen) role() schema.Role {
	r := schema.Role{Name: g.bytes()}
	for range g.r.IntN(5) {
		p := schema.Permission{PermType: schema.PermType(g.r.IntN(3)), Key: g.bytes(), RangeEnd: g.bytes()}
		if g.r.IntN(8) == 0 {
			p.PermType = schema.PermType(int32(g.int64()))
		}
		r.KeyPermission = append(r.KeyPermission, p)
	}
	return r
}

func roleToPB(r *schema.Role) *authpb.Role {
	m := &authpb.Role{Name: r.Name}
	for _, p := range r.KeyPermission {
		m.KeyPermission = append(m.KeyPermission, &authpb.Permission{PermType: authpb.Permission_Type(p.PermType), Key: p.Key, RangeEnd: p.RangeEnd})
	}
	return m
}

func roleMatches(r *schema.Role, m *authpb.Role) bool {
	if !bytes.Equal(r.Name, m.Name) || len(r.KeyPermission) != len(m.KeyPermission) {
		return false
	}
	for i, p := range r.KeyPermission {
		q := m.KeyPermission[i]
		if int32(p.PermType) != int32(q.PermType) || !bytes.Equal(p.Key, q.Key) || !bytes.Equal(p.RangeEnd, q.RangeEnd) {
			return false
		}
	}
	return true
}

func TestSchemaRoleMatchesAuthpb(t *testing.T) {
	g := newGen(6)
	for range compatRounds {
		r := g.role()
		m := roleToPB(&r)
		enc := equalEncodings(t, "Role", r, schema.AppendRole(nil, &r), m)
		if schema.SizeRole(&r) != len(enc) {
			t.Fatalf("SizeRole = %d, want %d", schema.SizeRole(&r), len(enc))
		}
		var got schema.Role
		if err := schema.DecodeRole(enc, &got); err != nil || !roleMatches(&got, m) {
			t.Fatalf("DecodeRole(%x) = %+v, %v; want %+v", enc, got, err, r)
		}
		var back authpb.Role
		if err := proto.Unmarshal(schema.AppendRole(nil, &r), &back); err != nil || !roleMatches(&r, &back) {
			t.Fatalf("proto.Unmarshal of schema's encoding = %v, %v; want %+v", &back, err, r)
		}
		for _, p := range r.KeyPermission {
			if p.PermType >= 0 && p.PermType <= 2 && p.PermType.String() != authpb.Permission_Type(p.PermType).String() {
				t.Fatalf("PermType(%d).String() = %q, etcd says %q", p.PermType, p.PermType, authpb.Permission_Type(p.PermType))
			}
		}
	}
}

func FuzzSchemaRoleCompat(f *testing.F) {
	for _, h := range []string{
		"0a0172120808021201611a016212001205080112016b", "120b08ffffffffffffffffff01",
		"0a0172" + "1204" + "1a056162", "1203" + "0a0100", "12021801",
	} {
		b, err := hexBytes(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSchemaCorpus(f, "FuzzRole", func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var ours schema.Role
		errOurs := schema.DecodeRole(b, &ours)
		var theirs authpb.Role
		errTheirs := proto.Unmarshal(b, &theirs)
		if agree(t, "Role", b, errOurs, errTheirs) && !roleMatches(&ours, &theirs) {
			t.Fatalf("Role %x: schema %+v, protobuf-go %v", b, ours, &theirs)
		}
	})
}

// FuzzSchemaVersionCompat holds schema.ParseVersion to go-semver, which etcd
// parses storageVersion, clusterVersion and downgrade targets with: the same
// strings parse, to the same fields, and print back the same.
func FuzzSchemaVersionCompat(f *testing.F) {
	for _, s := range []string{"3.7.0", "3.6.0", "3.5.21-rc.1+git.abc", "1.2", "1.2.3.4", "01.2.3", "1.2.-3", "1.2.3-", "1.2.3+",
		"1.2.3-a..b", "1.2.3-a_b", "v3.7.0", "", "99999999999999999999.0.0", "+1.2.3", "1.2.3-+"} {
		f.Add(s)
	}
	addSchemaCorpus(f, "FuzzVersion", func(b []byte) { f.Add(string(b)) })
	f.Fuzz(func(t *testing.T, s string) {
		ours, errOurs := schema.ParseVersion([]byte(s))
		theirs, errTheirs := semver.NewVersion(s)
		if (errOurs == nil) != (errTheirs == nil) {
			t.Fatalf("%q: schema %v, go-semver %v", s, errOurs, errTheirs)
		}
		if errOurs != nil {
			if !errors.Is(errOurs, schema.ErrInvalid) {
				t.Fatalf("%q: %v is not ErrInvalid", s, errOurs)
			}
			return
		}
		if ours.Major != theirs.Major || ours.Minor != theirs.Minor || ours.Patch != theirs.Patch ||
			ours.PreRelease != string(theirs.PreRelease) || ours.Metadata != theirs.Metadata {
			t.Fatalf("%q: schema %+v, go-semver %+v", s, ours, *theirs)
		}
		if ours.String() != theirs.String() {
			t.Fatalf("%q prints as %q, go-semver prints %q", s, ours.String(), theirs.String())
		}
	})
}

// TestSchemaStorageVersionMatchesSemver: the value schema writes under
// storageVersion is what etcd's UnsafeSetStorageVersion writes, the
// go-semver string of the major and minor version.
func TestSchemaStorageVersionMatchesSemver(t *testing.T) {
	for _, v := range [][2]int64{{3, 6}, {3, 7}, {4, 0}, {3, 10}} {
		want := (&semver.Version{Major: v[0], Minor: v[1]}).String()
		if got := string(schema.AppendStorageVersion(nil, v[0], v[1])); got != want {
			t.Errorf("AppendStorageVersion(%d, %d) = %q, go-semver %q", v[0], v[1], got, want)
		}
	}
}

// addSchemaCorpus seeds a target with the corpus of internal/schema's fuzz
// target of the same type: the known bytes of its table tests, one seed per
// error case, and whatever that fuzzer has found.
func addSchemaCorpus(f *testing.F, target string, add func([]byte)) {
	dir := filepath.Join("..", "internal", "schema", "testdata", "fuzz", target)
	files, err := os.ReadDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range files {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		arg, ok := strings.CutPrefix(lines[len(lines)-1], "[]byte(")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !ok || !strings.HasSuffix(arg, ")") {
			f.Fatalf("%s/%s: not a one-argument []byte corpus file", dir, e.Name())
		}
		b, err := strconv.Unquote(strings.TrimSuffix(arg, ")"))
		if err != nil {
			f.Fatalf("%s/%s: %v", dir, e.Name(), err)
		}
		add([]byte(b))
	}
	if len(files) == 0 {
		f.Fatalf("%s is empty", dir)
	}
}

func hexBytes(h string) ([]byte, error) { return hex.DecodeString(h) }

// The decode benchmarks put schema's KeyValue decoders beside
// proto.Unmarshal into mvccpb.KeyValue, which is what etcd's restore runs
// for every revision of the "key" bucket. The record is the issue-14
// workload's: a short key, a 256-byte value, revisions in the hundred
// thousands, a lease.
func benchKV() schema.KeyValue {
	return schema.KeyValue{
		Key: []byte("/registry/pods/default/web-7d4b9c8f6-x2x9q"), CreateRevision: 123456, ModRevision: 456789,
		Version: 4, Value: bytes.Repeat([]byte{'v'}, 256), Lease: 0x694d7e1b2c3a4f01,
	}
}

func BenchmarkKeyValueDecode(b *testing.B) {
	kv := benchKV()
	rec := schema.AppendKeyValue(nil, &kv)
	b.Run("schema.DecodeKeyValueNoCopy", func(b *testing.B) {
		var out schema.KeyValue
		b.ReportAllocs()
		for b.Loop() {
			if err := schema.DecodeKeyValueNoCopy(rec, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("schema.DecodeKeyValue", func(b *testing.B) {
		var out schema.KeyValue
		b.ReportAllocs()
		for b.Loop() {
			if err := schema.DecodeKeyValue(rec, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m mvccpb.KeyValue
			if err := proto.Unmarshal(rec, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkKeyValueEncode(b *testing.B) {
	kv := benchKV()
	b.Run("schema.AppendKeyValue", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			buf = schema.AppendKeyValue(buf[:0], &kv)
		}
	})
	m := kvToPB(&kv)
	b.Run("proto.MarshalAppend", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
