package schema

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRevisionKeyKnownBytes(t *testing.T) {
	for _, tc := range []struct {
		rev       Revision
		tombstone bool
		hex       string
	}{
		{Revision{}, false, "0000000000000000" + "5f" + "0000000000000000"},
		{Revision{Main: 1}, false, "0000000000000001" + "5f" + "0000000000000000"},
		{Revision{Main: 5, Sub: 2}, true, "0000000000000005" + "5f" + "0000000000000002" + "74"},
		{Revision{Main: 0x0102030405060708, Sub: 0x1112}, false, "0102030405060708" + "5f" + "0000000000001112"},
		{Revision{Main: math.MaxInt64, Sub: math.MaxInt64}, true, "7fffffffffffffff" + "5f" + "7fffffffffffffff" + "74"},
	} {
		want := mustHex(t, tc.hex)
		var got []byte
		if tc.tombstone {
			got = AppendTombstoneKey([]byte("x"), tc.rev)
		} else {
			got = AppendRevisionKey([]byte("x"), tc.rev)
		}
		if !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Errorf("%+v tombstone=%v: got %x, want x+%x", tc.rev, tc.tombstone, got, want)
		}
		rev, tomb, err := ParseRevisionKey(want)
		if err != nil || rev != tc.rev || tomb != tc.tombstone {
			t.Errorf("ParseRevisionKey(%x) = %+v, %v, %v", want, rev, tomb, err)
		}
		if IsTombstoneKey(want) != tc.tombstone {
			t.Errorf("IsTombstoneKey(%x) = %v", want, !tc.tombstone)
		}
	}
}

func TestParseRevisionKeyErrors(t *testing.T) {
	good := AppendRevisionKey(nil, Revision{Main: 3, Sub: 1})
	for _, tc := range []struct {
		name string
		in   []byte
		off  int
	}{
		{"empty", nil, 0},
		{"8 bytes", good[:8], 0},
		{"16 bytes", good[:16], 0},
		{"19 bytes", append(AppendTombstoneKey(nil, Revision{}), 0), 0},
		{"bad separator", append(append(bytes.Clone(good[:8]), '-'), good[9:]...), 8},
		{"bad marker", append(bytes.Clone(good), 'x'), 17},
		{"negative main", AppendRevisionKey(nil, Revision{Main: -1}), 0},
		{"negative sub", AppendTombstoneKey(nil, Revision{Main: 1, Sub: math.MinInt64}), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rev, tomb, err := ParseRevisionKey(tc.in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset != tc.off || de.Type != "revision key" {
				t.Fatalf("err = %#v, want a revision key error at offset %d", err, tc.off)
			}
			if rev != (Revision{}) || tomb {
				t.Fatalf("got %+v, %v with the error", rev, tomb)
			}
		})
	}
}

// The order of keys in the bucket (bytes.Compare, bbolt's order) must be the
// order of revisions, for cursors and range bounds to work.
func TestRevisionKeyOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := func() Revision {
		// Small values make equal mains common.
		if rnd.IntN(2) == 0 {
			return Revision{Main: rnd.Int64N(4), Sub: rnd.Int64N(4)}
		}
		return Revision{Main: rnd.Int64(), Sub: rnd.Int64()}
	}
	for range 10000 {
		a, b := pick(), pick()
		c := a.Compare(b)
		if -c != b.Compare(a) || (c == 0) != (a == b) || a.GreaterThan(b) != (c > 0) {
			t.Fatalf("Compare(%+v, %+v) = %d is not consistent", a, b, c)
		}
		ka, kb := AppendRevisionKey(nil, a), AppendRevisionKey(nil, b)
		if kc := bytes.Compare(ka, kb); kc != c {
			t.Fatalf("bytes.Compare of the keys of %+v and %+v = %d, Compare = %d", a, b, kc, c)
		}
		// A tombstone sorts with its revision: after the live key of the
		// same revision, before every later revision.
		if tc := bytes.Compare(AppendTombstoneKey(nil, a), kb); c != 0 && tc != c {
			t.Fatalf("tombstone of %+v vs %+v: %d, want %d", a, b, tc, c)
		}
		// The main bound sits before every key of its main and after every
		// key of a smaller main.
		bound := AppendMainBound(nil, b.Main)
		if got, want := bytes.Compare(ka, bound) < 0, a.Main < b.Main; got != want {
			t.Fatalf("key of %+v < bound of main %d: %v, want %v", a, b.Main, got, want)
		}
	}
}
