package accord

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Data directories of format 2 (accord 0.2) kept the keyspace in memory
// and whole copies of it in snapshots/ (ACCORDSNAP). Open builds kv.db
// from the newest snapshot, raft replays the log after it, and the
// manifest says format 3 (openKV). testdata/format2.tar.gz is such a
// directory, written by accord 0.2 itself (testdata/format2_gen.go says
// how), with expect.json: every key at every revision from the compaction
// point on, the lease and its keys, as 0.2 served them.

// migrate2Expect is expect.json (format2_gen.go's expect).
type migrate2Expect struct {
	NodeID      string                     `json:"node_id"`
	ClusterName string                     `json:"cluster_name"`
	Revision    int64                      `json:"revision"`
	CompactRev  int64                      `json:"compact_revision"`
	Lease       int64                      `json:"lease"`
	LeaseTTLMs  int64                      `json:"lease_granted_ttl_ms"`
	LeaseKeys   []string                   `json:"lease_keys"`
	SnapIndex   uint64                     `json:"snapshot_index"`
	States      map[int64][]migrate2KVJSON `json:"states"`
}

type migrate2KVJSON struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease"`
}

// migrate2Extract unpacks testdata/format2.tar.gz into a new directory and
// returns the data directory and what 0.2 served. Runs of zeros are left
// as holes (the raft log segment is 16 MiB, nearly all of it zeros).
func migrate2Extract(t *testing.T) (string, *migrate2Expect) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "format2.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var e *migrate2Expect
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.FromSlash(h.Name)
		if !filepath.IsLocal(name) {
			t.Fatalf("archive entry %q", h.Name)
		}
		target := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		case tar.TypeReg:
		default:
			t.Fatalf("archive entry %q of type %c", h.Name, h.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "expect.json" {
			e = new(migrate2Expect)
			if err := json.Unmarshal(b, e); err != nil {
				t.Fatal(err)
			}
			continue
		}
		out, err := os.OpenFile(target, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		const chunk = 4096
		for off := 0; off < len(b) && err == nil; off += chunk {
			if c := b[off:min(off+chunk, len(b))]; !corruptAllZero(c) {
				_, err = out.WriteAt(c, int64(off))
			}
		}
		if err == nil {
			err = out.Truncate(int64(len(b)))
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if e == nil || len(e.States) == 0 || e.Lease == 0 || e.CompactRev < 2 || e.SnapIndex == 0 {
		t.Fatalf("archive's expect.json is incomplete: %+v", e)
	}
	dir := filepath.Join(root, "data")
	if m, err := readManifest(dir); err != nil || m.Format != 2 {
		t.Fatalf("archive's manifest: %+v, %v; want format 2", m, err)
	}
	return dir, e
}

// migrate2Compact cuts the raft log of the extracted directory dir as raft
// does after a snapshot (TrailingLogs 4), which 0.2's log, one segment,
// did not: then only the snapshot holds the entries up to it.
func migrate2Compact(t *testing.T, dir string, e *migrate2Expect) {
	t.Helper()
	logDir := filepath.Join(dir, raftLogDir)
	entries := corruptReadLog(t, logDir)
	if entries[0].Index != 1 {
		t.Fatalf("the archive's log starts at %d", entries[0].Index)
	}
	entries = slices.DeleteFunc(entries, func(l *raft.Log) bool { return l.Index+4 <= e.SnapIndex })
	corruptWriteLog(t, logDir, entries)
}

func migrate2Opts(e *migrate2Expect) *Options {
	return &Options{ElectionTimeout: 50 * time.Millisecond, NodeID: e.NodeID, ClusterName: e.ClusterName}
}

// migrate2Check checks that s serves exactly what 0.2 served: every key,
// value, create and mod revision, version and lease at every revision
// from the compaction point to the last, ErrCompacted below it, the lease
// with its TTL and keys.
func migrate2Check(t *testing.T, s *Store, e *migrate2Expect) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var problems []string
	for rev := e.CompactRev; rev <= e.Revision; rev++ {
		want, ok := e.States[rev]
		if !ok {
			t.Fatalf("expect.json has no state at revision %d", rev)
		}
		g, err := s.Get(ctx, "\x00", WithFromKey(), WithRev(rev))
		if err != nil {
			problems = append(problems, fmt.Sprintf("get at %d: %v", rev, err))
			continue
		}
		if g.Revision != e.Revision {
			problems = append(problems, fmt.Sprintf("get at %d: store revision %d, want %d", rev, g.Revision, e.Revision))
		}
		got := []migrate2KVJSON{}
		for _, kv := range g.KVs {
			got = append(got, migrate2KVJSON{kv.Key, string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version, int64(kv.Lease)})
		}
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("at revision %d:\n got %+v\nwant %+v", rev, got, want))
		}
	}
	if _, err := s.Get(ctx, "a", WithRev(e.CompactRev-1)); !errors.Is(err, ErrCompacted) {
		problems = append(problems, fmt.Sprintf("get below the compaction point: %v, want ErrCompacted", err))
	}
	if rev, compacted := s.ks.Revs(); rev != e.Revision || compacted != e.CompactRev {
		problems = append(problems, fmt.Sprintf("revision %d compacted at %d, want %d and %d", rev, compacted, e.Revision, e.CompactRev))
	}
	ls, err := s.TimeToLive(ctx, LeaseID(e.Lease), WithAttachedKeys())
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("lease %d: %v", e.Lease, err))
	case ls.GrantedTTL != time.Duration(e.LeaseTTLMs)*time.Millisecond || ls.TTL <= 0:
		problems = append(problems, fmt.Sprintf("lease %d: TTL %v granted %v, want granted %v", e.Lease, ls.TTL, ls.GrantedTTL, time.Duration(e.LeaseTTLMs)*time.Millisecond))
	default:
		keys := slices.Clone(ls.Keys)
		slices.Sort(keys)
		if !slices.Equal(keys, e.LeaseKeys) {
			problems = append(problems, fmt.Sprintf("lease %d holds %v, want %v", e.Lease, keys, e.LeaseKeys))
		}
	}
	if ids, err := s.Leases(ctx); err != nil || !slices.Equal(ids, []LeaseID{LeaseID(e.Lease)}) {
		problems = append(problems, fmt.Sprintf("leases %v, %v; want only %d", ids, err, e.Lease))
	}
	if len(problems) > 0 {
		t.Fatalf("after the migration the store does not serve what 0.2 served:\n%s", strings.Join(problems, "\n"))
	}
}

// migrate2CheckDone checks the closed directory dir once migrated: format
// 3, kv.db holding at least the snapshot, the snapshot a marker, no
// leftovers.
func migrate2CheckDone(t *testing.T, dir string, e *migrate2Expect) {
	t.Helper()
	m, err := readManifest(dir)
	if err != nil || m.Format != formatVersion {
		t.Fatalf("manifest %+v, %v; want format %d", m, err, formatVersion)
	}
	snap, err := checkSnapshots(dir)
	if err != nil || snap == nil || snap.kind != stateMarker || snap.stale || snap.missing {
		t.Fatalf("newest snapshot after the migration: %+v, %v; want a marker", snap, err)
	}
	if snap.meta.Index < e.SnapIndex {
		t.Fatalf("newest snapshot at %d, older than 0.2's (%d)", snap.meta.Index, e.SnapIndex)
	}
	ci, err := peekKV(filepath.Join(dir, kvDBName), testBackendOptions())
	if err != nil || ci < snap.meta.Index {
		t.Fatalf("kv.db holds raft entries up to %d (%v), the snapshot is at %d", ci, err, snap.meta.Index)
	}
	for _, name := range []string{kvDBName + kvDBTmpSuffix, kvDBInstallName, kvDBInstallName + kvDBTmpSuffix, kvDBName + kvDBDefragSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left over: %v", name, err)
		}
	}
}

func TestMigrateFormat2(t *testing.T) {
	for _, compacted := range []bool{false, true} {
		t.Run(map[bool]string{false: "LogFromIndex1", true: "LogCompacted"}[compacted], func(t *testing.T) {
			dir, e := migrate2Extract(t)
			if compacted {
				migrate2Compact(t, dir, e)
			}
			o := migrate2Opts(e)
			s, err := corruptOpen(dir, o)
			if err != nil {
				t.Fatalf("Open of 0.2's directory: %v", err)
			}
			migrate2Check(t, s, e)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			migrate2CheckDone(t, dir, e)

			// Opened again: the state comes from kv.db alone now.
			s = openTestStore(t, dir, o)
			migrate2Check(t, s, e)
			ctx := persistCtx(t)
			if r, err := s.Put(ctx, "after", []byte("migration")); err != nil || r.Revision != e.Revision+1 {
				t.Fatalf("first write after the migration: %+v, %v; want revision %d", r, err, e.Revision+1)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			migrate2CheckDone(t, dir, e)
		})
	}
}

var errMigrateCrash = errors.New("crash (test)")

// migrate2CrashAt makes Open of dir stop at point, as a crash there would.
func migrate2CrashAt(t *testing.T, dir, point string) {
	t.Helper()
	h := func(d, p string) error {
		if d == dir && p == point {
			return errMigrateCrash
		}
		return nil
	}
	testCrashHook.Store(&h)
	t.Cleanup(func() { testCrashHook.Store(nil) })
}

// TestMigrateFormat2Interrupted: a crash at each step of the migration,
// then Open, which finishes it with nothing lost; and a crash at every
// step in turn, one Open each, before one that completes.
func TestMigrateFormat2Interrupted(t *testing.T) {
	points := []string{crashInstallBuilt, crashInstallFinished, crashInstallRenamed, crashMarkerState, crashMarkerMeta, crashManifest}
	crash := func(t *testing.T, dir string, o *Options, point string) {
		t.Helper()
		migrate2CrashAt(t, dir, point)
		s, err := corruptOpen(dir, o)
		if err == nil {
			s.Close()
			t.Fatalf("Open did not reach %q", point)
		}
		if !errors.Is(err, errMigrateCrash) {
			t.Fatalf("Open before %q: %v", point, err)
		}
		testCrashHook.Store(nil)
	}
	for _, point := range points {
		t.Run(strings.ReplaceAll(point, " ", "_"), func(t *testing.T) {
			dir, e := migrate2Extract(t)
			o := migrate2Opts(e)
			crash(t, dir, o, point)
			s := openTestStore(t, dir, o)
			migrate2Check(t, s, e)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			migrate2CheckDone(t, dir, e)
		})
	}
	t.Run("KVTmpHalfWritten", func(t *testing.T) {
		// A crash while kv.db.install.tmp was being filled from the
		// snapshot: half a bolt file.
		dir, e := migrate2Extract(t)
		o := migrate2Opts(e)
		crash(t, dir, o, crashInstallBuilt)
		install := filepath.Join(dir, kvDBInstallName)
		b, err := os.ReadFile(install)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(install+kvDBTmpSuffix, b[:len(b)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(install); err != nil {
			t.Fatal(err)
		}
		s := openTestStore(t, dir, o)
		migrate2Check(t, s, e)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		migrate2CheckDone(t, dir, e)
	})
	t.Run("EveryStepInTurn", func(t *testing.T) {
		// Each Open stops at the first point it reaches that no Open
		// stopped at before (a redo of the install passes some again).
		dir, e := migrate2Extract(t)
		o := migrate2Opts(e)
		hit := map[string]bool{}
		h := func(d, p string) error {
			if d == dir && !hit[p] {
				hit[p] = true
				return errMigrateCrash
			}
			return nil
		}
		testCrashHook.Store(&h)
		t.Cleanup(func() { testCrashHook.Store(nil) })
		var s *Store
		for range len(points) + 1 {
			var err error
			if s, err = corruptOpen(dir, o); err == nil {
				break
			}
			if !errors.Is(err, errMigrateCrash) {
				t.Fatalf("Open after crashes at %v: %v", slices.Sorted(maps.Keys(hit)), err)
			}
		}
		testCrashHook.Store(nil)
		if s == nil {
			t.Fatalf("Open kept stopping: %v", hit)
		}
		migrate2Check(t, s, e)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		migrate2CheckDone(t, dir, e)
		for _, p := range points {
			if !hit[p] {
				t.Errorf("no Open reached %q", p)
			}
		}
		t.Logf("crashed at: %v", slices.Sorted(maps.Keys(hit)))
	})
}

// TestMigrateFormat2Damaged: a format-2 directory whose newest snapshot
// (the only copy of the keyspace up to its index: the log was compacted)
// is damaged is refused, before anything is migrated.
func TestMigrateFormat2Damaged(t *testing.T) {
	stateBin := func(t *testing.T, dir string) string {
		sd, _ := corruptNewestSnapshot(t, dir)
		return filepath.Join(sd, "state.bin")
	}
	// reseal makes the snapshot's metadata checksum match its damaged
	// data again: only ACCORDSNAP's own checks can tell.
	reseal := func(t *testing.T, dir string) {
		sds, err := filepath.Glob(filepath.Join(dir, snapshotsDir, "*"))
		if err != nil || len(sds) != 1 {
			t.Fatalf("snapshots: %v, %v", sds, err)
		}
		sd := sds[0]
		data, err := os.ReadFile(filepath.Join(sd, "state.bin"))
		if err != nil {
			t.Fatal(err)
		}
		h := crc64.New(crc64.MakeTable(crc64.ECMA))
		h.Write(data)
		mp := filepath.Join(sd, "meta.json")
		mb, err := os.ReadFile(mp)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(mb, &m); err != nil {
			t.Fatal(err)
		}
		m["CRC"], m["Size"] = h.Sum(nil), len(data)
		if mb, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mp, mb, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		reason string
		full   bool // the log from index 1, as 0.2 left it: replay rebuilds the state
	}{
		{"StateByteFlipped", func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			corruptFlip(t, stateBin(t, dir), fi.Size()/2, 1)
		}, "checksum", false},
		{"StateTruncated", func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(stateBin(t, dir), fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "bytes", false},
		{"StateByteFlippedResealed", func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			corruptFlip(t, stateBin(t, dir), fi.Size()/2, 1)
			reseal(t, dir)
		}, "content is invalid", false},
		{"StateMissing", func(t *testing.T, dir string) {
			if err := os.Remove(stateBin(t, dir)); err != nil {
				t.Fatal(err)
			}
		}, "missing", false},
		{"SnapshotMissing", func(t *testing.T, dir string) {
			// The log no longer starts at 1: without the snapshot, the
			// entries up to it are gone.
			if err := os.RemoveAll(filepath.Join(dir, snapshotsDir)); err != nil {
				t.Fatal(err)
			}
		}, "log starts at index", false},
		{"SnapshotMissingLogFromIndex1", func(t *testing.T, dir string) {
			// The whole log is there: raft replays it into a new kv.db.
			if err := os.RemoveAll(filepath.Join(dir, snapshotsDir)); err != nil {
				t.Fatal(err)
			}
		}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, e := migrate2Extract(t)
			if !tc.full {
				migrate2Compact(t, dir, e)
			}
			tc.damage(t, dir)
			before := corruptHashTree(t, dir)
			s, err := corruptOpen(dir, migrate2Opts(e))
			if tc.full {
				if err != nil {
					t.Fatalf("Open: %v; want a start with every write (the log holds them all)", err)
				}
				migrate2Check(t, s, e)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				migrate2Check(t, s, e)
				s.Close()
				t.Fatal("Open of a damaged format-2 directory succeeded")
			}
			t.Logf("Open: %v", err)
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("Open: %v; want ErrCorrupt saying %q", err, tc.reason)
			}
			if after := corruptHashTree(t, dir); after != before {
				t.Errorf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
