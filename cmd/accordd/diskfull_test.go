//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull fills the real file system under the leader of a
// three-member cluster: a tmpfs mounted in a mount namespace of the
// leader's own, so that nothing else on the machine sees it fill. Each
// member runs on such a tmpfs of tmpfsSize (the leader is only known once
// the cluster runs); only the leader's is filled. With the guard's default
// threshold (Options.MinFreeDiskBytes, 64 MiB):
//
//  1. below the threshold (16 MiB free), and then with the file system
//     truly full (0 bytes free, a write returns ENOSPC), writes to the
//     leader and writes forwarded to it by a follower fail with the
//     disk-full error; serializable and linearizable reads keep working
//     on every member; the raft term does not move over ten election
//     timeouts (no election storm) and the leader keeps running;
//  2. still at 0 bytes free, leadership moves to a healthy member: the
//     full member persists the new term (raft panics if it cannot) and
//     keeps running, its appends fail with ENOSPC, and the cluster takes
//     writes again through the new leader;
//  3. once the filler is removed, writes resume by themselves on the full
//     member, it catches up, and every write acknowledged before, during
//     and after is readable on every member.
//
// Three members rather than one: a storm would show as a moving term on
// the healthy members, a forwarded write is covered, and so is a term
// change on the full member.
//
// The disk fills slowly enough here for the guard to notice before raft
// writes to a full disk; TestDiskFullSudden covers the other case.
func TestDiskFull(t *testing.T) {
	step := stepLogger(t)
	requireTmpfsNamespace(t)

	step("1. cluster up: put, get, leader and term")
	c := startTmpfsCluster(t, 3)
	if out := mustCtl(t, c.all, "put", "before", "v1"); out != "OK\n" {
		t.Fatalf("put printed %q", out)
	}
	w := startWriter(t, c.eps)
	w.waitProgress(t, 20, "before the disk fills")
	full, term, ids := c.leaderAndTerm()
	var healthy []*tmpfsMember
	for _, m := range c.ms {
		if m != full {
			healthy = append(healthy, m)
		}
	}
	t.Logf("leader %s, term %d: filling its disk", full.name, term)
	mnt := nsPath(full.p, full.mnt)
	filler := filepath.Join(mnt, "filler")

	// fullAndServing checks, with the leader's disk full: a write to the
	// leader and one forwarded by a follower fail with the disk-full
	// error, reads work on every member, and the term has not moved.
	fullAndServing := func() {
		t.Helper()
		c.running()
		for _, m := range []*tmpfsMember{full, healthy[0]} {
			if err := putRefused(m); err != nil {
				t.Fatalf("leader %s: %v", full.name, err)
			}
		}
		if err := c.readable("before", "v1"); err != nil {
			t.Fatalf("with the leader's disk full: %v", err)
		}
		sts, err := statuses(t, c.all)
		if err != nil {
			t.Fatalf("endpoint status with the leader's disk full: %v", err)
		}
		for _, st := range sts {
			if st.term != term || st.leader != (st.endpoint == full.endpoint) {
				t.Fatalf("term or leader moved while %s's disk was full (term %d before): %+v", full.name, term, sts)
			}
		}
	}

	step("2a. fill the leader's tmpfs to 16 MiB free: below the guard's 64 MiB")
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if free := freeBytes(t, mnt); free > 16<<20 {
		if err := writeZeros(f, free-16<<20); err != nil {
			t.Fatalf("filling %s to 16 MiB free: %v", mnt, err)
		}
	}
	waitFor(t, 5*time.Second, "put to the leader refused as disk full", func() (bool, string) {
		err := putRefused(full)
		return err == nil, fmt.Sprint(err)
	})
	if free := freeBytes(t, mnt); free == 0 || free >= guardMinFree {
		t.Fatalf("%d bytes free on the leader's tmpfs, want between 0 and 64 MiB", free)
	}
	fullAndServing()

	step("2b. fill it up: a write returns ENOSPC, 0 bytes free")
	if err := writeZeros(f, tmpfsBytes); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: want ENOSPC, got %v", mnt, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if free := freeBytes(t, mnt); free != 0 {
		t.Fatalf("%d bytes free on the leader's tmpfs after ENOSPC, want 0", free)
	}
	acked := w.count()
	// Ten election timeouts with the disk full: nothing is written, the
	// term holds, and reads keep working throughout.
	for i, until := 0, time.Now().Add(10*electionTimeout); i < 50 && time.Now().Before(until); i++ {
		fullAndServing()
	}
	if n := w.count(); n != acked {
		t.Fatalf("%d writes acknowledged while the leader's disk was full", n-acked)
	}
	if logs := full.p.logs(); !strings.Contains(logs, guardAlmostFull) {
		t.Errorf("the leader's log does not say its disk is full:\n%s", tail(logs, 20))
	}

	step("2c. still at 0 bytes free, move leadership to a healthy member")
	want := regexp.MustCompile(`^Leadership transferred from ` + ids[full] + ` to ` + ids[healthy[0]] + `\n$`)
	if out := mustCtl(t, full.endpoint, "move-leader", ids[healthy[0]]); !want.MatchString(out) {
		t.Fatalf("move-leader printed %q", out)
	}
	leader, newTerm, _ := c.leaderAndTerm()
	if leader != healthy[0] || newTerm <= term {
		t.Fatalf("after move-leader: leader %s in term %d, want %s in a term after %d", leader.name, newTerm, healthy[0].name, term)
	}
	term = newTerm
	if out := mustCtl(t, leader.endpoint, "put", "moved", "v2"); out != "OK\n" {
		t.Fatalf("put to the new leader printed %q", out)
	}
	// The full member is a follower now: it refuses writes sent to it
	// (it could not log them), serves serializable reads, and fails to
	// append what the new leader sends.
	if err := putRefused(full); err != nil {
		t.Fatalf("a full follower: %v", err)
	}
	if out, err := ctl(full.endpoint, "get", "before", "--print-value-only", "--consistency=s"); err != nil || out != "v1\n" {
		t.Fatalf("serializable get on %s, a full follower: %q %v", full.name, out, err)
	}
	waitFor(t, 5*time.Second, full.name+" fails to append with ENOSPC", func() (bool, string) {
		c.running()
		logs := full.p.logs()
		return strings.Contains(logs, `msg="failed to append to logs"`) && strings.Contains(logs, "no space left on device"), tail(logs, 5)
	})

	step("3. remove the filler: writes resume by themselves")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a put to the member whose disk was full succeeds", func() (bool, string) {
		out, err := ctl(full.endpoint, "put", "after", "v3")
		return err == nil && out == "OK\n", fmt.Sprint(out, err)
	})
	w.waitProgress(t, 20, "after space is back")
	w.finish()
	if logs := full.p.logs(); !strings.Contains(logs, guardSpaceBack) {
		t.Errorf("%s's log does not say its disk has space again:\n%s", full.name, tail(logs, 20))
	}
	c.allReadable(map[string]string{"before": "v1", "moved": "v2", "after": "v3"}, w.acked)
	t.Logf("writer: %d acknowledged, %d failed", len(w.acked), w.fails)
	if leader, final, _ := c.leaderAndTerm(); leader != healthy[0] || final != term {
		t.Errorf("after recovery: leader %s in term %d, want %s in term %d", leader.name, final, healthy[0].name, term)
	}
	step("done")
}

// TestDiskFullSudden fills a member's tmpfs from about 80 MiB free to 0
// bytes at once, with writes in flight: faster than the disk guard, which
// reads the free space once a second, can notice. A write the guard
// admitted before then reaches raft, the leader's append fails with
// ENOSPC, and hashicorp raft steps the leader down. Before the guard kept
// a reserve (disk.reserve, 4 MiB, freed the moment the raft store reports
// ENOSPC), every new term's first entry failed again: an election per
// append for as long as the disk stayed full. On the member that filled:
//
//  1. its log shows the leader's append failing with ENOSPC: the sudden
//     path was taken, not the guard's check of the free space (if the
//     check happened to notice first, the fill is undone and done again);
//  2. over ten election timeouts the term moves by maxSuddenTermMoves at
//     most, the member keeps running, writes sent to it fail with the
//     disk-full error, and reads work on every member;
//  3. once the filler is removed, the guard allocates its reserve again
//     and writes resume by themselves; every acknowledged write is
//     readable on every member.
//
// One member shows a storm best: it is the only voter, so each failed
// append is a new term within an election timeout. Three members add the
// cluster's view: the leader that filled steps down, and whichever member
// is elected then stays.
func TestDiskFullSudden(t *testing.T) {
	requireTmpfsNamespace(t)
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", n), func(t *testing.T) { testDiskFullSudden(t, n) })
	}
}

// maxSuddenTermMoves is how often the term may move, in a cluster of n
// members, once a leader's append failed for lack of space. The failed
// append steps the leader down: one election. The guard frees its reserve
// before raft sees the error, so the new leader's first entries have room,
// and it refuses client writes from then on, before they reach raft: no
// append fails again. A single member is the only candidate and wins that
// election at once; among three, a split vote can cost one more term.
// Without the reserve the new leader's first entry (raft's no-op) fails
// too, again and again: the term moved about twice a second.
func maxSuddenTermMoves(n int) uint64 {
	if n == 1 {
		return 1
	}
	return 2
}

// maxSuddenFills is how often TestDiskFullSudden fills the disk before it
// gives up on getting a raft append to fail before the guard's check
// notices. The check runs once a second; a fill takes 15 to 40 ms, and
// with the burst the first append failed 3 to 16 ms after it in six runs:
// the check notices first in a few fills of a hundred.
const maxSuddenFills = 5

func testDiskFullSudden(t *testing.T, n int) {
	step := stepLogger(t)

	step("1. cluster up, writes in flight")
	c := startTmpfsCluster(t, n)
	if out := mustCtl(t, c.all, "put", "before", "v1"); out != "OK\n" {
		t.Fatalf("put printed %q", out)
	}
	w := startWriter(t, c.eps)
	w.waitProgress(t, 20, "before the disk fills")
	b := startBurst(t, w)
	b.waitProgress(t, 20*burstWriters)

	step("2. fill the leader's tmpfs to 0 bytes at once")
	var (
		full   *tmpfsMember
		term   uint64    // before the fill
		failed time.Time // when the leader's failed append was seen
		filler string
	)
	for fill := 1; ; fill++ {
		full, term, _ = c.leaderAndTerm()
		mnt := nsPath(full.p, full.mnt)
		filler = filepath.Join(mnt, "filler")
		// Once the filler is gone the guard needs its threshold plus its
		// reserve free to allocate the reserve again and take writes. The
		// reserve is allocated now, so that is this much free now, plus
		// some room for the raft log to grow.
		free := freeBytes(t, mnt)
		if free < guardMinFree+4<<20 {
			t.Fatalf("%d bytes free on %s's tmpfs of %d, want at least %d: the guard could not take writes again after the fill", free, full.name, tmpfsBytes, guardMinFree+4<<20)
		}
		mark := len(full.p.logs())
		start := time.Now()
		fillAtOnce(t, mnt, filler)
		filled := time.Now()
		t.Logf("fill %d: %s (leader in term %d): %d bytes free to 0 in %v", fill, full.name, term, free, filled.Sub(start).Round(time.Microsecond))
		var line string // the leader's failed append
		waitFor(t, 5*time.Second, full.name+"'s append fails or its guard notices the fill", func() (bool, string) {
			c.running()
			logs := full.p.logs()[mark:]
			line = leaderAppendNoSpace.FindString(logs)
			return line != "" || strings.Contains(logs, guardAlmostFull), tail(logs, 5)
		})
		if line != "" {
			failed = time.Now()
			if m := logTime.FindStringSubmatch(line); m != nil {
				if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
					t.Logf("%s's append failed %v after the fill", full.name, at.Sub(filled).Round(time.Millisecond))
				}
			}
			break
		}
		if fill == maxSuddenFills {
			t.Fatalf("the guard noticed each of %d fills before a raft append failed", fill)
		}
		// The guard noticed first (TestDiskFull's case): undo, wait for
		// writes, fill again.
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "writes resume after the fill the guard noticed", func() (bool, string) {
			out, err := ctl(full.endpoint, "put", "refilled", "x")
			return err == nil && out == "OK\n", fmt.Sprint(out, err)
		})
	}

	maxMoves := maxSuddenTermMoves(n)
	step(fmt.Sprintf("3. ten election timeouts with the disk full: the term moves by %d at most", maxMoves))
	top := term // the highest term any member reported since the fill
	storm := func() {
		t.Helper()
		sts, err := statuses(t, c.all)
		if err != nil {
			t.Fatalf("endpoint status with %s's disk full: %v", full.name, err)
		}
		for _, st := range sts {
			top = max(top, st.term)
		}
		if top > term+maxMoves {
			t.Fatalf("the term moved from %d to %d within %v of %s's append failing for lack of space: an election storm",
				term, top, time.Since(failed).Round(time.Millisecond), full.name)
		}
	}
	for time.Since(failed) < 10*electionTimeout {
		c.running()
		storm()
		err := putRefused(full)
		if err == nil {
			err = c.readable("before", "v1")
		}
		if err != nil {
			storm() // a storm explains a failed write or read best
			t.Fatalf("%s's disk full: %v", full.name, err)
		}
	}
	storm()
	leader, last, _ := c.leaderAndTerm()
	if top = max(top, last); top > term+maxMoves {
		t.Fatalf("the term moved from %d to %d after %s's append failed for lack of space", term, top, full.name)
	}
	t.Logf("term %d before the fill, %d after %v: leader %s", term, top, time.Since(failed).Round(time.Millisecond), leader.name)
	b.finish()
	if logs := full.p.logs(); !strings.Contains(logs, `msg="`+guardReserveFreed+`"`) || !strings.Contains(logs, "reserve_freed=true") {
		t.Errorf("%s's log does not say the guard freed its reserve:\n%s", full.name, tail(logs, 20))
	}

	step("4. remove the filler: writes resume by themselves")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a put to the member whose disk was full succeeds", func() (bool, string) {
		out, err := ctl(full.endpoint, "put", "after", "v3")
		return err == nil && out == "OK\n", fmt.Sprint(out, err)
	})
	reserve := filepath.Join(nsPath(full.p, full.dataDir()), "disk.reserve")
	switch fi, err := os.Stat(reserve); {
	case err != nil:
		t.Errorf("%s's disk reserve after recovery: %v", full.name, err)
	case fi.Size() != guardReserve:
		t.Errorf("%s's disk reserve after recovery: %d bytes, want %d", full.name, fi.Size(), guardReserve)
	}
	w.waitProgress(t, 20, "after space is back")
	w.finish()
	if logs := full.p.logs(); !strings.Contains(logs, guardSpaceBack) {
		t.Errorf("%s's log does not say its disk has space again:\n%s", full.name, tail(logs, 20))
	}
	c.allReadable(map[string]string{"before": "v1", "after": "v3"}, append(w.acked, b.acked...))
	t.Logf("writer: %d acknowledged, %d failed; burst: %d acknowledged, %d failed", len(w.acked), w.fails, len(b.acked), b.fails)
	step("done")
}

// burst keeps burstWriters small puts in flight at once through a
// writer's client, keys burst/<writer>/<n>, until finish or maxBurstPuts
// each, and records which were acknowledged. With startWriter's one put
// at a time, puts went on at 0 bytes free for some 200 ms (into pages
// bbolt had freed, which tmpfs still holds) before one needed a new page,
// time in which the guard's check noticed first about one fill in ten.
// The values are small on purpose: the append that fails for lack of a
// page is then small, and so is the new leader's first entry that the
// reserve must take. In a run where the append that failed was a 1 MiB
// value, the new leader's no-op still fitted in bbolt's last page and,
// without the reserve, the term moved only once: no storm to catch.
type burst struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once

	mu    sync.Mutex // guards acked, fails
	acked []string
	fails int
}

const (
	burstWriters = 8
	maxBurstPuts = 5000
)

// startBurst starts a burst on w's client; finish it before w.
func startBurst(t *testing.T, w *writer) *burst {
	b := &burst{stop: make(chan struct{})}
	for g := range burstWriters {
		b.wg.Go(func() {
			for i := range maxBurstPuts {
				select {
				case <-b.stop:
					return
				default:
				}
				key := fmt.Sprintf("burst/%d/%04d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := w.cli.Put(ctx, key, "v")
				cancel()
				b.mu.Lock()
				if err == nil {
					b.acked = append(b.acked, key)
				} else {
					b.fails++
				}
				b.mu.Unlock()
				if err != nil { // refused: don't spin
					select {
					case <-b.stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		})
	}
	t.Cleanup(b.finish) // before w's, which closes the client
	return b
}

// waitProgress waits until n puts were acknowledged.
func (b *burst) waitProgress(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, "burst puts acknowledged", func() (bool, string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.acked) >= n, fmt.Sprintf("%d acknowledged, want %d", len(b.acked), n)
	})
}

func (b *burst) finish() {
	b.stopOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
	})
}

// stepLogger returns a func that logs a step of a test with the time
// since the test began.
func stepLogger(t *testing.T) func(string) {
	start := time.Now()
	return func(s string) {
		t.Helper()
		t.Logf("%6.1fs  %s", time.Since(start).Seconds(), s)
	}
}

// tmpfsMember is an accordd member whose data directory is on a tmpfs of
// its own (startOnTmpfs).
type tmpfsMember struct {
	name, endpoint, peerURL, mnt string
	p                            *proc
}

// dataDir is m's data directory as m sees it; nsPath reaches it.
func (m *tmpfsMember) dataDir() string { return filepath.Join(m.mnt, m.name+".accord") }

// tmpfsCluster is a cluster of tmpfsMembers.
type tmpfsCluster struct {
	t   *testing.T
	ms  []*tmpfsMember
	eps []string // client endpoints, one per member
	all string   // eps for etcdctl
}

// startTmpfsCluster starts n members, each on a tmpfs of its own, and
// waits until they are healthy. It checks that each data directory is on
// its member's tmpfs, which only that member sees.
func startTmpfsCluster(t *testing.T, n int) *tmpfsCluster {
	t.Helper()
	c := &tmpfsCluster{t: t}
	var initial []string
	for i := range n {
		m := &tmpfsMember{name: fmt.Sprintf("m%d", i), endpoint: "127.0.0.1:" + freePort(t), peerURL: "http://127.0.0.1:" + freePort(t)}
		m.mnt = filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(m.mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		initial = append(initial, m.name+"="+m.peerURL)
		c.ms = append(c.ms, m)
	}
	for _, m := range c.ms {
		m.p = startOnTmpfs(t, m.name, m.mnt, "--name="+m.name, "--data-dir="+m.dataDir(),
			"--listen-client-urls=http://"+m.endpoint, "--listen-peer-urls="+m.peerURL,
			"--initial-cluster="+strings.Join(initial, ","), "--election-timeout="+testElectionMS, "--log-format=console")
		c.eps = append(c.eps, m.endpoint)
	}
	c.all = strings.Join(c.eps, ",")
	waitFor(t, 30*time.Second, fmt.Sprintf("%d members healthy", n), func() (bool, string) {
		c.running()
		out, err := ctl(c.all, "endpoint", "health")
		return err == nil && strings.Count(out, "is healthy") == n, fmt.Sprint(out, err)
	})
	// Each data directory is on its member's tmpfs, which this process
	// sees only through the member's root.
	for _, m := range c.ms {
		if _, err := os.Stat(m.dataDir()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s's data directory %s is visible outside its mount namespace (stat: %v)", m.name, m.dataDir(), err)
		}
		if _, err := os.Stat(nsPath(m.p, m.dataDir())); err != nil {
			t.Fatalf("%s's data directory in its namespace: %v", m.name, err)
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(nsPath(m.p, m.mnt), &st); err != nil || st.Blocks*uint64(st.Bsize) != tmpfsBytes {
			t.Fatalf("%s's tmpfs: %d blocks of %d bytes (%v), want %d bytes", m.name, st.Blocks, st.Bsize, err, tmpfsBytes)
		}
	}
	return c
}

// running fails the test if a member exited.
func (c *tmpfsCluster) running() {
	c.t.Helper()
	for _, m := range c.ms {
		if !m.p.running() {
			c.t.Fatalf("%s exited with code %d:\n%s", m.name, m.p.code, tail(m.p.logs(), 30))
		}
	}
}

// leaderAndTerm waits until every member reports the same leader and
// term, and returns them with the member IDs etcdctl prints.
func (c *tmpfsCluster) leaderAndTerm() (leader *tmpfsMember, term uint64, ids map[*tmpfsMember]string) {
	t := c.t
	t.Helper()
	waitFor(t, 10*time.Second, "one leader and one term", func() (bool, string) {
		c.running()
		sts, err := statuses(t, c.all)
		if err != nil {
			return false, err.Error()
		}
		leader, term, ids = nil, sts[0].term, map[*tmpfsMember]string{}
		for _, st := range sts {
			for _, m := range c.ms {
				if m.endpoint == st.endpoint {
					ids[m] = st.id
					if st.leader {
						leader = m
					}
				}
			}
			if st.term != term {
				return false, fmt.Sprintf("terms differ: %+v", sts)
			}
		}
		return leader != nil && len(ids) == len(c.ms), fmt.Sprintf("%+v", sts)
	})
	return leader, term, ids
}

// readable reports whether key reads as value on every member, with
// serializable and with linearizable reads.
func (c *tmpfsCluster) readable(key, value string) error {
	for _, m := range c.ms {
		for _, consistency := range []string{"s", "l"} {
			if out, err := ctl(m.endpoint, "get", key, "--print-value-only", "--consistency="+consistency); err != nil || out != value+"\n" {
				return fmt.Errorf("get %s --consistency=%s on %s: %q %v, want %q", key, consistency, m.name, out, err, value)
			}
		}
	}
	return nil
}

// allReadable waits until every member reads kvs, then checks that each
// of the acked keys is there too. A linearizable read waits until the
// member caught up; raft retries appends to a member whose disk was full
// with a backoff of up to about 10 s.
func (c *tmpfsCluster) allReadable(kvs map[string]string, acked []string) {
	t := c.t
	t.Helper()
	for _, m := range c.ms {
		waitFor(t, 30*time.Second, m.name+" caught up", func() (bool, string) {
			c.running()
			for k, v := range kvs {
				if out, err := ctl(m.endpoint, "get", k, "--print-value-only"); err != nil || out != v+"\n" {
					return false, fmt.Sprintf("get %s: %q %v, want %q", k, out, err, v)
				}
			}
			return true, ""
		})
		have := map[string]bool{}
		for _, k := range strings.Fields(mustCtl(t, m.endpoint, "get", "", "--from-key", "--keys-only")) {
			have[k] = true
		}
		missing := 0
		for _, k := range acked {
			if !have[k] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d acknowledged writes are missing", m.name, missing, len(acked))
		}
	}
}

// putRefused reports whether a put sent to m fails with the disk-full
// error.
func putRefused(m *tmpfsMember) error {
	if _, err := ctl(m.endpoint, "put", "during", "x"); err == nil || !diskFullLine.MatchString(err.Error()) {
		return fmt.Errorf("put to %s on a full disk: want %q, got %v", m.name, diskFullLine, err)
	}
	return nil
}

// diskFullLine is what etcdctl prints for a write refused by the disk
// guard. The message is accord's, so clientv3 does not map it to one of
// etcd's errors and etcdctl prints the gRPC status.
var diskFullLine = regexp.MustCompile(`(?m)^Error: rpc error: code = ResourceExhausted desc = etcdserver: disk full: no space left for the raft log$`)

// What a member logs (--log-format=console) as its disk fills and frees.
const (
	// The guard's check found less than its threshold free.
	guardAlmostFull = `msg="disk almost full: refusing writes until space is freed"`
	// The raft store failed a write for lack of space (the guard had not
	// noticed yet); with reserve_freed=true the guard freed its reserve.
	guardReserveFreed = "disk full: the raft log could not be written; refusing writes until space is freed"
	// The guard takes writes again.
	guardSpaceBack = `msg="disk space is back: accepting writes again"`
)

// logTime is the time of a console log line.
var logTime = regexp.MustCompile(`^time=(\S+) `)

// leaderAppendNoSpace is the line hashicorp raft logs when a leader's
// append to its log fails for lack of space; the leader then steps down.
var leaderAppendNoSpace = regexp.MustCompile(`(?m)^.*msg="failed to commit logs".*no space left on device.*$`)

// The disk guard's defaults: accord's Options.MinFreeDiskBytes, and the
// size of the reserve it preallocates (disk.reserve in the data
// directory).
const (
	guardMinFree = 64 << 20
	guardReserve = 4 << 20
)

// The members' tmpfs: big enough for accordd's data directory, the
// guard's 64 MiB and its 4 MiB reserve, with room to spare: after a
// raft append failed for lack of space, the guard takes writes again only
// once it has both free. Small enough to fill in a moment.
const (
	tmpfsSize  = "96m"
	tmpfsBytes = 96 << 20
)

// mountAndExec mounts a tmpfs of size $1 on $2 and execs the rest of its
// arguments; run in a new mount namespace, the tmpfs is the process's own
// and goes away with it.
const mountAndExec = `mount -t tmpfs -o size="$1" accord-diskfull "$2" && shift 2 && exec "$@"`

// requireTmpfsNamespace skips the test if this process may not mount a
// tmpfs in a new mount namespace (it needs CAP_SYS_ADMIN, as root has);
// any other failure fails it.
func requireTmpfsNamespace(t *testing.T) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `mount -t tmpfs -o size=1m accord-diskfull "$1"`, "sh", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	switch lower := strings.ToLower(string(out)); {
	case err == nil:
	case errors.Is(err, syscall.EPERM):
		t.Skipf("needs a mount namespace, which this process may not create: %v", err)
	case strings.Contains(lower, "permission denied") || strings.Contains(lower, "only root") || strings.Contains(lower, "must be superuser"):
		t.Skipf("needs to mount a tmpfs in a mount namespace, which this process may not: %s", strings.TrimSpace(string(out)))
	default:
		t.Fatalf("mounting a tmpfs in a mount namespace: %v: %s", err, out)
	}
}

// startOnTmpfs starts accordd with args, as startProc does, in a mount
// namespace of its own in which a tmpfs of tmpfsSize is mounted on mnt.
// Go makes / private in the new namespace, so the mount is seen neither
// by this process nor by the other members; nsPath reaches into it.
// (startProc has no way to set SysProcAttr.)
func startOnTmpfs(t *testing.T, name, mnt string, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, bin: accorddBin, name: name, args: args, dir: t.TempDir(), log: logf.Name(), done: make(chan struct{})}
	p.cmd = exec.Command("/bin/sh", append([]string{"-c", mountAndExec, "sh", tmpfsSize, mnt, accorddBin}, args...)...)
	p.cmd.Dir = p.dir
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		logf.Close()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s (%s):\n%s", name, strings.Join(args, " "), tail(p.logs(), 80))
		}
	})
	return p
}

// nsPath is path as process p sees it, in its mount namespace. The shell
// that mounted p's tmpfs exec'd accordd, so the pid is accordd's.
func nsPath(p *proc, path string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", p.cmd.Process.Pid), path)
}

// freeBytes is the space an unprivileged writer has left on the file
// system holding path, as the disk guard computes it (disk_unix.go).
func freeBytes(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

// fillAtOnce fills the file system holding mnt to 0 bytes free, in a new
// file at path, as fast as it can: one fallocate of all but the last MiB
// of the free space (tmpfs takes the pages without writing them), then
// zeros up to ENOSPC. Not one fallocate of all of it: tmpfs undoes a
// fallocate that runs out of space, as it would if raft took a page
// meanwhile.
func fillAtOnce(t *testing.T, mnt, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if free := freeBytes(t, mnt); free > 1<<20 {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(free-1<<20)); err != nil {
			t.Fatalf("fallocate %d bytes on %s: %v", free-1<<20, mnt, err)
		}
	}
	if err := writeZeros(f, tmpfsBytes); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: want ENOSPC, got %v", mnt, err)
	}
}

// writeZeros appends n zero bytes to f, stopping at the first error.
func writeZeros(f *os.File, n uint64) error {
	_, err := io.CopyN(f, zeros{}, int64(n))
	return err
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
