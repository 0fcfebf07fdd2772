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

// TestSnapshotOfRealStore: the raft snapshot a store writes to disk is a
// marker (its data is kv.db), and a Backup is kv.db followed by its
// SHA-256, which restores to the same keys and leases.
func TestSnapshotOfRealStore(t *testing.T) {
	dir := t.TempDir()
	o := persistOpts()
	o.UnsafeNoFsync = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := persistCtx(t)
	persistWritesA(persistW{t: t, ctx: ctx, s: s})
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snap, err := checkSnapshots(dir)
	if err != nil || snap == nil {
		t.Fatalf("snapshot on disk: %v, %v", snap, err)
	}
	state, err := os.ReadFile(filepath.Join(snap.dir, "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if idx, ok := parseLiveMarker(state); !ok || idx != snap.meta.Index {
		t.Fatalf("state.bin = %q, want the marker of index %d", state, snap.meta.Index)
	}
	var buf bytes.Buffer
	if err := s.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) < sha256.Size || !isBoltHeader(b) {
		t.Fatalf("backup of %d bytes is not a bolt file", len(b))
	}
	if sum := sha256.Sum256(b[:len(b)-sha256.Size]); !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
		t.Fatal("backup does not end with the SHA-256 of the rest")
	}
	want, err := s.Get(ctx, "\x00", WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	leases, err := s.Leases(ctx)
	if err != nil || len(leases) == 0 {
		t.Fatalf("leases %v, %v: the sample state needs some", leases, err)
	}
	rdir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(bytes.NewReader(b), rdir, o); err != nil {
		t.Fatal(err)
	}
	r, err := Open(rdir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Get(ctx, "\x00", WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.KVs, want.KVs) || got.Revision != want.Revision {
		t.Fatalf("restored store reads %+v at %d, want %+v at %d", got.KVs, got.Revision, want.KVs, want.Revision)
	}
	gotLeases, err := r.Leases(ctx)
	if err != nil || !reflect.DeepEqual(gotLeases, leases) {
		t.Fatalf("restored leases %v (%v), want %v", gotLeases, err, leases)
	}
}

// snapReal returns the ACCORDSNAP encoding of the state a store reaches
// after the persistence workload (history, a compaction, leases), as
// accord 0.2 wrote it: a seed of FuzzReadSnapshot.
func snapReal(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	o := persistOpts()
	o.UnsafeNoFsync = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	persistWritesA(persistW{t: t, ctx: persistCtx(t), s: s})
	st := legacyStateOf(t, s.fsm)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, st); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// legacyStateOf is the state of f as an ACCORDSNAP stream holds it.
func legacyStateOf(t testing.TB, f *fsm) *snapState {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	ks := f.ks
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	st := &snapState{view: &ksView{rev: ks.rev, compactRev: ks.compactRev}}
	ks.index.Ascend(func(k *keyIndex) bool {
		h := keyHist{key: k.key}
		for _, r := range k.revs {
			v := version{rev: r.main, sub: r.sub, tomb: r.tomb}
			if !r.tomb {
				kv, err := ks.kv(k.key, r, false)
				if err != nil {
					t.Fatal(err)
				}
				v.create, v.ver, v.lease, v.value = kv.CreateRevision, kv.Version, int64(kv.Lease), kv.Value
			}
			h.vs = append(h.vs, v)
		}
		st.view.keys = append(st.view.keys, h)
		return true
	})
	for id, e := range f.leases.m {
		st.leases = append(st.leases, snapLease{id: id, ttl: e.ttl})
	}
	snapSortLeases(st)
	return st
}

// snapReads reads every key at every revision [max(compact,1), rev] of a
// legacy state directly: a model of what a keyspace holding it serves.
func snapReads(st *snapState) map[int64][]KeyValue {
	out := map[int64][]KeyValue{}
	for rev := max(st.view.compactRev, 1); rev <= st.view.rev; rev++ {
		var kvs []KeyValue
		for _, h := range st.view.keys {
			var cur *version
			for i := range h.vs {
				if h.vs[i].rev <= rev {
					cur = &h.vs[i]
				}
			}
			if cur != nil && !cur.tomb {
				kvs = append(kvs, KeyValue{Key: h.key, CreateRevision: cur.create, ModRevision: cur.rev, Version: cur.ver, Lease: LeaseID(cur.lease), Value: cur.value})
			}
		}
		out[rev] = kvs
	}
	return out
}

func snapSortLeases(st *snapState) {
	slices.SortFunc(st.leases, func(a, b snapLease) int { return cmpInt(a.id, b.id) })
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

		f := newTestFSM(t)
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatalf("FSM refuses what readSnapshot accepts: %v", err)
		}
		// The restored keyspace serves every retained revision as the
		// snapshot says, and its history.
		ks := f.ks
		if got := ks.Rev(); got != st.view.rev {
			t.Fatalf("revision %d after Restore, want %d", got, st.view.rev)
		}
		want := snapReads(st)
		for rev := max(st.view.compactRev, 1); rev <= st.view.rev && rev < max(st.view.compactRev, 1)+64; rev++ {
			got, err := ks.Range(&wire.RangeRequest{Key: "\x00", RangeEnd: "\x00", Revision: rev})
			if err != nil {
				t.Fatalf("range at %d: %v", rev, err)
			}
			if !reflect.DeepEqual(snapNilValues(got.KVs), snapNilValues(want[rev])) {
				t.Fatalf("range at %d after Restore:\n%+v\nwant %+v", rev, got.KVs, want[rev])
			}
		}
		if _, _, err := ks.history(max(st.view.compactRev, 1), 0, 1000, true); err != nil {
			t.Fatalf("history: %v", err)
		}
		f.mu.RLock()
		nleases := len(f.leases.m)
		f.mu.RUnlock()
		if nleases != len(st.leases) {
			t.Fatalf("%d leases after Restore, want %d", nleases, len(st.leases))
		}
	}
}

// snapNilValues makes empty values nil and an empty list nil, so that
// KeyValues compare by content.
func snapNilValues(kvs []KeyValue) []KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := slices.Clone(kvs)
	for i := range out {
		if len(out[i].Value) == 0 {
			out[i].Value = nil
		}
	}
	return out
}

// TestSnapshotWriteFuzzCorpus regenerates the real-snapshot seeds of
// FuzzReadSnapshot: ACCORD_WRITE_FUZZ_CORPUS=1 go test -run WriteFuzzCorpus.
func TestSnapshotWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ACCORD_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set ACCORD_WRITE_FUZZ_CORPUS=1 to rewrite testdata/fuzz/FuzzReadSnapshot")
	}
	raftSnap := snapReal(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzReadSnapshot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"real-raft-snapshot": raftSnap,
		"sample":             snapEncode(t, snapSample()),
	} {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
