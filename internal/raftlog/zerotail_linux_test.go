//go:build linux

package raftlog_test

import (
	"path/filepath"
	"syscall"
	"testing"

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
				t.Skip(err)
			}
			limit := old
			limit.Cur = uint64(recs[len(recs)-1].end + 1)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
				t.Skip(err)
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
