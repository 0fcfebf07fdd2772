package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Crash patterns of CrashLoop, as its report counts them.
const (
	crashOne      = "crash-one"      // one random member
	crashLeader   = "crash-leader"   // the leader
	crashMajority = "crash-majority" // a majority at once: the cluster stops until they are back
	crashAll      = "crash-all"      // every member at once
	crashDefrag   = "crash-defrag"   // a member while it defragments kv.db
	crashCompact  = "crash-compact"  // a member while it deletes the versions a compaction dropped
	crashInstall  = "crash-install"  // a follower, kept down until it needs a snapshot, then again while it installs it
)

// CrashLoop starts cfg.Members members with a low --snapshot-count
// (cfg.CrashSnapshotCount), writes unique keys from cfg.CrashWriters
// clients, and meanwhile SIGKILLs members until cfg.CrashKills processes
// have been killed: one member, the leader, a majority or all of them at
// once, restarted after up to 500ms, sometimes killed again before they
// serve. Meanwhile a maintenance client overwrites hot keys, compacts and
// defragments members, and some kills are aimed: at a member in the
// middle of a defrag, of a compaction, or of installing a leader's
// snapshot (see maint.go; the report counts the kills that landed there,
// as measured from the RPCs in flight and the killed member's data
// directory). At the end every acknowledged write must be readable, on
// every member, at the revision it was acknowledged with; the members
// must agree on HashKV; every member must have come back serving by
// itself (a restart that refuses to start or never serves is a
// violation); and after the last process stopped, every kv.db must pass
// bbolt's consistency check.
func CrashLoop(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rep := newReport()
	rep.Runs, rep.Seeds, rep.Members = 1, []uint64{cfg.Seed}, []int{cfg.Members}
	dir, err := os.MkdirTemp(cfg.Dir, fmt.Sprintf("accord-crash-%d-%dm-", cfg.Seed, cfg.Members))
	if err != nil {
		return nil, err
	}
	cfg.Logf("crash loop: seed %d, %d members, %d SIGKILLs, --snapshot-count=%d, in %s", cfg.Seed, cfg.Members, cfg.CrashKills, cfg.CrashSnapshotCount, dir)
	c, err := startCluster(ctx, cfg, dir, rep, cfg.CrashSnapshotCount)
	if err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	defer c.close()
	r := &run{cfg: &cfg, c: c, rep: rep, rec: newRecorder(), dir: dir}
	r.crashLoop(ctx)
	c.close()
	if ctx.Err() == nil {
		r.checkDataDirs()
	}
	taken, installed := countSnapshots(dir)
	rep.Snapshots += taken
	rep.SnapshotInstalls += installed
	rep.Elapsed = time.Since(began)
	rep.Duration = rep.Elapsed
	r.finish()
	return rep, nil
}

func (r *run) crashLoop(ctx context.Context) {
	cfg, c := r.cfg, r.c
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.CrashWriters {
		pin := -1
		if i%2 == 0 {
			pin = i / 2
		}
		cli, err := c.client(pin)
		if err != nil {
			r.rep.violate("harness", "client: %v", err)
			continue
		}
		r.rec.pin(i, func() string { return c.pinnedName(pin) })
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
		wg.Go(func() { r.crashWriter(ctx, i, cli, rng, stop) })
	}

	m := newMaintainer(r)
	mrng := rand.New(rand.NewPCG(cfg.Seed, 0x3a17))
	wg.Go(func() { m.background(ctx, mrng, stop) })

	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc7a5))
	sinceWait := 0
	for r.rep.Kills < cfg.CrashKills && ctx.Err() == nil {
		members := c.live()
		if len(members) == 0 {
			r.rep.violate("harness", "every member was given up")
			break
		}
		var victims []*node
		kind := crashOne
		killed := 0
		switch p := rng.IntN(100); {
		case p < 12:
			kind = crashDefrag
			victims = []*node{pick(rng, members)}
			killed = m.killDuringDefrag(ctx, victims[0])
		case p < 24:
			kind = crashCompact
			victims = []*node{pick(rng, members)}
			killed = m.killDuringCompaction(ctx, rng, victims[0])
		case p < 34:
			kind = crashInstall
			l := c.leader(ctx)
			var followers []*node
			for _, n := range members {
				if n != l && n.getState() == stateRunning {
					followers = append(followers, n)
				}
			}
			if l == nil || len(followers) == 0 {
				kind = crashOne
				victims = []*node{pick(rng, members)}
				break
			}
			victims = []*node{pick(rng, followers)}
			killed = m.killDuringInstall(ctx, rng, victims[0])
		case p < 67:
			victims = []*node{pick(rng, members)}
		case p < 84:
			kind = crashLeader
			if l := c.leader(ctx); l != nil {
				victims = []*node{l}
			} else {
				victims = []*node{pick(rng, members)}
			}
		case p < 94:
			kind = crashMajority
			shuffled := slices.Clone(members)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			victims = shuffled[:len(members)/2+1]
		default:
			kind = crashAll
			victims = members
		}
		if kind == crashOne || kind == crashLeader || kind == crashMajority || kind == crashAll {
			var kwg sync.WaitGroup
			var kmu sync.Mutex
			for _, n := range victims {
				kwg.Go(func() {
					if m.kill(n) {
						kmu.Lock()
						killed++
						kmu.Unlock()
					}
				})
			}
			kwg.Wait()
		}
		if killed > 0 {
			r.rep.fault(kind)
			r.rep.addKills(killed)
		}
		pace(ctx, time.Duration(rng.IntN(500))*time.Millisecond)
		c.healAll()
		// Usually wait until everyone serves again and let writes flow;
		// sometimes kill again while members are still recovering.
		if rng.IntN(10) < 6 || sinceWait >= 4 {
			c.waitAllServing(ctx, cfg.RecoverTimeout, fmt.Sprintf("SIGKILL #%d (%s of %s)", r.rep.Kills, kind, names(victims)))
			pace(ctx, time.Duration(200+rng.IntN(800))*time.Millisecond)
			sinceWait = 0
		} else {
			pace(ctx, time.Duration(50+rng.IntN(350))*time.Millisecond)
			sinceWait++
		}
		if r.rep.Kills/20 != (r.rep.Kills-killed)/20 {
			cfg.Logf("  %d SIGKILLs", r.rep.Kills)
		}
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		r.rep.violate("harness", "interrupted: %v", ctx.Err())
		return
	}
	r.crashFinal(ctx)
}

// crashWriter puts unique keys until stop.
func (r *run) crashWriter(ctx context.Context, id int, cli *clientv3.Client, rng *rand.Rand, stop <-chan struct{}) {
	for seq := 1; ctx.Err() == nil; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		op := &Op{Client: id, Kind: opCrashPut, Key: fmt.Sprintf("%s%d/%06d", crashPrefix, id, seq), Value: fmt.Sprintf("%d.%d", id, seq)}
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		op.Call = r.rec.now()
		resp, err := cli.Put(octx, op.Key, op.Value)
		cancel()
		if err == nil {
			op.Rev = resp.Header.Revision
		}
		r.rec.finish(op, err)
		if err != nil {
			backoffAfterError(ctx, rng)
		}
	}
}

// crashFinal checks that every acknowledged write is on every member.
func (r *run) crashFinal(ctx context.Context) {
	cfg, c := r.cfg, r.c
	c.healAll()
	c.waitAllServing(ctx, cfg.RecoverTimeout, "the last SIGKILL")
	var last int64
	for range 50 {
		octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		resp, err := c.admin.Put(octx, barrierKey, "end")
		cancel()
		if err == nil {
			last = resp.Header.Revision
			break
		}
		pace(ctx, 200*time.Millisecond)
	}
	if last == 0 {
		r.rep.violate("final", "no barrier write succeeded after the last SIGKILL")
		return
	}
	r.waitRevision(ctx, last)
	ops := r.rec.all()
	r.rec.count(r.rep)
	hashes := map[uint32][]string{}
	for i, n := range c.live() {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(last), clientv3.WithSerializable()}
		if i == 0 {
			opts = []clientv3.OpOption{clientv3.WithPrefix()} // one linearizable read too
		}
		resp, err := n.cli.Get(octx, crashPrefix, opts...)
		cancel()
		if err != nil {
			r.rep.violate("final", "reading %s from %s: %v", crashPrefix, n.name, err)
			continue
		}
		have := make(map[string]KV, len(resp.Kvs))
		for _, kv := range kvsOf(resp.Kvs) {
			have[kv.Key] = kv
		}
		issued := map[string]bool{}
		for _, op := range ops {
			issued[op.Key] = true
			if op.Kind != opCrashPut || op.Status != statusOK {
				continue
			}
			if i == 0 {
				r.rep.AckedWrites++
				r.rep.OpsChecked++ // the unknown ones are checked only for phantoms
			}
			if kv, ok := have[op.Key]; !ok || kv.Value != op.Value || kv.Mod != op.Rev {
				if i == 0 {
					r.rep.LostWrites++
				}
				r.rep.violate("lost-write", "%s: %s = %q acknowledged at revision %d (t=%v); the member has %+v (present %v)",
					n.name, op.Key, op.Value, op.Rev, time.Duration(op.Call).Round(time.Millisecond), kv, ok)
			}
		}
		for k := range have {
			if !issued[k] {
				r.rep.violate("phantom-write", "%s holds %s, which no client wrote", n.name, k)
			}
		}
		octx, cancel = context.WithTimeout(ctx, 10*time.Second)
		hk, err := c.admin.HashKV(octx, n.clientURL, last)
		cancel()
		if err != nil {
			r.rep.violate("final", "HashKV of %s at revision %d: %v", n.name, last, err)
		} else {
			hashes[hk.Hash] = append(hashes[hk.Hash], n.name)
		}
	}
	if len(hashes) > 1 {
		r.rep.violate("replicas", "HashKV at revision %d differs between members: %v", last, hashes)
	}
	cfg.Logf("  crash loop checked: %d SIGKILLs, %d acknowledged writes, %d lost, %d violations", r.rep.Kills, r.rep.AckedWrites, r.rep.LostWrites, r.rep.NumViolations)
}

// Build builds accordd into dir and returns its path. It must run inside
// the accord module (the test does; so does `go run ./cmd/accord-chaos`
// from the repository).
func Build(ctx context.Context, dir string) (string, error) {
	// go test and go run put their own $GOROOT/bin first on the PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(dir, "accordd")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/accordkv/accord/cmd/accordd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: go build accordd: %v\n%s", err, out)
	}
	return bin, nil
}
