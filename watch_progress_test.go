package accord

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWatchProgressRequests: a progress answer comes after every event up
// to its revision, whether the watcher is idle, synced with a backlog, or
// catching up from history.
func TestWatchProgressRequests(t *testing.T) {
	s := openTestStore(t, "", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req := make(chan struct{}, 1)
	wch := s.Watch(ctx, "k/", WithPrefix(), WithProgressRequests(req))

	// Idle, only unrelated writes: the answer is the current revision.
	for i := range 3 {
		if _, err := s.Put(ctx, fmt.Sprintf("other%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	req <- struct{}{}
	r := <-wch
	if !r.IsProgressNotify() || r.Revision != s.ks.Rev() {
		t.Fatalf("idle progress: %+v, want revision %d", r, s.ks.Rev())
	}

	// A backlog far beyond the watcher's buffer, unread: it falls back to
	// catch-up. The answer must follow every event.
	const n = 3 * watchBuffer
	var last int64
	for i := range n {
		p, err := s.Put(ctx, fmt.Sprintf("k/%d", i), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		last = p.Revision
	}
	req <- struct{}{}
	seen := 0
	for {
		var r WatchResponse
		select {
		case r = <-wch:
		case <-ctx.Done():
			t.Fatalf("no progress answer; %d of %d events seen", seen, n)
		}
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.IsProgressNotify() {
			if seen != n || r.Revision < last {
				t.Fatalf("progress at %d after %d of %d events (last revision %d)", r.Revision, seen, n, last)
			}
			break
		}
		seen += len(r.Events)
	}
}
