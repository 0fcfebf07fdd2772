package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// faulter injects one fault at a time while the clients run: it applies
// the fault, holds it, heals it, waits until every member serves again
// (a member that does not within Config.RecoverTimeout is a violation),
// pauses, and goes on with the next kind. Kinds come in cycles: each
// cycle is a seeded permutation of Config.Faults (member-add before
// member-remove), so a run of a few cycles injects every kind.
type faulter struct {
	c   *cluster
	cfg *Config
	rng *rand.Rand
	rep *Report
	rec *recorder

	mu  sync.Mutex // guards log
	log []faultRecord
}

func (f *faulter) records() []faultRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func (f *faulter) run(ctx context.Context, stopAt time.Time) {
	var cycle []string
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		if len(cycle) == 0 {
			cycle = f.newCycle()
		}
		kind := cycle[0]
		cycle = cycle[1:]
		f.inject(ctx, kind, stopAt)
		pace(ctx, min(between(f.rng, f.cfg.FaultGapMin, f.cfg.FaultGapMax), max(time.Until(stopAt), 0)))
	}
}

func (f *faulter) newCycle() []string {
	cycle := slices.Clone(f.cfg.Faults)
	f.rng.Shuffle(len(cycle), func(i, j int) { cycle[i], cycle[j] = cycle[j], cycle[i] })
	a, r := slices.Index(cycle, FaultMemberAdd), slices.Index(cycle, FaultMemberRemove)
	if a >= 0 && r >= 0 && r < a {
		cycle[a], cycle[r] = cycle[r], cycle[a]
	}
	return cycle
}

// between returns a random duration in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// inject applies one fault of the given kind, holds it, heals it and
// waits for the cluster to serve again.
func (f *faulter) inject(ctx context.Context, kind string, stopAt time.Time) {
	hold := between(f.rng, f.cfg.FaultHoldMin, f.cfg.FaultHoldMax)
	// Draw every random number of this fault up front, so that the
	// schedule does not depend on which branch timing takes.
	local := rand.New(rand.NewPCG(f.rng.Uint64(), f.rng.Uint64()))
	start := f.rec.now()
	detail, done := f.apply(ctx, kind, hold, local)
	if done == "" {
		return
	}
	f.rep.fault(done)
	f.c.healAll()
	f.mu.Lock()
	f.log = append(f.log, faultRecord{Kind: done, Detail: detail, Start: start, End: f.rec.now()})
	f.mu.Unlock()
	f.cfg.Logf("  fault %-15s %s", done, detail)
	f.c.waitAllServing(ctx, f.cfg.RecoverTimeout, done+" ("+detail+")")
}

// apply injects the fault and, for faults that last, holds it; healing
// is the caller's. It returns a description and the kind actually
// injected ("" if none could be).
func (f *faulter) apply(ctx context.Context, kind string, hold time.Duration, rng *rand.Rand) (string, string) {
	c := f.c
	members := c.live()
	if len(members) == 0 {
		return "", ""
	}
	leader := c.leader(ctx)
	others := func(n *node) []*node {
		return slices.DeleteFunc(slices.Clone(members), func(m *node) bool { return m == n })
	}
	switch kind {
	case FaultKill, FaultKillLeader:
		n := pick(rng, members)
		if kind == FaultKillLeader {
			if leader == nil {
				return "", ""
			}
			n = leader
		}
		if !n.kill() {
			return "", ""
		}
		c.rep.addKills(1)
		pace(ctx, hold)
		return fmt.Sprintf("%s killed for %v", n.name, hold.Round(time.Millisecond)), kind

	case FaultPause, FaultPauseLeader:
		n := pick(rng, members)
		if kind == FaultPauseLeader {
			if leader == nil {
				return "", ""
			}
			n = leader
		}
		d := time.Duration(float64(f.cfg.ElectionTimeout) * (1.5 + 8.5*rng.Float64()))
		if err := n.pause(); err != nil {
			return "", ""
		}
		pace(ctx, d)
		n.resume()
		return fmt.Sprintf("%s stopped for %v", n.name, d.Round(time.Millisecond)), kind

	case FaultIsolateLeader:
		if leader == nil {
			return "", ""
		}
		mode := f.partition([]*node{leader}, others(leader), rng)
		pace(ctx, hold)
		return fmt.Sprintf("%s cut off (%s) for %v", leader.name, mode, hold.Round(time.Millisecond)), kind

	case FaultPartition:
		if len(members) < 2 {
			return "", ""
		}
		shuffled := slices.Clone(members)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		k := 1 + rng.IntN(max((len(members)-1)/2, 1))
		minority, majority := shuffled[:k], shuffled[k:]
		mode := f.partition(minority, majority, rng)
		pace(ctx, hold)
		return fmt.Sprintf("%v | %v (%s, leader %s) for %v", names(minority), names(majority), mode, nameOf(leader), hold.Round(time.Millisecond)), kind

	case FaultBlackhole:
		faults := map[link]linkFault{}
		var what string
		switch v := rng.IntN(3); {
		case v == 0 && leader != nil:
			for _, m := range others(leader) {
				faults[link{leader.idx, m.idx}] = linkFault{Hold: true}
			}
			what = fmt.Sprintf("%s -> everyone held", leader.name)
		case v == 1 && leader != nil:
			for _, m := range others(leader) {
				faults[link{m.idx, leader.idx}] = linkFault{Hold: true}
			}
			what = fmt.Sprintf("everyone -> %s held", leader.name)
		default:
			a := pick(rng, members)
			b := pick(rng, others(a))
			faults[link{a.idx, b.idx}] = linkFault{Hold: true}
			what = fmt.Sprintf("%s -> %s held", a.name, b.name)
		}
		c.net.set(faults)
		pace(ctx, hold)
		return fmt.Sprintf("%s for %v", what, hold.Round(time.Millisecond)), kind

	case FaultDelay:
		d := time.Duration(float64(f.cfg.ElectionTimeout) * (0.1 + 0.6*rng.Float64()))
		lf := linkFault{Delay: d, Jitter: d / 2}
		faults := map[link]linkFault{}
		var what string
		if rng.IntN(2) == 0 {
			for _, a := range members {
				for _, b := range others(a) {
					faults[link{a.idx, b.idx}] = lf
				}
			}
			what = "every link"
		} else {
			n := pick(rng, members)
			for _, m := range others(n) {
				faults[link{n.idx, m.idx}] = lf
				faults[link{m.idx, n.idx}] = lf
			}
			what = n.name + "'s links"
		}
		c.net.set(faults)
		pace(ctx, hold)
		return fmt.Sprintf("%v+%v on %s for %v", d.Round(time.Millisecond), (d / 2).Round(time.Millisecond), what, hold.Round(time.Millisecond)), kind

	case FaultDrop:
		n := pick(rng, members)
		if leader != nil && rng.IntN(2) == 0 {
			n = leader
		}
		lf := linkFault{DropProb: 0.02 + 0.18*rng.Float64(), StallProb: 0.05, StallMax: f.cfg.ElectionTimeout}
		faults := map[link]linkFault{}
		for _, m := range others(n) {
			faults[link{n.idx, m.idx}] = lf
			faults[link{m.idx, n.idx}] = lf
		}
		c.net.set(faults)
		pace(ctx, hold)
		return fmt.Sprintf("%s's links drop %.0f%% of chunks, stall 5%% for %v", n.name, lf.DropProb*100, hold.Round(time.Millisecond)), kind

	case FaultMemberAdd, FaultMemberRemove:
		if len(members) > f.cfg.Members {
			n := pick(rng, members)
			if err := c.removeMember(ctx, n); err != nil {
				f.cfg.Logf("  member remove %s failed: %v", n.name, err)
				return "", ""
			}
			return fmt.Sprintf("removed %s (leader was %s)", n.name, nameOf(leader)), FaultMemberRemove
		}
		if kind == FaultMemberRemove {
			return "", "" // the add of this cycle failed: keep the size
		}
		n, err := c.addMember(ctx)
		if err != nil {
			f.cfg.Logf("  member add failed: %v", err)
			return "", ""
		}
		return fmt.Sprintf("added %s", n.name), FaultMemberAdd

	case FaultMemberReplace:
		n := pick(rng, members)
		if err := c.removeMember(ctx, n); err != nil {
			f.cfg.Logf("  member remove %s failed: %v", n.name, err)
			return "", ""
		}
		m, err := c.addMember(ctx)
		if err != nil {
			f.rep.fault(FaultMemberRemove)
			f.cfg.Logf("  member add after removing %s failed: %v", n.name, err)
			return "", ""
		}
		return fmt.Sprintf("replaced %s (leader was %s) by %s", n.name, nameOf(leader), m.name), kind

	case FaultMoveLeader:
		if leader == nil || len(members) < 2 {
			return "", ""
		}
		to := pick(rng, others(leader))
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := leader.cli.MoveLeader(octx, to.id())
		cancel()
		if err != nil {
			f.cfg.Logf("  move leader %s -> %s failed: %v", leader.name, to.name, err)
			return "", ""
		}
		return fmt.Sprintf("%s -> %s", leader.name, to.name), kind
	}
	return "", ""
}

// partition cuts every link between the two groups, both ways, either
// holding the bytes or resetting the connections. It returns the mode.
func (f *faulter) partition(a, b []*node, rng *rand.Rand) string {
	lf, mode := linkFault{Hold: true}, "held"
	if rng.IntN(2) == 0 {
		lf, mode = linkFault{Reset: true}, "reset"
	}
	faults := map[link]linkFault{}
	for _, x := range a {
		for _, y := range b {
			faults[link{x.idx, y.idx}] = lf
			faults[link{y.idx, x.idx}] = lf
		}
	}
	f.c.net.set(faults)
	return mode
}

func names(ns []*node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.name)
	}
	return "{" + strings.Join(s, ",") + "}"
}

func nameOf(n *node) string {
	if n == nil {
		return "none"
	}
	return n.name
}
