//go:build ignore

// format2_gen writes format2.tar.gz: a data directory of format 2 (accord
// 0.2: the keyspace in memory, whole ACCORDSNAP snapshots in snapshots/),
// made by accord 0.2 itself, and expect.json, what that store served
// before it closed. TestMigrateFormat2 opens a copy with the current code.
//
// The directory holds keys with history, deletes, a lease with keys
// attached, a compaction, one snapshot (taken by raft once
// SnapshotThreshold entries were written) and log entries after that
// snapshot. raft asked to trim the log to 4 entries before the snapshot
// (TrailingLogs), but 0.2's log removes whole segments only and this one
// has a single segment: it still starts at index 1. The test also cuts it
// (migrate2Compact), so that only the snapshot holds the early entries.
//
// To regenerate it, run this file with the code of commit 688c54f (the
// last commit of accord 0.2, format 2), from the repository root:
//
//	git worktree add /tmp/accord-0.2 688c54f
//	cp testdata/format2_gen.go /tmp/accord-0.2/
//	(cd /tmp/accord-0.2 && go run format2_gen.go -out "$PWD/testdata/format2.tar.gz")
//	git worktree remove --force /tmp/accord-0.2
//
// The content differs from one run to the next (lease IDs, timestamps, the
// index raft snapshots at); the test reads what to expect from expect.json.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/accordkv/accord"
)

// expect is what the store served; the test reads the same fields.
type expect struct {
	NodeID      string            `json:"node_id"`
	ClusterName string            `json:"cluster_name"`
	Revision    int64             `json:"revision"`
	CompactRev  int64             `json:"compact_revision"`
	Lease       int64             `json:"lease"`
	LeaseTTLMs  int64             `json:"lease_granted_ttl_ms"`
	LeaseKeys   []string          `json:"lease_keys"`
	SnapIndex   uint64            `json:"snapshot_index"`
	States      map[int64][]kvOut `json:"states"` // revision -> every key at it, from CompactRev to Revision
}

type kvOut struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease"`
}

func main() {
	out := flag.String("out", "format2.tar.gz", "the archive to write")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "format2-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "data")
	e, err := generate(dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := writeArchive(*out, dir, e); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s: revision %d, compacted at %d, snapshot at index %d\n", *out, e.Revision, e.CompactRev, e.SnapIndex)
}

func generate(dir string) (*expect, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const threshold = 30
	o := &accord.Options{
		NodeID:            "format2-node",
		ClusterName:       "format2-cluster",
		ElectionTimeout:   50 * time.Millisecond,
		SnapshotThreshold: threshold,
		SnapshotInterval:  20 * time.Millisecond,
		TrailingLogs:      4,
	}
	s, err := accord.Open(dir, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	e := &expect{NodeID: o.NodeID, ClusterName: o.ClusterName, States: map[int64][]kvOut{}}
	var failed error
	put := func(k, v string, opts ...accord.OpOption) {
		if failed == nil {
			_, failed = s.Put(ctx, k, []byte(v), opts...)
		}
	}
	del := func(k string) {
		if failed == nil {
			_, failed = s.Delete(ctx, k)
		}
	}
	// Before the snapshot: history, deletes, a lease, a compaction.
	for i := 1; i <= 6; i++ {
		put("a", fmt.Sprintf("a%d", i))
	}
	put("b", "b1")
	put("b", "b2")
	put("d", "d1")
	del("d")
	put("e", "e1")
	put("e", "e2")
	del("e")
	put("e", "e3")
	if failed != nil {
		return nil, failed
	}
	lease, err := s.Grant(ctx, time.Hour)
	if err != nil {
		return nil, err
	}
	e.Lease, e.LeaseTTLMs = int64(lease), time.Hour.Milliseconds()
	put("leased/1", "held by the lease", accord.WithLease(lease))
	put("a", "a7")
	g, err := s.Get(ctx, "a")
	if err != nil {
		return nil, err
	}
	// Compact away a1..a3 (and d's first life).
	e.CompactRev = g.KVs[0].CreateRevision + 3
	if err := s.Compact(ctx, e.CompactRev); err != nil {
		return nil, err
	}
	for i := 0; i < threshold; i++ {
		put(fmt.Sprintf("fill/%02d", i), fmt.Sprintf("fill value %d", i))
	}
	put("c", "c1")
	if failed != nil {
		return nil, failed
	}
	if e.SnapIndex, err = waitSnapshot(ctx, dir); err != nil {
		return nil, err
	}
	// After the snapshot: entries only the log holds (fewer than
	// threshold, so raft takes no second snapshot).
	put("a", "a8")
	put("f", "f1")
	del("b")
	put("leased/2", "also held", accord.WithLease(lease))
	put("c", "c2")
	if failed != nil {
		return nil, failed
	}
	g, err = s.Get(ctx, "a")
	if err != nil {
		return nil, err
	}
	e.Revision = g.Revision
	for rev := e.CompactRev; rev <= e.Revision; rev++ {
		g, err := s.Get(ctx, "\x00", accord.WithFromKey(), accord.WithRev(rev))
		if err != nil {
			return nil, fmt.Errorf("get at %d: %w", rev, err)
		}
		kvs := []kvOut{}
		for _, kv := range g.KVs {
			kvs = append(kvs, kvOut{kv.Key, string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version, int64(kv.Lease)})
		}
		e.States[rev] = kvs
	}
	st, err := s.TimeToLive(ctx, lease, accord.WithAttachedKeys())
	if err != nil {
		return nil, err
	}
	e.LeaseKeys = st.Keys
	if n, _ := snapshotIndex(dir); n != e.SnapIndex {
		return nil, fmt.Errorf("a second snapshot (at %d) was taken", n)
	}
	return e, s.Close()
}

// waitSnapshot waits for raft's first snapshot and returns its index.
func waitSnapshot(ctx context.Context, dir string) (uint64, error) {
	for {
		if n, err := snapshotIndex(dir); err != nil || n > 0 {
			return n, err
		}
		select {
		case <-ctx.Done():
			return 0, errors.New("no snapshot taken")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// snapshotIndex returns the index of the only complete snapshot in dir (0:
// none yet).
func snapshotIndex(dir string) (uint64, error) {
	metas, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
	var done []uint64
	for _, m := range metas {
		if filepath.Ext(filepath.Dir(m)) == ".tmp" {
			continue
		}
		b, err := os.ReadFile(m)
		if err != nil {
			return 0, err
		}
		var meta struct{ Index uint64 }
		if err := json.Unmarshal(b, &meta); err != nil {
			return 0, err
		}
		done = append(done, meta.Index)
	}
	switch len(done) {
	case 0:
		return 0, nil
	case 1:
		return done[0], nil
	}
	return 0, fmt.Errorf("%d snapshots", len(done))
}

// writeArchive writes dir (as data/) and expect.json into a gzipped tar.
// The disk guard's reserve file is left out: it is no state, and Open
// allocates it again.
func writeArchive(out, dir string, e *expect) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	eb, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := add("expect.json", 0o600, eb); err != nil {
		return err
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		name := filepath.ToSlash(filepath.Join("data", rel))
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, ModTime: time.Unix(0, 0), Typeflag: tar.TypeDir})
		}
		if d.Name() == "disk.reserve" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return add(name, 0o600, b)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
