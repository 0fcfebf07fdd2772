package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
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

// The demo as `go run` runs it: it fails by itself if a replica does not
// see the change within a second.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, t.TempDir(), 0); err != nil {
		t.Fatalf("run: %v\noutput so far:\n%s", err, out.String())
	}
	want := regexp.MustCompile(`^r1 serving http://127\.0\.0\.1:\d+
r2 serving http://127\.0\.0\.1:\d+
r3 serving http://127\.0\.0\.1:\d+
cluster of 3 formed by gossip
PUT r1/flags/new-checkout true: revision \d+
  r1 sees new-checkout=true \(after .+\)
  r2 sees new-checkout=true \(after .+\)
  r3 sees new-checkout=true \(after .+\)
PUT r3/flags/new-checkout false: revision \d+
  r1 sees new-checkout=false \(after .+\)
  r2 sees new-checkout=false \(after .+\)
  r3 sees new-checkout=false \(after .+\)
shutting down
$`)
	if !want.MatchString(out.String()) {
		t.Errorf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
}

// The replicas form one cluster of three voters by gossip; a flag changed
// through one replica's HTTP endpoint is seen by every replica's HTTP
// endpoint within a second; concurrent changes of different flags through
// different replicas are all kept.
func TestFlagSeenByAllWithinASecond(t *testing.T) {
	ctx := t.Context()
	c, err := startCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()

	members, err := c.replicas[0].store.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range members {
		if m.IsLearner {
			t.Errorf("member %s is a learner", m.Name)
		}
		names = append(names, m.Name)
	}
	if len(members) != 3 {
		t.Fatalf("members: %v, want the three replicas", names)
	}

	// One change, through r2, seen by all three within a second of the PUT
	// returning.
	if _, err := c.setFlag(ctx, 1, "dark-mode", true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for i := range c.replicas {
		if err := c.waitFlag(ctx, i, "dark-mode", true, deadline); err != nil {
			t.Error(err)
		}
	}

	// Concurrent changes of three flags through three replicas: the
	// compare-and-set in each replica's handler loses none of them.
	var wg sync.WaitGroup
	errs := make([]error, len(c.replicas))
	for i := range c.replicas {
		wg.Go(func() {
			_, errs[i] = c.setFlag(ctx, i, fmt.Sprintf("flag-%d", i), true)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(time.Second)
	for i := range c.replicas {
		for _, name := range []string{"dark-mode", "flag-0", "flag-1", "flag-2"} {
			if err := c.waitFlag(ctx, i, name, true, deadline); err != nil {
				t.Error(err)
			}
		}
	}
	got, err := c.flags(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Flags) != 4 || got.Error != "" {
		t.Errorf("flags on r3: %+v, want exactly the four set", got)
	}
}

// A value that does not decode (written by some other tool) is reported
// by GET /flags while the last good flags keep being served, and a PUT
// repairs it.
func TestBadValueKeepsLastGoodFlags(t *testing.T) {
	ctx := t.Context()
	c, err := startCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.setFlag(ctx, 0, "a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.replicas[0].store.Put(ctx, flagsKey, []byte(`{"a": "yes"}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.flags(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got.Error != "" {
			if !got.Flags["a"] || !strings.Contains(got.Error, "decode") {
				t.Fatalf("with a bad value: %+v, want the last good flags and the decode error", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad value never reported: %+v", got)
		}
		<-time.After(time.Millisecond)
	}
	if _, err := c.setFlag(ctx, 1, "b", true); err != nil {
		t.Fatal(err)
	}
	if err := c.waitFlag(ctx, 2, "b", true, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := c.flags(ctx, 2)
	if err != nil || got.Error != "" || !got.Flags["a"] {
		t.Fatalf("after repair: %+v %v", got, err)
	}
}

func TestRealMainBadFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"-nosuchflag"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "nosuchflag") {
		t.Errorf("stderr does not name the bad flag:\n%s", stderr.String())
	}
}
