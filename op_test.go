package accord

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// Tests of building requests (op.go): compare operands, transaction
// builder misuse, range options. Helpers carry an "opt" prefix.

func optOpen(t *testing.T) (*Store, context.Context) {
	t.Helper()
	s := openTestStore(t, "", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return s, ctx
}

func TestCompareOperands(t *testing.T) {
	s, ctx := optOpen(t)
	if _, err := s.Put(ctx, "k", []byte("v")); err != nil { // k: version 1, mod 2
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cmp  func() Cmp // built inside the subtest: a panic fails only that case
		want error      // nil: valid
		wire wire.Compare
	}{
		{"version = int", func() Cmp { return Compare(Version("k"), "=", 1) }, nil,
			wire.Compare{Target: wire.CmpVersion, Result: wire.CmpEqual, Key: "k", Int: 1}},
		{"version != int64", func() Cmp { return Compare(Version("k"), "!=", int64(2)) }, nil,
			wire.Compare{Target: wire.CmpVersion, Result: wire.CmpNotEqual, Key: "k", Int: 2}},
		{"mod > int32", func() Cmp { return Compare(ModRevision("k"), ">", int32(1)) }, nil,
			wire.Compare{Target: wire.CmpMod, Result: wire.CmpGreater, Key: "k", Int: 1}},
		{"create < uint32", func() Cmp { return Compare(CreateRevision("k"), "<", uint32(5)) }, nil,
			wire.Compare{Target: wire.CmpCreate, Result: wire.CmpLess, Key: "k", Int: 5}},
		{"lease = LeaseID", func() Cmp { return Compare(LeaseValue("k"), "=", NoLease) }, nil,
			wire.Compare{Target: wire.CmpLease, Result: wire.CmpEqual, Key: "k", Int: 0}},
		{"lease = int", func() Cmp { return Compare(LeaseValue("k"), "=", 0) }, nil,
			wire.Compare{Target: wire.CmpLease, Result: wire.CmpEqual, Key: "k"}},
		{"value = string", func() Cmp { return Compare(Value("k"), "=", "v") }, nil,
			wire.Compare{Target: wire.CmpValue, Result: wire.CmpEqual, Key: "k", Value: []byte("v")}},
		{"value > []byte", func() Cmp { return Compare(Value("k"), ">", []byte("a")) }, nil,
			wire.Compare{Target: wire.CmpValue, Result: wire.CmpGreater, Key: "k", Value: []byte("a")}},
		{"value = nil []byte", func() Cmp { return Compare(Value("k"), "=", []byte(nil)) }, nil,
			wire.Compare{Target: wire.CmpValue, Result: wire.CmpEqual, Key: "k"}},
		{"version with prefix", func() Cmp { return Compare(Version("k"), ">", 0).WithPrefix() }, nil,
			wire.Compare{Target: wire.CmpVersion, Result: wire.CmpGreater, Key: "k", RangeEnd: "l"}},
		{"version with range", func() Cmp { return Compare(Version("a"), ">", 0).WithRange("z") }, nil,
			wire.Compare{Target: wire.CmpVersion, Result: wire.CmpGreater, Key: "a", RangeEnd: "z"}},
		{"empty-key prefix covers every key", func() Cmp { return Compare(Version(""), ">", 0).WithPrefix() }, nil,
			wire.Compare{Target: wire.CmpVersion, Result: wire.CmpGreater, Key: "\x00", RangeEnd: "\x00"}},

		{"unknown result ==", func() Cmp { return Compare(Version("k"), "==", 1) }, ErrInvalidArgument, wire.Compare{}},
		{"unknown result >=", func() Cmp { return Compare(Version("k"), ">=", 1) }, ErrInvalidArgument, wire.Compare{}},
		{"empty result", func() Cmp { return Compare(Value("k"), "", "v") }, ErrInvalidArgument, wire.Compare{}},
		{"value with an int", func() Cmp { return Compare(Value("k"), "=", 1) }, ErrInvalidArgument, wire.Compare{}},
		{"value with nil", func() Cmp { return Compare(Value("k"), "=", nil) }, ErrInvalidArgument, wire.Compare{}},
		{"value with a rune slice", func() Cmp { return Compare(Value("k"), "=", []rune("v")) }, ErrInvalidArgument, wire.Compare{}},
		{"version with a string", func() Cmp { return Compare(Version("k"), "=", "1") }, ErrInvalidArgument, wire.Compare{}},
		{"version with nil", func() Cmp { return Compare(Version("k"), "=", nil) }, ErrInvalidArgument, wire.Compare{}},
		{"version with a float", func() Cmp { return Compare(Version("k"), "=", 1.0) }, ErrInvalidArgument, wire.Compare{}},
		{"mod with uint64", func() Cmp { return Compare(ModRevision("k"), "=", uint64(1)) }, ErrInvalidArgument, wire.Compare{}},
		{"lease with a bool", func() Cmp { return Compare(LeaseValue("k"), "=", true) }, ErrInvalidArgument, wire.Compare{}},
		{"bad operand survives WithPrefix", func() Cmp { return Compare(Version("k"), "=", "x").WithPrefix() }, ErrInvalidArgument, wire.Compare{}},
		{"bad result and empty key", func() Cmp { return Compare(Version(""), "?", 1) }, ErrInvalidArgument, wire.Compare{}},
		{"empty key", func() Cmp { return Compare(Version(""), "=", 1) }, ErrEmptyKey, wire.Compare{}},
		{"zero Cmp", func() Cmp { return Cmp{} }, ErrEmptyKey, wire.Compare{}},
		{"Cmp without Compare", func() Cmp { return Value("k") }, nil,
			wire.Compare{Target: wire.CmpValue, Result: wire.CmpEqual, Key: "k"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmp()
			got, err := c.toWire()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("toWire: %v", err)
				}
				if !bytes.Equal(got.Value, tc.wire.Value) || !reflect.DeepEqual(optNoValue(got), optNoValue(tc.wire)) {
					t.Errorf("toWire = %+v, want %+v", got, tc.wire)
				}
			} else if !errors.Is(err, tc.want) {
				t.Errorf("toWire err = %v, want %v", err, tc.want)
			}
			// The same error (or success) at Commit, in If and nested.
			for _, txn := range []*Txn{
				s.Txn(ctx).If(c).Then(OpGet("k")),
				s.Txn(ctx).Then(OpTxn([]Cmp{c}, []Op{OpGet("k")}, nil)),
			} {
				_, err := txn.Commit()
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("Commit err = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func optNoValue(c wire.Compare) wire.Compare { c.Value = nil; return c }

func TestCompareCopiesValue(t *testing.T) {
	b := []byte("abc")
	c := Compare(Value("k"), "=", b)
	b[0] = 'X'
	w, err := c.toWire()
	if err != nil || string(w.Value) != "abc" {
		t.Errorf("toWire = %q, %v; the caller's slice must not alias the compare", w.Value, err)
	}
}

func TestCompareEvaluation(t *testing.T) {
	s, ctx := optOpen(t)
	for _, k := range []string{"a", "b"} {
		if _, err := s.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		cmp  Cmp
		want bool
	}{
		{"every key has version > 0", Compare(Version("").WithPrefix(), ">", 0), true},
		{"not every key was created at 2", Compare(CreateRevision("").WithPrefix(), "=", 2), false},
		{"value of a", Compare(Value("a"), "=", "v"), true},
		{"missing key version 0", Compare(Version("zz"), "=", 0), true},
		{"missing key value", Compare(Value("zz"), "!=", "v"), false},
		{"range [a, c) mod < 4", Compare(ModRevision("a"), "<", 4).WithRange("c"), true},
		{"prefix b lease", Compare(LeaseValue("b"), "=", NoLease).WithPrefix(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Txn(ctx).If(tc.cmp).Commit()
			if err != nil {
				t.Fatal(err)
			}
			if r.Succeeded != tc.want {
				t.Errorf("succeeded = %v, want %v", r.Succeeded, tc.want)
			}
		})
	}
}

func TestTxnBuilderOrder(t *testing.T) {
	s, ctx := optOpen(t)
	cmp := Compare(Version("k"), "=", 0)
	get := OpGet("k")
	tests := []struct {
		name  string
		build func(*Txn) *Txn
		valid bool
	}{
		{"nothing", func(t *Txn) *Txn { return t }, true},
		{"If Then Else", func(t *Txn) *Txn { return t.If(cmp).Then(get).Else(get) }, true},
		{"If", func(t *Txn) *Txn { return t.If(cmp) }, true},
		{"Then", func(t *Txn) *Txn { return t.Then(get) }, true},
		{"Else", func(t *Txn) *Txn { return t.Else(get) }, true},
		{"If Else", func(t *Txn) *Txn { return t.If(cmp).Else(get) }, true},
		{"Then Else", func(t *Txn) *Txn { return t.Then(get).Else(get) }, true},
		{"If without arguments, Then", func(t *Txn) *Txn { return t.If().Then() }, true},
		{"If If", func(t *Txn) *Txn { return t.If(cmp).If(cmp) }, false},
		{"Then If", func(t *Txn) *Txn { return t.Then(get).If(cmp) }, false},
		{"Else If", func(t *Txn) *Txn { return t.Else(get).If(cmp) }, false},
		{"Then Then", func(t *Txn) *Txn { return t.Then(get).Then(get) }, false},
		{"Else Then", func(t *Txn) *Txn { return t.If(cmp).Else(get).Then(get) }, false},
		{"Else Else", func(t *Txn) *Txn { return t.Else(get).Else(get) }, false},
		{"If Then Else If", func(t *Txn) *Txn { return t.If(cmp).Then(get).Else(get).If(cmp) }, false},
		{"misuse with an invalid op too", func(t *Txn) *Txn { return t.Then(Op{}).Then(get) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.build(s.Txn(ctx)).Commit()
			if tc.valid {
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				if resp.Revision != 1 {
					t.Errorf("read-only txn: revision %d, want 1", resp.Revision)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) || resp != nil {
				t.Errorf("Commit = %+v, %v; want ErrInvalidArgument", resp, err)
			}
		})
	}
}

func TestOpValidation(t *testing.T) {
	s, ctx := optOpen(t)
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"zero Op", Op{}, ErrInvalidArgument},
		{"negative limit", OpGet("k", WithLimit(-1)), ErrInvalidArgument},
		{"negative revision", OpGet("k", WithRev(-1)), ErrInvalidArgument},
		{"unknown sort order", OpGet("k", WithSort(SortByKey, SortOrder(3))), ErrInvalidArgument},
		{"negative sort order", OpGet("k", WithSort(SortByKey, SortOrder(-1))), ErrInvalidArgument},
		{"unknown sort target", OpGet("k", WithSort(SortTarget(5), SortAscend)), ErrInvalidArgument},
		{"ignore value with a value", OpPut("k", []byte("v"), WithIgnoreValue()), ErrValueProvided},
		{"ignore lease with a lease", OpPut("k", nil, WithIgnoreLease(), WithLease(5)), ErrLeaseProvided},
		{"empty put key", OpPut("", nil), ErrEmptyKey},
		{"nil option", OpGet("k", nil, WithLimit(1)), nil},
		{"valid get", OpGet("k", WithSort(SortByValue, SortDescend), WithLimit(3), WithKeysOnly()), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, txn := range []*Txn{
				s.Txn(ctx).Then(tc.op),
				s.Txn(ctx).Else(OpTxn(nil, nil, []Op{tc.op})),
			} {
				_, err := txn.Commit()
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("Commit err = %v, want %v", err, tc.want)
				}
			}
		})
	}
	// The same checks apply to Get.
	for _, opts := range [][]OpOption{{WithLimit(-1)}, {WithRev(-2)}, {WithSort(SortTarget(9), SortNone)}} {
		if _, err := s.Get(ctx, "k", opts...); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Get with bad options: %v, want ErrInvalidArgument", err)
		}
	}
}

func TestRangeOptions(t *testing.T) {
	tests := []struct {
		name     string
		op       Op
		key, end string
	}{
		{"plain key", OpGet("a"), "a", ""},
		{"prefix", OpGet("a", WithPrefix()), "a", "b"},
		{"prefix with 0xff carry", OpGet("a\xff", WithPrefix()), "a\xff", "b"},
		{"prefix of all 0xff", OpGet("\xff\xff", WithPrefix()), "\xff\xff", "\x00"},
		{"empty prefix is everything", OpGet("", WithPrefix()), "\x00", "\x00"},
		{"from key", OpGet("b", WithFromKey()), "b", "\x00"},
		{"empty from key is everything", OpGet("", WithFromKey()), "\x00", "\x00"},
		{"range", OpGet("a", WithRange("c")), "a", "c"},
		{"delete empty prefix", OpDelete("", WithPrefix()), "\x00", "\x00"},
		{"delete empty from key", OpDelete("", WithFromKey()), "\x00", "\x00"},
		{"delete prefix", OpDelete("ab", WithPrefix()), "ab", "ac"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := tc.op.toWire(128)
			if err != nil {
				t.Fatal(err)
			}
			var key, end string
			switch {
			case w.Range != nil:
				key, end = w.Range.Key, w.Range.RangeEnd
			case w.DeleteRange != nil:
				key, end = w.DeleteRange.Key, w.DeleteRange.RangeEnd
			}
			if key != tc.key || end != tc.end {
				t.Errorf("range = [%q, %q), want [%q, %q)", key, end, tc.key, tc.end)
			}
		})
	}
}

func TestEmptyKeyPrefixThroughStore(t *testing.T) {
	s, ctx := optOpen(t)
	keys := []string{"\x00", "\x00a", "a", "b/c", "\xff"}
	for _, k := range keys {
		if _, err := s.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for i, opt := range []OpOption{WithPrefix(), WithFromKey()} {
		g, err := s.Get(ctx, "", opt)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range g.KVs {
			got = append(got, kv.Key)
		}
		if !reflect.DeepEqual(got, keys) || g.Count != int64(len(keys)) {
			t.Errorf("Get(\"\", option %d) = %q (count %d), want every key %q", i, got, g.Count, keys)
		}
	}
	if _, err := s.Get(ctx, ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Get(\"\") without a range option: %v, want ErrEmptyKey", err)
	}
	d, err := s.Delete(ctx, "", WithPrefix())
	if err != nil || d.Deleted != int64(len(keys)) {
		t.Fatalf("Delete(\"\", WithPrefix()) = %+v, %v; want %d deleted", d, err, len(keys))
	}
	if g, err := s.Get(ctx, "", WithFromKey()); err != nil || g.Count != 0 {
		t.Errorf("after deleting everything: %+v, %v", g, err)
	}
}
