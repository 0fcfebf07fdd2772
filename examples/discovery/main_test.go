package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
	)
}

// The demo as `go run` runs it. A killed instance is removed after its TTL:
// not at once (it was not deregistered, and its lease was renewed at most a
// third of a TTL before the kill), and not much later than the TTL. The
// client fails over meanwhile and then balances over the survivors.
func TestRun(t *testing.T) {
	const ttl = 2 * time.Second
	var out bytes.Buffer
	res, err := run(t.Context(), &out, t.TempDir(), config{instances: 3, ttl: ttl, requests: 6})
	if err != nil {
		t.Fatalf("run: %v\noutput so far:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	if res.killed != "echo-2" {
		t.Fatalf("killed %q", res.killed)
	}
	if lo, hi := 2*ttl/3-100*time.Millisecond, ttl+2*time.Second; res.removedAfter < lo || res.removedAfter > hi {
		t.Errorf("removed %v after the kill, want between %v and %v (TTL %v)", res.removedAfter, lo, hi, ttl)
	}
	if res.failovers == 0 {
		t.Error("no request failed over from the dead instance while it was listed")
	}
	if want := map[string]int{"echo-1": 3, "echo-3": 3}; len(res.lastRound) != 2 || res.lastRound["echo-1"] != 3 || res.lastRound["echo-3"] != 3 {
		t.Errorf("after the removal, requests went to %v, want %v", res.lastRound, want)
	}

	want := regexp.MustCompile(`^resolved 3 instances: echo-1 echo-2 echo-3
round-robin:
  request 1: hello from echo-1
  request 2: hello from echo-2
  request 3: hello from echo-3
  request 4: hello from echo-1
  request 5: hello from echo-2
  request 6: hello from echo-3
killed echo-2: it no longer serves nor renews its lease \(TTL 2s\)
echo-2 removed from the list when its lease expired, .+ after the kill
meanwhile \d+ requests were served, \d+ of them after failing over from echo-2
round-robin:
(  request \d: hello from echo-[13]
){6}$`)
	if !want.MatchString(out.String()) {
		t.Errorf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
}

func TestRealMainBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-nosuchflag"}, {"-instances", "1"}} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit code %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("%v: stderr does not name the problem:\n%s", args, stderr.String())
		}
	}
}
