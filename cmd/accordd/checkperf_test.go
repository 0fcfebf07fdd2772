package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// progressBar matches etcdctl's progress bar ("12 / 60 [--->___] 20.00% 1
// p/s"), printed without newlines before the verdict.
var progressBar = regexp.MustCompile(`\d+ / \d+ \[[->_]*\] +[0-9.]+% +[?0-9]+ p/s`)

// TestCheckPerf runs `etcdctl check perf --load=s` (60 s, fixed by
// etcdctl) against one accordd with etcd's default election timeout and
// fsync on, as an operator would on a fresh node. It runs against a real
// process (this package's tests build accordd without -race), because
// etcdctl judges the single slowest request.
func TestCheckPerf(t *testing.T) {
	t.Parallel()
	client := "http://127.0.0.1:" + freePort(t)
	p := startProc(t, "perf", t.TempDir(), nil,
		"--name=perf", "--data-dir=perf.accord",
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls=http://127.0.0.1:"+freePort(t))
	waitFor(t, 30*time.Second, "accordd serves", func() (bool, string) {
		out, err := ctl(client, "endpoint", "health")
		return err == nil, out
	})
	run := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, etcdctlBin, "--endpoints="+client, "check", "perf", "--load=s")
		cmd.Env = []string{"ETCDCTL_API=3"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var out string
	for attempt := 1; ; attempt++ {
		start := time.Now()
		o, err := run()
		out = progressBar.ReplaceAllString(o, "")
		t.Logf("check perf --load=s (attempt %d) took %v:\n%s", attempt, time.Since(start).Round(time.Millisecond), tail(out, 6))
		if err == nil {
			break
		}
		// The verdict rests on the single slowest request, which a loaded
		// 2-core CI machine can push past 0.5 s now and then: one more
		// try, for that only; errors and low throughput fail at once.
		latencyOnly := strings.Contains(out, "PASS: Throughput is ") && !strings.Contains(out, "FAIL: ") &&
			(strings.Contains(out, "Slowest request took too long") || strings.Contains(out, "Stddev too high"))
		if attempt == 2 || !latencyOnly {
			t.Fatalf("check perf: %v\n%s", err, tail(out, 10))
		}
	}
	for _, re := range []string{
		`(?m)^PASS: Throughput is \d+ writes/s$`,
		`(?m)^PASS: Slowest request took [0-9.]+s$`,
		`(?m)^PASS: Stddev is [0-9.]+s$`,
		`(?m)^PASS$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("check perf output lacks %s:\n%s", re, out)
		}
	}
	// It cleans up after itself.
	if got := mustCtl(t, client, "get", "--prefix", "/etcdctl-check-perf/", "--keys-only"); got != "" {
		t.Errorf("check perf left keys behind: %q", got)
	}
	p.stop()
}
