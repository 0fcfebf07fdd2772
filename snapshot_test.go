package accord

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// snapBuilder writes snapshot bytes frame by frame, so that tests can
// produce what writeSnapshot never would (lying counts, bad values) with a
// correct checksum.
type snapBuilder struct {
	buf bytes.Buffer
}

func newSnapBuilder() *snapBuilder {
	b := &snapBuilder{}
	b.buf.WriteString(snapMagic)
	b.buf.WriteByte(snapVersion)
	return b
}

func (b *snapBuilder) frame(fill func(e *wire.Encoder)) *snapBuilder {
	e := wire.NewEncoder(nil)
	fill(e)
	b.buf.Write(binary.AppendUvarint(nil, uint64(e.Len())))
	b.buf.Write(e.Data())
	return b
}

func (b *snapBuilder) header(rev, compactRev int64, nvers, nleases uint64) *snapBuilder {
	return b.frame(func(e *wire.Encoder) {
		e.Byte(frameHeader)
		e.Varint(rev)
		e.Varint(compactRev)
		e.Uvarint(nvers)
		e.Uvarint(nleases)
	})
}

func (b *snapBuilder) version(key string, v version) *snapBuilder {
	return b.frame(func(e *wire.Encoder) {
		e.Byte(frameVersion)
		e.String(key)
		e.Varint(v.rev)
		e.Varint(int64(v.sub))
		e.Varint(v.create)
		e.Varint(v.ver)
		e.Varint(v.lease)
		e.Bool(v.tomb)
		e.Bytes(v.value)
	})
}

func (b *snapBuilder) lease(id, ms int64) *snapBuilder {
	return b.frame(func(e *wire.Encoder) {
		e.Byte(frameLease)
		e.Varint(id)
		e.Varint(ms)
	})
}

func (b *snapBuilder) end() *snapBuilder {
	return b.frame(func(e *wire.Encoder) { e.Byte(frameEnd) })
}

// bytes returns the snapshot with its checksum.
func (b *snapBuilder) bytes() []byte {
	sum := sha256.Sum256(b.buf.Bytes())
	return append(bytes.Clone(b.buf.Bytes()), sum[:]...)
}

func snapPut(rev, create, ver int64, val string) version {
	return version{rev: rev, create: create, ver: ver, value: []byte(val)}
}

// snapSample is a small valid state: history, a tombstone, a compaction
// point, and a lease with a key.
func snapSample() *snapState {
	return &snapState{
		view: &ksView{rev: 6, compactRev: 2, keys: []keyHist{
			{key: "a", vs: []version{snapPut(2, 2, 1, "a1"), snapPut(4, 2, 2, "a2")}},
			{key: "b", vs: []version{snapPut(3, 3, 1, "b1"), {rev: 5, tomb: true}}},
			{key: "c", vs: []version{{rev: 6, create: 6, ver: 1, lease: 7, value: []byte("c1")}}},
		}},
		leases: []snapLease{{id: 7, ttl: 10 * time.Second}, {id: 9, ttl: time.Hour}},
	}
}

func snapEncode(t testing.TB, st *snapState) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, st); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	want := snapSample()
	data := snapEncode(t, want)
	got, err := readSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	if again := snapEncode(t, got); !bytes.Equal(again, data) {
		t.Fatal("re-encoding a decoded snapshot changed its bytes")
	}
	// The builder writes the same format.
	b := newSnapBuilder().header(6, 2, 5, 2).
		version("a", want.view.keys[0].vs[0]).version("a", want.view.keys[0].vs[1]).
		version("b", want.view.keys[1].vs[0]).version("b", want.view.keys[1].vs[1]).
		version("c", want.view.keys[2].vs[0]).
		lease(7, 10000).lease(9, 3600000).end().bytes()
	if !bytes.Equal(b, data) {
		t.Fatal("snapBuilder and writeSnapshot disagree")
	}
}

func TestSnapshotReadRejects(t *testing.T) {
	good := snapEncode(t, snapSample())
	with := func(f func(st *snapState)) []byte {
		st := snapSample()
		f(st)
		return snapEncode(t, st)
	}
	flip := func(pos int) []byte {
		d := bytes.Clone(good)
		d[pos] ^= 0x01
		return d
	}
	base := func() *snapBuilder { return newSnapBuilder().header(3, 0, 1, 0) }
	v := snapPut(2, 2, 1, "x")

	for _, tc := range []struct {
		name   string
		data   []byte
		reason string // part of the error text
	}{
		{"Empty", nil, "too short"},
		{"MagicOnly", []byte(snapMagic), "too short"},
		{"BadMagic", flip(0), "bad magic"},
		{"BadMagicLastByte", flip(len(snapMagic) - 1), "bad magic"},
		{"WrongVersion", func() []byte { d := bytes.Clone(good); d[len(snapMagic)] = snapVersion + 1; return d }(), "format version"},
		{"VersionZero", func() []byte { d := bytes.Clone(good); d[len(snapMagic)] = 0; return d }(), "format version"},
		{"TrailingData", append(bytes.Clone(good), 0), "trailing data"},
		{"TrailingSnapshot", append(bytes.Clone(good), good...), "trailing data"},
		{"ChecksumMismatchInSum", flip(len(good) - 1), "checksum mismatch"},
		{"ChecksumMismatchInValue", flip(bytes.Index(good, []byte("a2")) + 1), "checksum mismatch"},
		{"ChecksumMissing", good[:len(good)-sha256.Size], "missing checksum"},
		{"ChecksumShort", good[:len(good)-1], "missing checksum"},
		{"KeysOutOfOrder", with(func(st *snapState) {
			k := st.view.keys
			k[0], k[1] = k[1], k[0]
		}), "keys out of order"},
		{"KeyRepeatedAfterOther", with(func(st *snapState) {
			st.view.keys = append(st.view.keys, keyHist{key: "a", vs: []version{snapPut(6, 6, 1, "again")}})
		}), "keys out of order"},
		{"VersionsOutOfOrder", with(func(st *snapState) {
			vs := st.view.keys[0].vs
			vs[0], vs[1] = vs[1], vs[0]
		}), "out of order"},
		{"VersionRepeated", with(func(st *snapState) {
			st.view.keys[0].vs[1].rev = st.view.keys[0].vs[0].rev
		}), "out of order"},
		{"KeyOnMissingLease", with(func(st *snapState) { st.leases = st.leases[1:] }), "missing lease 7"},
		{"KeyOnLeaseNeverGranted", with(func(st *snapState) { st.view.keys[0].vs[1].lease = 12345 }), "missing lease 12345"},
		{"RevisionZero", with(func(st *snapState) { st.view.rev, st.view.compactRev = 0, 0 }), "impossible revisions"},
		{"CompactedBeyondRevision", with(func(st *snapState) { st.view.compactRev = st.view.rev + 1 }), "impossible revisions"},
		{"CompactedNegative", with(func(st *snapState) { st.view.compactRev = -1 }), "impossible revisions"},
		{"VersionBeyondRevision", with(func(st *snapState) { st.view.rev = 5 }), "invalid version"},
		{"EmptyKey", base().version("", v).end().bytes(), "invalid version"},
		{"CreateAfterMod", base().version("k", snapPut(2, 3, 1, "x")).end().bytes(), "invalid version"},
		{"LiveVersionZero", base().version("k", snapPut(2, 2, 0, "x")).end().bytes(), "invalid version"},
		{"NegativeLease", base().version("k", version{rev: 2, create: 2, ver: 1, lease: -1}).end().bytes(), "invalid version"},
		{"MoreVersionsClaimed", newSnapBuilder().header(3, 0, 2, 0).version("k", v).end().bytes(), "expected 2 versions"},
		{"FewerVersionsClaimed", newSnapBuilder().header(3, 0, 0, 0).version("k", v).end().bytes(), "missing end frame"},
		{"MoreLeasesClaimed", newSnapBuilder().header(3, 0, 0, 2).lease(1, 1000).end().bytes(), "expected 2 leases"},
		{"LeaseIDZero", newSnapBuilder().header(3, 0, 0, 1).lease(0, 1000).end().bytes(), "invalid lease"},
		{"LeaseTTLZero", newSnapBuilder().header(3, 0, 0, 1).lease(1, 0).end().bytes(), "invalid lease"},
		{"LeaseTTLTooLarge", newSnapBuilder().header(3, 0, 0, 1).lease(1, MaxLeaseTTL.Milliseconds()+1).end().bytes(), "invalid lease"},
		{"LeaseTwice", newSnapBuilder().header(3, 0, 0, 2).lease(1, 1000).lease(1, 1000).end().bytes(), "invalid lease"},
		{"NoHeader", newSnapBuilder().end().bytes(), "not a header"},
		{"NoEnd", base().version("k", v).bytes(), "frame"},
		{"EndWithPayload", base().version("k", v).frame(func(e *wire.Encoder) { e.Byte(frameEnd); e.Byte(0) }).bytes(), "trailing bytes in end frame"},
		{"HeaderWithTrailingBytes", newSnapBuilder().frame(func(e *wire.Encoder) {
			e.Byte(frameHeader)
			e.Varint(1)
			e.Varint(0)
			e.Uvarint(0)
			e.Uvarint(0)
			e.Byte(7)
		}).end().bytes(), "trailing bytes in header frame"},
		{"BadBool", base().frame(func(e *wire.Encoder) {
			e.Byte(frameVersion)
			e.String("k")
			for _, x := range []int64{2, 0, 2, 1, 0} {
				e.Varint(x)
			}
			e.Byte(2) // tomb: neither 0 nor 1
			e.Bytes(nil)
		}).end().bytes(), "bad version frame"},
		{"FrameLengthZero", append([]byte(snapMagic+"\x01"), 0), "out of bounds"},
		{"FrameLengthHuge", append([]byte(snapMagic+"\x01"), binary.AppendUvarint(nil, snapMaxFrame+1)...), "out of bounds"},
		{"FrameLengthBeyondInput", append([]byte(snapMagic+"\x01"), binary.AppendUvarint(nil, 1<<20)...), "truncated frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := readSnapshot(bytes.NewReader(tc.data))
			if err == nil {
				t.Fatalf("accepted: %+v", st.view)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
		})
	}
}

// TestSnapshotReadAccepts: what is valid stays valid.
func TestSnapshotReadAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"EmptyStore", newSnapBuilder().header(1, 0, 0, 0).end().bytes()},
		{"UnusedLease", newSnapBuilder().header(1, 0, 0, 1).lease(5, 1000).end().bytes()},
		// A lease only matters for the key's current version: an old
		// version may name a lease that has been revoked since.
		{"OldVersionOnRevokedLease", newSnapBuilder().header(4, 0, 2, 0).
			version("k", version{rev: 2, create: 2, ver: 1, lease: 5}).
			version("k", version{rev: 4, tomb: true}).end().bytes()},
		{"CompactedToRevision", newSnapBuilder().header(3, 3, 1, 0).version("k", snapPut(2, 2, 1, "x")).end().bytes()},
		{"EmptyValue", newSnapBuilder().header(2, 0, 1, 0).version("k", snapPut(2, 2, 1, "")).end().bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readSnapshot(bytes.NewReader(tc.data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSnapshotOfRealStore: the raft snapshot a store writes to disk and
// its Backup decode to the same state, and re-encode byte for byte.
func TestSnapshotOfRealStore(t *testing.T) {
	raftSnap, backup := snapReal(t)
	a, err := readSnapshot(bytes.NewReader(raftSnap))
	if err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	b, err := readSnapshot(bytes.NewReader(backup))
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	snapSortLeases(a)
	snapSortLeases(b)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("raft snapshot and backup of the same state differ")
	}
	if len(a.leases) == 0 || a.view.compactRev == 0 || len(a.view.keys) == 0 {
		t.Fatalf("the sample state lacks leases, compaction or keys: %+v", a.view)
	}
	for i := range 2 {
		data := [][]byte{raftSnap, backup}[i]
		st, _ := readSnapshot(bytes.NewReader(data))
		if !bytes.Equal(snapEncode(t, st), data) {
			t.Fatalf("snapshot %d does not re-encode to the same bytes", i)
		}
	}
}

// snapReal returns a raft snapshot's state.bin and a Backup of a store
// that ran the persistence workload (history, a compaction, leases).
func snapReal(t *testing.T) (raftSnap, backup []byte) {
	t.Helper()
	dir := t.TempDir()
	o := persistOpts()
	o.UnsafeNoFsync = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := persistCtx(t)
	w := persistW{t: t, ctx: ctx, s: s}
	persistWritesA(w)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snap, err := checkSnapshots(dir)
	if err != nil || snap == nil {
		t.Fatalf("snapshot on disk: %v, %v", snap, err)
	}
	if raftSnap, err = os.ReadFile(filepath.Join(snap.dir, "state.bin")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	return raftSnap, buf.Bytes()
}

func snapSortLeases(st *snapState) {
	slices.SortFunc(st.leases, func(a, b snapLease) int { return cmpInt(a.id, b.id) })
}

// snapNormalize makes empty lists nil, so that states compare by content.
func snapNormalize(st *snapState) *snapState {
	if len(st.view.keys) == 0 {
		st.view.keys = nil
	}
	if len(st.leases) == 0 {
		st.leases = nil
	}
	snapSortLeases(st)
	return st
}

// FuzzReadSnapshot: readSnapshot never panics and fails only with
// ErrCorrupt; what it accepts re-encodes to a snapshot that decodes to
// the same state, and installs into an FSM whose own snapshot is that
// state again.
func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapEncode(f, snapSample()))
	f.Add(newSnapBuilder().header(1, 0, 0, 0).end().bytes())
	f.Add(newSnapBuilder().header(4, 0, 2, 0).
		version("k", version{rev: 2, create: 2, ver: 1, lease: 5}).
		version("k", version{rev: 4, tomb: true}).end().bytes())
	// Real snapshots come from testdata/fuzz/FuzzReadSnapshot (written by
	// TestSnapshotWriteFuzzCorpus).
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		snapFuzzOne(t, discard, data)
		// The checksum stops almost every mutation at the door; with a
		// recomputed one the mutated structure reaches every check.
		if n := len(data) - sha256.Size; n >= 0 {
			sum := sha256.Sum256(data[:n])
			snapFuzzOne(t, discard, append(bytes.Clone(data[:n]), sum[:]...))
		}
	})
}

func snapFuzzOne(t *testing.T, discard *slog.Logger, data []byte) {
	{
		st, err := readSnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := writeSnapshot(&buf, st); err != nil {
			t.Fatal(err)
		}
		again, err := readSnapshot(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, st) {
			t.Fatalf("re-encoded snapshot decodes differently:\n%+v\n%+v", again.view, st.view)
		}

		ks := newKeyspace()
		fsm := newFSM(discard, ks, newWatchHub(ks), newLessor())
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatalf("FSM refuses what readSnapshot accepts: %v", err)
		}
		fsm.mu.RLock()
		got := fsm.stateLocked()
		fsm.mu.RUnlock()
		if !reflect.DeepEqual(snapNormalize(got), snapNormalize(st)) {
			t.Fatalf("FSM state after Restore differs from the snapshot:\n%+v\n%+v", got.view, st.view)
		}
		// The restored keyspace serves reads at every retained revision.
		for rev := max(st.view.compactRev, 1); rev <= st.view.rev && rev < max(st.view.compactRev, 1)+64; rev++ {
			if _, err := ks.Range(&wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", Revision: rev}); err != nil {
				t.Fatalf("range at %d: %v", rev, err)
			}
		}
		if _, _, err := ks.history(max(st.view.compactRev, 1), 0, 1000); err != nil {
			t.Fatalf("history: %v", err)
		}
	}
}

// TestSnapshotWriteFuzzCorpus regenerates the real-snapshot seeds of
// FuzzReadSnapshot: ACCORD_WRITE_FUZZ_CORPUS=1 go test -run WriteFuzzCorpus.
func TestSnapshotWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ACCORD_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set ACCORD_WRITE_FUZZ_CORPUS=1 to rewrite testdata/fuzz/FuzzReadSnapshot")
	}
	raftSnap, backup := snapReal(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzReadSnapshot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"real-raft-snapshot": raftSnap,
		"real-backup":        backup,
		"sample":             snapEncode(t, snapSample()),
	} {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
