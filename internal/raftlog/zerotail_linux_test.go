//go:build linux

package raftlog_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/raftlog"
)

// TestTruncationKeepsSegmentSize: a segment must have the size its header
// gives at every moment of a truncation, or a process that dies at the
// wrong moment leaves a log that Open refuses. A file size limit just
// above the log's records makes any attempt to shrink the segment and grow
// it back fail halfway, as such a death would (Go ignores SIGXFSZ, so the
// syscall returns EFBIG). The test is not parallel: the limit is the
// process's.
func TestTruncationKeepsSegmentSize(t *testing.T) {
	for _, op := range []string{"DeleteRange", "StoreLogs"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, small)
			store(t, l, 1, 20, 1, 20)
			path := filepath.Join(dir, segName(1))
			_, recs, _ := parseSeg(t, path)

			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
			limit := old
			limit.Cur = uint64(recs[len(recs)-1].end + 1)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
				t.Fatal(err)
			}
			var err error
			if op == "DeleteRange" {
				err = l.DeleteRange(10, 20)
			} else {
				err = l.StoreLogs(mkEntries(10, 10, 2))
			}
			if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
				t.Fatal(rerr)
			}
			if err != nil {
				t.Logf("%s under the limit: %v", op, err)
			}
			l.Close()

			l2, oerr := raftlog.Open(dir, small)
			if oerr != nil {
				t.Fatalf("Open after an interrupted truncation: %v", oerr)
			}
			defer l2.Close()
			last, _ := l2.LastIndex()
			if last != 9 && last != 10 && last != 20 {
				t.Fatalf("LastIndex %d", last)
			}
			checkRange(t, l2, 1, 9, 1)
		})
	}
}

// TestFailedWriteLeavesPartOfBatch: a write that fails halfway through a
// batch (here at a file size limit, as on a full disk) may leave whole
// records of it on disk. They were never acknowledged: Open after a crash
// cuts the batch whole, and a later StoreLogs zeroes them before it writes
// anything. Not parallel: the limit is the process's.
func TestFailedWriteLeavesPartOfBatch(t *testing.T) {
	for _, then := range []string{"crash", "retry"} {
		t.Run(then, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, roomy)
			store(t, l, 1, 20, 1, 5)
			path := filepath.Join(dir, segName(1))
			_, recs, _ := parseSeg(t, path)
			end := recs[len(recs)-1].end
			// 21..25, wide: the limit falls inside 24's record.
			var before int64
			for _, e := range wideEntries(21, 23, 1) {
				before += int64(len(encRecord(encPayload(e))))
			}
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
			limit := old
			limit.Cur = uint64(end + before + 600)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
				t.Fatal(err)
			}
			err := l.StoreLogs(wideEntries(21, 25, 1))
			if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
				t.Fatal(rerr)
			}
			if err == nil {
				t.Fatal("StoreLogs past the file size limit succeeded")
			}
			checkBounds(t, l, 1, 20)
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if allZero(b[end : end+before]) {
				t.Fatal("the failed write left nothing: the test does not test")
			}
			if then == "retry" {
				store(t, l, 21, 22, 2, 2)
				l = reopen(t, l, dir, roomy)
				checkBounds(t, l, 1, 22)
				checkRange(t, l, 1, 20, 1)
				checkRange(t, l, 21, 22, 2)
				closeLog(t, l)
				checkFiles(t, dir)
				return
			}
			l.Close() // as a crash would: nothing zeroed
			expectTorn(t, dir, path, end, 20, roomy, func(i uint64) *raft.Log { return mkEntry(i, 1) })
		})
	}
}
