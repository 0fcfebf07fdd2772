package accord

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Damaged data directories: each case takes a healthy directory (data, two
// snapshots, log entries after the newest), damages it, and checks that
// Open refuses it with ErrCorrupt or ErrForeignDir, without panicking,
// without starting, and without changing a byte of it.

const (
	corruptNode    = "corrupt-node"
	corruptCluster = "corrupt-cluster"
	corruptMarker  = "corrupt-value-"
	corruptPage    = 4096
)

func corruptOpts() *Options {
	return &Options{
		ElectionTimeout: 50 * time.Millisecond,
		NodeID:          corruptNode,
		ClusterName:     corruptCluster,
		TrailingLogs:    2, // snapshots truncate the log, as in production
	}
}

// corruptBase is a closed, healthy data directory and what was
// acknowledged in it.
type corruptBase struct {
	dir   string
	rev   int64             // the last acknowledged revision
	acked map[string]string // key -> value, every key written once
}

func corruptBuild(t *testing.T) *corruptBase {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b := &corruptBase{dir: t.TempDir(), acked: make(map[string]string)}
	s, err := Open(b.dir, corruptOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(n int) {
		for range n {
			key := fmt.Sprintf("k/%03d", len(b.acked))
			// Long values: the log spans several bolt pages.
			val := corruptMarker + key + "-" + strings.Repeat("v", 300)
			r, err := s.Put(ctx, key, []byte(val))
			if err != nil {
				t.Fatal(err)
			}
			b.acked[key], b.rev = val, r.Revision
		}
	}
	put(10)
	persistSnapshot(t, s)
	put(10)
	persistSnapshot(t, s)
	put(30)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(persistSnapshots(t, b.dir)); n != 2 {
		t.Fatalf("base has %d snapshots, want 2", n)
	}
	return b
}

// corruptCopyTree copies the regular files and directories of src into dst.
func corruptCopyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// corruptHashTree describes every file and directory under dir with a hash of its
// contents and its mode.
func corruptHashTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			fmt.Fprintf(&b, "%s/ %v\n", rel, fi.Mode())
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %x\n", rel, fi.Mode(), len(data), sha256.Sum256(data))
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return b.String()
}

// corruptNewestSnapshot returns the directory of the newest snapshot and
// its index.
func corruptNewestSnapshot(t *testing.T, dir string) (string, uint64) {
	t.Helper()
	snap, err := checkSnapshots(dir)
	if err != nil || snap == nil {
		t.Fatalf("newest snapshot of %s: %v, %v", dir, snap, err)
	}
	return snap.dir, snap.meta.Index
}

func corruptFlip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("flip %s at %d: %v", path, off, err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// corruptLogPages returns the bolt pages that hold live log data: leaf
// pages in use (not on the free list) that contain written values. It
// inspects a private copy, because opening bolt for writing changes the
// file.
func corruptLogPages(t *testing.T, dbPath string) []int {
	t.Helper()
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "inspect.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(cp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pages []int
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; id*corruptPage < len(data); id++ {
			info, err := tx.Page(id)
			if err != nil {
				return err
			}
			if info == nil || info.Type != "leaf" {
				continue
			}
			end := (id + 1 + info.OverflowCount) * corruptPage
			if bytes.Contains(data[id*corruptPage:min(end, len(data))], []byte(corruptMarker)) {
				pages = append(pages, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no live bolt page holds log data")
	}
	return pages
}

func corruptEditManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// corruptDeleteLogs removes log entries [from, to] from a closed
// directory, clamping to what the log holds.
func corruptDeleteLogs(t *testing.T, dir string, from, to func(first, last, snap uint64) uint64) {
	t.Helper()
	_, snapIdx := corruptNewestSnapshot(t, dir)
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBName)})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	lo, hi := from(first, last, snapIdx), to(first, last, snapIdx)
	if lo < first || hi >= last || lo > hi {
		t.Fatalf("bad range [%d, %d] for log [%d, %d], snapshot %d", lo, hi, first, last, snapIdx)
	}
	if err := logs.DeleteRange(lo, hi); err != nil {
		t.Fatal(err)
	}
	t.Logf("log was [%d, %d], snapshot at %d; deleted [%d, %d]", first, last, snapIdx, lo, hi)
}

// corruptOpenOutcome is how Open treated a directory.
type corruptOutcome int

const (
	corruptRefused           corruptOutcome = iota // refused with ErrCorrupt
	corruptForeign                                 // refused with ErrForeignDir
	corruptRefusedOrComplete                       // refused with ErrCorrupt, or started with every acknowledged write
)

func TestCorruptDataDir(t *testing.T) {
	base := corruptBuild(t)
	metaJSON := func(dir string) string {
		sd, _ := corruptNewestSnapshot(t, dir)
		return filepath.Join(sd, "meta.json")
	}
	stateBin := func(dir string) string {
		sd, _ := corruptNewestSnapshot(t, dir)
		return filepath.Join(sd, "state.bin")
	}
	dbPath := func(dir string) string { return filepath.Join(dir, raftDBName) }

	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		opts   func(o *Options)
		want   corruptOutcome
	}{
		{name: "RaftDBMissing", damage: func(t *testing.T, dir string) {
			if err := os.Remove(dbPath(dir)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "RaftDBEmpty", damage: func(t *testing.T, dir string) {
			if err := os.Truncate(dbPath(dir), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "RaftDBTruncatedToHalf", damage: func(t *testing.T, dir string) {
			fi, err := os.Stat(dbPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(dbPath(dir), fi.Size()/2/corruptPage*corruptPage); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "RaftDBLogPagesMiddleFlipped", damage: func(t *testing.T, dir string) {
			// 64 bytes in the middle of every live page holding log entries.
			for _, id := range corruptLogPages(t, dbPath(dir)) {
				corruptFlip(t, dbPath(dir), int64(id*corruptPage+corruptPage/2), 64)
			}
		}},
		{name: "RaftDBLogPageHeaderFlipped", damage: func(t *testing.T, dir string) {
			pages := corruptLogPages(t, dbPath(dir))
			id := pages[len(pages)/2]
			corruptFlip(t, dbPath(dir), int64(id*corruptPage+8), 2) // the page's flags
		}},
		{name: "RaftDBLogPageZeroed", damage: func(t *testing.T, dir string) {
			pages := corruptLogPages(t, dbPath(dir))
			f, err := os.OpenFile(dbPath(dir), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, corruptPage), int64(pages[len(pages)-1]*corruptPage)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "RaftDBLogValueByteFlipped", damage: func(t *testing.T, dir string) {
			// One byte inside a value, in a live log page: nothing in the
			// page structure changes.
			data, err := os.ReadFile(dbPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			pages := corruptLogPages(t, dbPath(dir))
			id := pages[len(pages)-1]
			off := bytes.Index(data[id*corruptPage:(id+1)*corruptPage], []byte(corruptMarker))
			corruptFlip(t, dbPath(dir), int64(id*corruptPage+off+len(corruptMarker)+2), 1)
		}},
		{name: "BoltMetaPage0Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			corruptFlip(t, dbPath(dir), 16+8, 16) // inside meta 0, after the page header
		}},
		{name: "BoltMetaPage1Flipped", want: corruptRefusedOrComplete, damage: func(t *testing.T, dir string) {
			corruptFlip(t, dbPath(dir), corruptPage+16+8, 16)
		}},
		{name: "SnapshotStateTruncated", damage: func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(stateBin(dir), fi.Size()-1); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotStateEmpty", damage: func(t *testing.T, dir string) {
			if err := os.Truncate(stateBin(dir), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotStateByteFlipped", damage: func(t *testing.T, dir string) {
			fi, err := os.Stat(stateBin(dir))
			if err != nil {
				t.Fatal(err)
			}
			corruptFlip(t, stateBin(dir), fi.Size()/2, 1)
		}},
		{name: "SnapshotStateMissing", damage: func(t *testing.T, dir string) {
			if err := os.Remove(stateBin(dir)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotMetaGarbage", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(metaJSON(dir), []byte("{\x00garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotMetaEmptyObject", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(metaJSON(dir), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SnapshotMetaMissing", damage: func(t *testing.T, dir string) {
			if err := os.Remove(metaJSON(dir)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestMissing", damage: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, manifestName)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestMissingNoSnapshots", damage: func(t *testing.T, dir string) {
			for _, name := range []string{manifestName, snapshotsDir} {
				if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{name: "ManifestGarbage", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, manifestName), []byte("\x7fELF not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestEmpty", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, manifestName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ManifestNoNodeID", damage: func(t *testing.T, dir string) {
			corruptEditManifest(t, dir, func(m map[string]any) { delete(m, "node_id") })
		}},
		{name: "ManifestOtherNodeID", want: corruptForeign, opts: func(o *Options) { o.NodeID = "someone-else" }},
		{name: "ManifestOtherCluster", want: corruptForeign, opts: func(o *Options) { o.ClusterName = "other-cluster" }},
		{name: "ManifestDefaultCluster", want: corruptForeign, opts: func(o *Options) { o.ClusterName = "" }},
		{name: "ManifestNewerFormat", want: corruptForeign, damage: func(t *testing.T, dir string) {
			corruptEditManifest(t, dir, func(m map[string]any) { m["format"] = formatVersion + 1 })
		}},
		{name: "LogDoesNotJoinSnapshot", damage: func(t *testing.T, dir string) {
			corruptDeleteLogs(t, dir,
				func(first, _, _ uint64) uint64 { return first },
				func(_, _, snap uint64) uint64 { return snap + 1 })
		}},
		{name: "LogGapAfterSnapshot", damage: func(t *testing.T, dir string) {
			corruptDeleteLogs(t, dir,
				func(_, _, snap uint64) uint64 { return snap + 3 },
				func(_, _, snap uint64) uint64 { return snap + 5 })
		}},
	}

	// The undamaged copy opens with everything: each case fails for its
	// damage alone.
	t.Run("Control", func(t *testing.T) {
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		corruptCheckComplete(t, base, dir, corruptOpts())
	})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			o := corruptOpts()
			if tc.opts != nil {
				tc.opts(o)
			}
			before := corruptHashTree(t, dir)
			s, err := corruptOpen(dir, o)
			switch {
			case err == nil && tc.want == corruptRefusedOrComplete:
				s.Close()
				t.Logf("Open started despite the damage; checking every acknowledged write")
				corruptCheckComplete(t, base, dir, o)
				return
			case err == nil:
				problems := corruptDiff(t, base, s)
				s.Close()
				t.Fatalf("Open of a damaged directory succeeded; the store serves: %s", problems)
			}
			t.Logf("Open: %v", err)
			switch tc.want {
			case corruptForeign:
				if !errors.Is(err, ErrForeignDir) || errors.Is(err, ErrCorrupt) {
					t.Errorf("want ErrForeignDir, got %v", err)
				}
			default:
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("want ErrCorrupt, got %v", err)
				}
				var ce *CorruptError
				if errors.As(err, &ce) && (ce.Path == "" || ce.Reason == "") {
					t.Errorf("CorruptError without path or reason: %+v", ce)
				}
			}
			if after := corruptHashTree(t, dir); after != before {
				t.Errorf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// corruptOpen is Open that turns a panic into a test failure with a
// message, instead of taking the test binary down without saying which
// case did it.
func corruptOpen(dir string, o *Options) (s *Store, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Open panicked: %v", p)
		}
	}()
	return Open(dir, o)
}

// corruptCheckComplete opens dir and checks that every acknowledged write
// of base is there, at the acknowledged revision, and nothing more.
func corruptCheckComplete(t *testing.T, base *corruptBase, dir string, o *Options) {
	t.Helper()
	s, err := corruptOpen(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if problems := corruptDiff(t, base, s); problems != "" {
		t.Error(problems)
	}
}

// corruptDiff describes how the state s serves differs from what base
// acknowledged ("" if it does not).
func corruptDiff(t *testing.T, base *corruptBase, s *Store) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	g, err := s.Get(ctx, "k/", WithPrefix())
	if err != nil {
		return fmt.Sprintf("get: %v", err)
	}
	var problems []string
	if g.Revision != base.rev {
		problems = append(problems, fmt.Sprintf("revision %d, want %d", g.Revision, base.rev))
	}
	got := make(map[string]string)
	for _, kv := range g.KVs {
		got[kv.Key] = string(kv.Value)
	}
	var keys []string
	for k := range base.acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := got[k]; !ok {
			problems = append(problems, k+" missing")
		} else if v != base.acked[k] {
			problems = append(problems, fmt.Sprintf("%s has a different value (%q...)", k, v[:min(len(v), len(corruptMarker)+8)]))
		}
		delete(got, k)
	}
	for k := range got {
		problems = append(problems, k+" was never written")
	}
	return strings.Join(problems, "; ")
}

// TestCorruptFreshDirInterruptedFirstOpen: a first Open that wrote its
// manifest and crashed before creating raft state leaves a directory that
// opens as a new store.
func TestCorruptFreshDirInterruptedFirstOpen(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	m := &manifest{Format: formatVersion, NodeID: "fresh-node", ClusterName: defaultClusterName, Created: time.Now().UTC()}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	o := persistOpts()
	s := openTestStore(t, dir, o)
	if s.NodeID() != "fresh-node" {
		t.Fatalf("NodeID %q, want the one in the manifest", s.NodeID())
	}
	if rev := (persistW{t, ctx, s}).put("k", "v"); rev != 2 {
		t.Fatalf("first write at revision %d, want 2", rev)
	}
	s = persistReopen(t, s, dir, o)
	if g, err := s.Get(ctx, "k"); err != nil || len(g.KVs) != 1 {
		t.Fatalf("after restart: %+v, %v", g, err)
	}
	mm, err := readManifest(dir)
	if err != nil || !mm.Initialized {
		t.Fatalf("manifest after first successful Open: %+v, %v", mm, err)
	}
}

// TestCorruptInterruptedAfterBootstrap: the first Open created raft state
// but crashed before marking the manifest initialized; the state it wrote
// is kept.
func TestCorruptInterruptedAfterBootstrap(t *testing.T) {
	ctx := persistCtx(t)
	dir := t.TempDir()
	o := persistOpts()
	s := openTestStore(t, dir, o)
	rev := (persistW{t, ctx, s}).put("k", "v")
	s.Close()
	corruptEditManifest(t, dir, func(m map[string]any) { m["initialized"] = false })
	s = openTestStore(t, dir, o)
	g, err := s.Get(ctx, "k")
	if err != nil || len(g.KVs) != 1 || g.Revision != rev {
		t.Fatalf("after reopen: %+v, %v", g, err)
	}
}

// TestCorruptOpenDoesNotReadForeignFilesAsState: a raft.db that is not a
// bolt file, with no manifest, is refused, not overwritten by a new
// store.
func TestCorruptOpenDoesNotReadForeignFilesAsState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, raftDBName), []byte("not a bolt file at all, just text"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := corruptHashTree(t, dir)
	s, err := corruptOpen(dir, persistOpts())
	if err == nil {
		s.Close()
		t.Fatal("Open of a directory with a foreign raft.db succeeded")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if after := corruptHashTree(t, dir); after != before {
		t.Fatalf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestCorruptLogPageByteSweep flips single bytes all across the live bolt
// pages that hold log entries. Whatever a flip hits (bolt's page structure,
// keys, raft's encoding of the entry, the command), Open either refuses
// with ErrCorrupt, leaving the directory as it was, or starts with exactly
// the acknowledged state (a flip in unused page space or in a field that
// does not matter). It never starts with a changed or missing write.
func TestCorruptLogPageByteSweep(t *testing.T) {
	base := corruptBuild(t)
	pages := corruptLogPages(t, filepath.Join(base.dir, raftDBName))
	const step = 127
	var refused, started int
	for _, id := range pages {
		for off := 0; off < corruptPage; off += step {
			pos := int64(id*corruptPage + off)
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			corruptFlip(t, filepath.Join(dir, raftDBName), pos, 1)
			before := corruptHashTree(t, dir)
			s, err := corruptOpen(dir, corruptOpts())
			if err != nil {
				refused++
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("flip at page %d+%d: %v, want ErrCorrupt", id, off, err)
				}
				if corruptHashTree(t, dir) != before {
					t.Errorf("flip at page %d+%d: refused Open changed the directory", id, off)
				}
				continue
			}
			started++
			if problems := corruptDiff(t, base, s); problems != "" {
				t.Errorf("flip at page %d+%d: Open started with damaged data: %s", id, off, problems)
			}
			s.Close()
		}
	}
	t.Logf("%d pages, %d flips: %d refused, %d started with every write intact", len(pages), refused+started, refused, started)
}

// TestCorruptInterruptedReap: raft deletes an old snapshot's files one by
// one; a crash in between leaves an older snapshot without its data or its
// metadata next to a complete newer one. That is not damage: Open starts
// with every acknowledged write and removes the remains (found by the
// chaos harness's crash loop). The same hole in the newest snapshot is
// refused (TestCorruptDataDir: SnapshotStateMissing, SnapshotMetaMissing).
func TestCorruptInterruptedReap(t *testing.T) {
	base := corruptBuild(t)
	for _, gone := range [][]string{{"state.bin"}, {"meta.json"}, {"meta.json", "state.bin"}} {
		t.Run(strings.Join(gone, "+"), func(t *testing.T) {
			dir := t.TempDir()
			corruptCopyTree(t, base.dir, dir)
			newest, _ := corruptNewestSnapshot(t, dir)
			var old string
			for _, name := range persistSnapshots(t, dir) {
				if sd := filepath.Join(dir, snapshotsDir, name); sd != newest {
					old = sd
				}
			}
			if old == "" {
				t.Fatal("base has no older snapshot")
			}
			for _, f := range gone {
				if err := os.Remove(filepath.Join(old, f)); err != nil {
					t.Fatal(err)
				}
			}
			corruptCheckComplete(t, base, dir, corruptOpts())
			if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remains of the reaped snapshot still there: %v", err)
			}
		})
	}
}
