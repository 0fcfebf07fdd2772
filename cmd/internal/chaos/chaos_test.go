package chaos

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// TestChaos is the short, seeded version of the harness that CI runs:
// runs on 3 and 5 members with every fault kind, and a crash loop. It
// fails on any violation or lost acknowledged write, and names the
// directory holding the failing run's history.
//
//	ACCORD_CHAOS_SEED=n   replay a schedule (default 1)
func TestChaos(t *testing.T) {
	seed := uint64(1)
	if v := os.Getenv("ACCORD_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ACCORD_CHAOS_SEED=%q: %v", v, err)
		}
		seed = n
	}
	ctx := t.Context()
	bin, err := Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := Config{
		Accordd:  bin,
		Duration: 25 * time.Second,
		Logf:     t.Logf,
	}
	total := newReport()
	check := func(name string, rep *Report, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		total.Add(rep)
		if rep.Failed() {
			var b strings.Builder
			rep.Print(&b)
			t.Errorf("%s found problems:\n%s", name, b.String())
		}
	}
	for i, members := range []int{3, 3, 5} {
		cfg := base
		cfg.Seed, cfg.Members = seed+uint64(i), members
		rep, err := Run(ctx, cfg)
		check("run "+strconv.Itoa(i), rep, err)
	}
	cfg := base
	cfg.Seed, cfg.Members, cfg.CrashKills = seed, 3, 20
	rep, err := CrashLoop(ctx, cfg)
	check("crash loop", rep, err)
	if rep.Compactions == 0 || rep.Defrags == 0 {
		t.Errorf("the crash loop's maintenance did nothing: %d compactions, %d defrags", rep.Compactions, rep.Defrags)
	}
	if rep.KVChecked != cfg.Members {
		t.Errorf("kv.db of %d members checked, want %d", rep.KVChecked, cfg.Members)
	}

	var b strings.Builder
	total.Print(&b)
	t.Logf("figures:\n%s", b.String())
	if total.Faults[FaultKill]+total.Faults[FaultKillLeader] == 0 || total.Kills < 20 {
		t.Errorf("too few kills: %d", total.Kills)
	}
	for _, f := range AllFaults {
		if total.Faults[f] == 0 {
			t.Errorf("no %s fault was injected", f)
		}
	}
}
