package schema

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
)

func TestBucketAndKeyNames(t *testing.T) {
	// etcd 3.7.3's server/storage/schema/bucket.go.
	want := []string{"key", "meta", "lease", "alarm", "cluster", "members", "members_removed", "auth", "authUsers", "authRoles"}
	got := Buckets()
	if !slices.Equal(got, want) {
		t.Fatalf("Buckets() = %q, want %q", got, want)
	}
	got[0] = "changed"
	if Buckets()[0] != "key" {
		t.Fatal("Buckets returns shared state")
	}
	for name, want := range map[string]string{
		MetaConsistentIndexKey:  "consistent_index",
		MetaTermKey:             "term",
		MetaScheduledCompactKey: "scheduledCompactRev",
		MetaFinishedCompactKey:  "finishedCompactRev",
		MetaConfStateKey:        "confState",
		MetaStorageVersionKey:   "storageVersion",
		ClusterVersionKey:       "clusterVersion",
		ClusterDowngradeKey:     "downgrade",
		AuthEnabledKey:          "authEnabled",
		AuthRevisionKey:         "authRevision",
		MembersRemovedValue:     "removed",
	} {
		if name != want {
			t.Errorf("%q, want %q", name, want)
		}
	}
}

func TestUint64Values(t *testing.T) {
	for _, v := range []uint64{0, 1, 0x0102030405060708, math.MaxUint64} {
		b := AppendUint64(nil, v)
		if len(b) != Uint64Len {
			t.Fatalf("%d encodes to %d bytes", v, len(b))
		}
		for _, dec := range []func([]byte) (uint64, error){DecodeConsistentIndex, DecodeTerm, DecodeAuthRevision} {
			if got, err := dec(b); err != nil || got != v {
				t.Errorf("decode(%x) = %d, %v", b, got, err)
			}
		}
		if !bytes.Equal(AppendAuthRevision(nil, v), b) {
			t.Errorf("AppendAuthRevision(%d) differs from AppendUint64", v)
		}
	}
	if got := AppendUint64(nil, 0x0102030405060708); !bytes.Equal(got, mustHex(t, "0102030405060708")) {
		t.Fatalf("not big-endian: %x", got)
	}
	for _, bad := range []string{"", "01", "01020304050607", "010203040506070809"} {
		if _, err := DecodeConsistentIndex(mustHex(t, bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeConsistentIndex(%s): %v", bad, err)
		}
	}
}

func TestCompactRev(t *testing.T) {
	b := AppendCompactRev(nil, 42)
	if want := mustHex(t, "000000000000002a5f0000000000000000"); !bytes.Equal(b, want) {
		t.Fatalf("AppendCompactRev(42) = %x, want %x", b, want)
	}
	if rev, err := DecodeCompactRev(b); err != nil || rev != 42 {
		t.Fatalf("DecodeCompactRev = %d, %v", rev, err)
	}
	for _, bad := range [][]byte{nil, b[:8], AppendTombstoneKey(nil, Revision{Main: 42}), AppendCompactRev(nil, -5), AppendRevisionKey(nil, Revision{Main: 42, Sub: 1}), append(bytes.Clone(b[:8]), bytes.Repeat([]byte{0}, 9)...)} {
		_, err := DecodeCompactRev(bad)
		var de *DecodeError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &de) || de.Type != "compact revision" {
			t.Errorf("DecodeCompactRev(%x): %v", bad, err)
		}
	}
}

func TestVersions(t *testing.T) {
	if got := string(AppendStorageVersion(nil, 3, 7)); got != "3.7.0" {
		t.Fatalf("storage version = %q", got)
	}
	// Accepted and refused as github.com/coreos/go-semver v0.3.1's
	// NewVersion accepts and refuses them (recorded from it).
	for _, tc := range []struct {
		in   string
		want string // String() of the result, "" for an error
	}{
		{"3.7.0", "3.7.0"},
		{"03.7.0", "3.7.0"},
		{"3.7.0-rc.0+git.1", "3.7.0-rc.0+git.1"},
		{"3.7.0-", "3.7.0"},
		{"3.7.0+", "3.7.0"},
		{"3.7", ""},
		{"3.7.0-a..b", ""},
		{"3.7.0.1", ""},
		{"v3.7.0", ""},
		{"3.7.x", ""},
		{"-3.7.0", ""},
		{"3.+7.0", ""},
		{"9223372036854775808.0.0", ""},
		{" 3.7.0", ""},
		{"", ""},
		{"3.7.0+meta_data", ""},
	} {
		v, err := ParseVersion([]byte(tc.in))
		switch {
		case tc.want == "" && !errors.Is(err, ErrInvalid):
			t.Errorf("ParseVersion(%q) = %v, %v; want ErrInvalid", tc.in, v, err)
		case tc.want != "" && (err != nil || v.String() != tc.want):
			t.Errorf("ParseVersion(%q) = %v, %v; want %s", tc.in, v, err, tc.want)
		}
	}
	v := Version{Major: 3, Minor: 6, Patch: 2, PreRelease: "alpha.1", Metadata: "b"}
	if got := string(AppendVersion([]byte("x"), v)); got != "x3.6.2-alpha.1+b" {
		t.Fatalf("AppendVersion = %q", got)
	}
}

func TestAuthEnabled(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		b := AppendAuthEnabled(nil, enabled)
		if got, err := DecodeAuthEnabled(b); err != nil || got != enabled || len(b) != 1 {
			t.Errorf("%v: %x -> %v, %v", enabled, b, got, err)
		}
	}
	if !bytes.Equal(AppendAuthEnabled(nil, true), []byte{1}) || !bytes.Equal(AppendAuthEnabled(nil, false), []byte{0}) {
		t.Fatal("authEnabled values differ from etcd's {1} and {0}")
	}
	for _, bad := range [][]byte{nil, {2}, {1, 0}, {'1'}} {
		if _, err := DecodeAuthEnabled(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeAuthEnabled(%x): %v", bad, err)
		}
	}
}

func TestSnapshotTrailer(t *testing.T) {
	for size, want := range map[int64]bool{
		0: false, 32: true, 4096: false, 4096 + 32: true, 1<<30 + 32: true, 1 << 30: false, 512*7 + 32: true, 4096 + 31: false,
	} {
		if got := HasSnapshotTrailer(size); got != want {
			t.Errorf("HasSnapshotTrailer(%d) = %v", size, got)
		}
	}
}
