package accord

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/internal/raftlog"
)

// Data directories of format 1 kept the raft log in raft.db. Open moves it
// to raft-log/ (migrateLog) and records format 2. These tests make format-1
// directories out of a format-2 one (migrateToFormat1) and check that
// Open starts with every acknowledged write, whatever state an interrupted
// migration left.

// migrateToFormat1 turns the closed format-2 directory dir into format 1:
// the entries of its raft log that keep accepts (given the log's first
// index and the newest snapshot's) go into raft.db's log bucket, raft-log/
// goes, and the manifest says format 1. It returns the entries moved.
func migrateToFormat1(t *testing.T, dir string, keep func(index, first, snap uint64) bool) []*raft.Log {
	t.Helper()
	_, snapIdx := corruptNewestSnapshot(t, dir)
	entries := corruptReadLog(t, filepath.Join(dir, raftLogDir))
	first := entries[0].Index
	entries = slices.DeleteFunc(entries, func(e *raft.Log) bool { return !keep(e.Index, first, snapIdx) })
	migrateStoreBolt(t, dir, entries)
	if err := os.RemoveAll(filepath.Join(dir, raftLogDir)); err != nil {
		t.Fatal(err)
	}
	corruptEditManifest(t, dir, func(m map[string]any) { m["format"] = 1 })
	return entries
}

// migrateStoreBolt adds entries to the log bucket of dir's raft.db, as
// format 1 kept them.
func migrateStoreBolt(t *testing.T, dir string, entries []*raft.Log) {
	t.Helper()
	db, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBName)})
	if err != nil {
		t.Fatal(err)
	}
	err = db.StoreLogs(entries)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// migrateBoltLogs returns the first and last index of the log entries in
// dir's raft.db (0, 0 for none).
func migrateBoltLogs(t *testing.T, dir string) (first, last uint64) {
	t.Helper()
	db, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBName),
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if first, err = db.FirstIndex(); err == nil {
		last, err = db.LastIndex()
	}
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// migrateCheckMoved checks a directory that Open migrated (and that has
// been closed again): format 2, no log left in raft.db, no leftovers, every
// entry that was in raft.db in raft-log/ unchanged (its record is the
// encoding of the entry moved, but for its position in its batch), and no
// entry at the indexes in holes.
func migrateCheckMoved(t *testing.T, dir string, moved []*raft.Log, holes ...uint64) {
	t.Helper()
	m, err := readManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != formatVersion {
		t.Errorf("manifest says format %d after Open, want %d", m.Format, formatVersion)
	}
	if first, last := migrateBoltLogs(t, dir); last != 0 {
		t.Errorf("raft.db still holds log entries [%d, %d]", first, last)
	}
	if _, err := os.Stat(filepath.Join(dir, raftLogDir+".tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("raft-log.tmp left over: %v", err)
	}
	recs := make(map[uint64][]byte)
	segs := corruptSegments(t, dir)
	t.Logf("raft-log/ after the move: %d segments", len(segs))
	for _, s := range segs {
		for _, r := range s.recs {
			recs[r.index] = r.raw
		}
	}
	// A record's payload, unmasked, without its batch field (the move
	// stores entries in batches, AppendRecord one alone); corruptSegments
	// checked the records' checksums.
	entry := func(rec []byte) []byte {
		p := bytes.Clone(rec[corruptWALRecHdr:])
		raftlog.Mask(p)
		clear(p[corruptWALFixed-4 : corruptWALFixed])
		return p
	}
	for _, want := range moved {
		if got, ok := recs[want.Index]; !ok {
			t.Errorf("entry %d is not in raft-log/", want.Index)
		} else if !bytes.Equal(entry(got), entry(raftlog.AppendRecord(nil, want))) {
			t.Errorf("entry %d changed in the move", want.Index)
		}
	}
	for _, i := range holes {
		if _, ok := recs[i]; ok {
			t.Errorf("entry %d (in the hole below the snapshot) is in raft-log/", i)
		}
	}
}

func TestMigrateFormat1(t *testing.T) {
	base := corruptBuild(t)
	// What raft's compaction leaves in the log (TrailingLogs 2), and the
	// log of a node that installed a leader's snapshot: its old entries,
	// a hole, the entries after the snapshot.
	compacted := func(index, _, snap uint64) bool { return index+2 >= snap }
	hole := func(index, first, snap uint64) bool { return index < first+3 || index > snap }

	t.Run("Compacted", func(t *testing.T) {
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		moved := migrateToFormat1(t, dir, compacted)
		corruptCheckComplete(t, base, dir, corruptOpts())
		migrateCheckMoved(t, dir, moved)
	})
	t.Run("HoleBelowSnapshot", func(t *testing.T) {
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		moved := migrateToFormat1(t, dir, hole)
		corruptCheckComplete(t, base, dir, corruptOpts())
		_, snapIdx := corruptNewestSnapshot(t, dir)
		if moved[2].Index+1 >= snapIdx {
			t.Fatalf("no hole: moved %d, %d, %d, ... snapshot at %d", moved[0].Index, moved[1].Index, moved[2].Index, snapIdx)
		}
		migrateCheckMoved(t, dir, moved, moved[2].Index+1, snapIdx)
	})
	t.Run("InterruptedBeforeRename", func(t *testing.T) {
		// A crash while raft-log.tmp was being filled.
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		moved := migrateToFormat1(t, dir, compacted)
		tmp := filepath.Join(dir, raftLogDir+".tmp")
		l, err := raftlog.Open(tmp, raftlog.Options{SegmentSize: corruptSegmentSize, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.StoreLogs(moved[:len(moved)/2]); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// And the last segment torn, as the crash left it.
		segs, err := filepath.Glob(filepath.Join(tmp, corruptWALPattern))
		if err != nil || len(segs) == 0 {
			t.Fatalf("raft-log.tmp: %v, %v", segs, err)
		}
		corruptWriteAt(t, segs[len(segs)-1], corruptWALHeader, []byte("torn"))
		corruptCheckComplete(t, base, dir, corruptOpts())
		migrateCheckMoved(t, dir, moved)
	})
	t.Run("InterruptedBeforeManifest", func(t *testing.T) {
		// A crash after raft-log.tmp became raft-log/, before the
		// manifest said format 2: raft.db still has every entry, and
		// raft-log/ is done again from it.
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		moved := migrateToFormat1(t, dir, compacted)
		corruptWriteLog(t, filepath.Join(dir, raftLogDir), moved)
		corruptCheckComplete(t, base, dir, corruptOpts())
		migrateCheckMoved(t, dir, moved)
	})
	t.Run("InterruptedBeforeBoltCleanup", func(t *testing.T) {
		// A crash after the manifest said format 2, before the entries
		// left raft.db: format 2, with stale entries in raft.db.
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		_, snapIdx := corruptNewestSnapshot(t, dir)
		entries := corruptReadLog(t, filepath.Join(dir, raftLogDir))
		moved := slices.DeleteFunc(entries, func(e *raft.Log) bool { return !compacted(e.Index, 0, snapIdx) })
		migrateStoreBolt(t, dir, moved)
		if _, last := migrateBoltLogs(t, dir); last == 0 {
			t.Fatal("no entries in raft.db")
		}
		corruptCheckComplete(t, base, dir, corruptOpts())
		migrateCheckMoved(t, dir, moved)
	})
	t.Run("DamagedRefusedUnchanged", func(t *testing.T) {
		// Damage in a format-1 log is refused before anything moves.
		dir := t.TempDir()
		corruptCopyTree(t, base.dir, dir)
		moved := migrateToFormat1(t, dir, compacted)
		var cmd *raft.Log
		for _, e := range moved {
			if e.Type == raft.LogCommand && bytes.Contains(e.Data, []byte("vvvv")) {
				cmd = e
			}
		}
		if cmd == nil {
			t.Fatal("no command entry with a value")
		}
		changed := *cmd
		changed.Data = bytes.Replace(bytes.Clone(cmd.Data), []byte("vvvv"), []byte("vvvw"), 1)
		migrateStoreBolt(t, dir, []*raft.Log{&changed})
		before := corruptHashTree(t, dir)
		s, err := corruptOpen(dir, corruptOpts())
		if err == nil {
			s.Close()
			t.Fatal("Open of a format-1 directory with a changed log entry succeeded")
		}
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Path != filepath.Join(dir, raftDBName) {
			t.Errorf("Open: %v; want ErrCorrupt naming raft.db", err)
		}
		if after := corruptHashTree(t, dir); after != before {
			t.Errorf("refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// migrateLogToSegmentV1 rewrites the raft log of the closed directory dir
// as the raft log of segment format version 1 wrote it: the same records
// without their batch field, and a newest file of 12 bytes (first index
// of the newest segment, CRC-32C). It returns the segment paths.
func migrateLogToSegmentV1(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	segs := corruptSegments(t, dir)
	for _, sg := range segs {
		data, err := os.ReadFile(sg.path)
		if err != nil {
			t.Fatal(err)
		}
		out := bytes.Clone(data[:corruptWALHeader])
		binary.BigEndian.PutUint32(out[8:], 1)
		binary.BigEndian.PutUint32(out[32:], crc32.Checksum(out[:32], corruptCastagnoli))
		for _, r := range sg.recs {
			p := bytes.Clone(r.raw[corruptWALRecHdr:])
			raftlog.Mask(p)
			p = append(p[:corruptWALFixed-4], p[corruptWALFixed:]...)
			raftlog.Mask(p)
			out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
			out = binary.BigEndian.AppendUint32(out, crc32.Checksum(p, corruptCastagnoli))
			out = append(out, p...)
		}
		out = append(out, make([]byte, sg.size-int64(len(out)))...)
		if err := os.WriteFile(sg.path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, sg.path)
	}
	newest := binary.BigEndian.AppendUint64(nil, segs[len(segs)-1].first)
	newest = binary.BigEndian.AppendUint32(newest, crc32.Checksum(newest, corruptCastagnoli))
	if err := os.WriteFile(filepath.Join(dir, raftLogDir, "newest"), newest, 0o600); err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestMigrateLogSegmentV1: data directories of format 2 written before the
// raft log marked batches hold segments of version 1. They open with every
// acknowledged write, stay as they are, and the log goes on in segments of
// the current version.
func TestMigrateLogSegmentV1(t *testing.T) {
	base := corruptBuild(t)
	dir := t.TempDir()
	corruptCopyTree(t, base.dir, dir)
	old := migrateLogToSegmentV1(t, dir)
	before := make(map[string][]byte)
	for _, p := range old {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		before[p] = b
	}
	corruptCheckComplete(t, base, dir, corruptOpts())
	version := func(path string) uint32 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint32(b[8:])
	}
	paths, err := filepath.Glob(filepath.Join(dir, raftLogDir, corruptWALPattern))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	if newest := paths[len(paths)-1]; version(newest) != 2 || before[newest] != nil {
		t.Errorf("newest segment %s after Open has version %d, want a new one of version 2", newest, version(newest))
	}
	for p, b := range before {
		now, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err == nil && !bytes.Equal(now, b) {
			t.Errorf("version-1 segment %s changed", p)
		}
	}
	corruptCheckComplete(t, base, dir, corruptOpts())
}
