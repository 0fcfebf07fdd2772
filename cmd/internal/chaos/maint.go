package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/accordkv/accord/internal/schema"
)

// The crash loop's maintenance: while members are killed, a client
// compacts history (after overwriting a set of hot keys, so that a
// compaction has versions to delete) and defragments members; some kills
// are aimed at a member in the middle of a defrag, a compaction or a
// snapshot install. Whether a kill landed during one is measured, never
// assumed: see killState.

// Files of a member's data directory the harness looks at (accord's
// names: backend.go and snapshot.go of the root module).
const (
	kvDBFile       = "kv.db"
	kvDBDefragFile = "kv.db.defrag"  // a defrag copying kv.db
	kvDBInstall    = "kv.db.install" // a received snapshot being swapped in
	snapshotsDir   = "snapshots"
)

const (
	hotPrefix  = "m/hot/" // the maintenance client's overwritten keys
	hotKeys    = 100      // versions per hot transaction (accordd's --max-txn-ops is 128)
	hotTxns    = 240      // transactions per burst: 24k versions, a compaction of several commits
	hotWriters = 4        // concurrent burst writers
)

// killState is what a member's data directory shows right after its
// process was SIGKILLed.
type killState struct {
	defragFile bool // kv.db.defrag was left half written
	installing bool // a snapshot from a leader was being received (its state.bin holds a kv.db) or swapped in (kv.db.install)
	compacting bool // kv.db records a compaction scheduled but not finished
	err        error
}

// inspectKilled reads the data directory dir of a member whose process is
// dead.
func inspectKilled(dir string) killState {
	var ks killState
	if _, err := os.Stat(filepath.Join(dir, kvDBDefragFile)); err == nil {
		ks.defragFile = true
	}
	ks.installing = inspectInstall(dir)
	scheduled, finished, err := compactRevs(filepath.Join(dir, kvDBFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		ks.err = err
	}
	ks.compacting = scheduled > finished
	return ks
}

// compactRevs reads the revisions of the last compaction scheduled and
// the last one finished from a kv.db no process holds.
func compactRevs(path string) (scheduled, finished int64, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, 0, err
	}
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return 0, 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(schema.BucketMeta))
		if meta == nil {
			return fmt.Errorf("%s has no %s bucket", path, schema.BucketMeta)
		}
		rev := func(key string) (int64, error) {
			v := meta.Get([]byte(key))
			if v == nil {
				return 0, nil
			}
			r, _, err := schema.ParseRevisionKey(v)
			return r.Main, err
		}
		if scheduled, err = rev(schema.MetaScheduledCompactKey); err != nil {
			return err
		}
		finished, err = rev(schema.MetaFinishedCompactKey)
		return err
	})
	return scheduled, finished, err
}

// checkKVFile runs bbolt's consistency check on a kv.db no process holds.
func checkKVFile(path string) error {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
			if len(errs) == 10 {
				break
			}
		}
		return errors.Join(errs...)
	})
}

func readHeadBytes(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, _ := f.Read(b)
	return b[:m], nil
}

// isBolt reports whether b starts like a bbolt file (the magic of meta
// page 0, after the 16-byte page header).
func isBolt(b []byte) bool {
	return len(b) >= 20 && b[16] == 0xED && b[17] == 0xDA && b[18] == 0x0C && b[19] == 0xED
}

// inflight is one maintenance RPC in flight to a member.
type inflight struct {
	killed bool // a SIGKILL was sent to the member while it was in flight
}

// maintainer runs the crash loop's maintenance and tracks the RPCs in
// flight per member, so that a kill knows what it interrupted.
type maintainer struct {
	r *run

	busy sync.Mutex // one maintenance action at a time (background or aimed)

	mu      sync.Mutex
	defrags map[*node][]*inflight
	hotSeq  int
}

func newMaintainer(r *run) *maintainer {
	return &maintainer{r: r, defrags: map[*node][]*inflight{}}
}

// kill SIGKILLs n, marking its in-flight defrags, and then measures from
// its data directory what the kill interrupted. It reports whether there
// was a process to kill.
func (m *maintainer) kill(n *node) bool {
	m.mu.Lock()
	pending := m.defrags[n]
	for _, f := range pending {
		f.killed = true
	}
	m.mu.Unlock()
	if !n.kill() {
		m.mu.Lock()
		for _, f := range pending {
			f.killed = false
		}
		m.mu.Unlock()
		return false
	}
	ks := inspectKilled(filepath.Join(n.dir, "data"))
	rep := m.r.rep
	rep.mu.Lock()
	if ks.defragFile {
		rep.KillsDefragFile++
	}
	if ks.installing {
		rep.KillsDuringInstall++
	}
	if ks.compacting {
		rep.KillsDuringCompaction++
	}
	rep.mu.Unlock()
	if ks.err != nil {
		rep.violate("kv.db", "%s after its SIGKILL: %v", n.name, ks.err)
	}
	return true
}

// defrag defragments n, counting the kills it was interrupted by: a SIGKILL
// sent while the RPC was in flight, and the RPC then failed (a defrag that
// answered before the kill took effect is not counted).
func (m *maintainer) defrag(ctx context.Context, n *node) error {
	f := &inflight{}
	m.mu.Lock()
	m.defrags[n] = append(m.defrags[n], f)
	m.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err := m.r.c.admin.Defragment(octx, n.clientURL)
	cancel()
	m.mu.Lock()
	l := m.defrags[n]
	for i := range l {
		if l[i] == f {
			m.defrags[n] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	killed := f.killed
	m.mu.Unlock()
	rep := m.r.rep
	rep.mu.Lock()
	switch {
	case err == nil:
		rep.Defrags++
	case killed:
		rep.KillsDuringDefrag++
	}
	rep.mu.Unlock()
	return err
}

// hotBurst overwrites the hot keys hotTxns times (hotKeys versions per
// transaction), so that the next compaction deletes that many versions.
// It returns the revision of the last write, or 0.
func (m *maintainer) hotBurst(ctx context.Context, cli *clientv3.Client) int64 {
	m.mu.Lock()
	m.hotSeq++
	seq := m.hotSeq
	m.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	var mu sync.Mutex
	var last int64
	var wg sync.WaitGroup
	for w := range hotWriters {
		wg.Go(func() {
			for i := w; i < hotTxns && ctx.Err() == nil && time.Now().Before(deadline); i += hotWriters {
				ops := make([]clientv3.Op, hotKeys)
				for k := range ops {
					ops[k] = clientv3.OpPut(fmt.Sprintf("%s%03d", hotPrefix, k), fmt.Sprintf("%d.%d", seq, i))
				}
				octx, cancel := context.WithTimeout(ctx, m.r.cfg.OpTimeout)
				resp, err := cli.Txn(octx).Then(ops...).Commit()
				cancel()
				if err != nil {
					if !pace(ctx, 50*time.Millisecond) {
						return
					}
					continue
				}
				mu.Lock()
				last = max(last, resp.Header.Revision)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return last
}

// compact compacts to rev through cli.
func (m *maintainer) compact(ctx context.Context, cli *clientv3.Client, rev int64) error {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := cli.Compact(octx, rev)
	cancel()
	rep := m.r.rep
	if err == nil {
		rep.mu.Lock()
		rep.Compactions++
		rep.mu.Unlock()
	}
	return err
}

// background compacts and defragments until stop: a burst of hot writes,
// a compaction to its last revision, a defrag of a random member, a pause.
// Failures are expected (members are being killed) and only counted by
// their absence in the figures.
func (m *maintainer) background(ctx context.Context, rng *rand.Rand, stop <-chan struct{}) {
	for ctx.Err() == nil {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(500+rng.IntN(1500)) * time.Millisecond):
		}
		m.busy.Lock()
		if rev := m.hotBurst(ctx, m.r.c.admin); rev > 0 {
			_ = m.compact(ctx, m.r.c.admin, rev)
		}
		if ns := m.r.c.running(); len(ns) > 0 {
			_ = m.defrag(ctx, pick(rng, ns))
		}
		m.busy.Unlock()
	}
}

// killDuringDefrag starts a defrag of n and SIGKILLs n as soon as the
// defrag file appears in its data directory (or once the defrag answered,
// or after 5s).
func (m *maintainer) killDuringDefrag(ctx context.Context, n *node) int {
	m.busy.Lock()
	defer m.busy.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.defrag(ctx, n)
	}()
	file := filepath.Join(n.dir, "data", kvDBDefragFile)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := os.Stat(file); err == nil {
			break
		}
		select {
		case <-done:
			deadline = time.Now() // finished before it could be caught
		case <-time.After(time.Millisecond):
		}
	}
	killed := 0
	if m.kill(n) {
		killed = 1
	}
	<-done
	return killed
}

// killDuringCompaction writes a burst of hot versions, compacts them away
// through n, and SIGKILLs n a random moment (up to 150ms) after the
// compaction was acknowledged: n's committer deletes the versions over
// several commits, which is the window.
func (m *maintainer) killDuringCompaction(ctx context.Context, rng *rand.Rand, n *node) int {
	m.busy.Lock()
	defer m.busy.Unlock()
	rev := m.hotBurst(ctx, m.r.c.admin)
	if rev > 0 {
		if err := m.compact(ctx, n.cli, rev); err == nil {
			pace(ctx, time.Duration(rng.IntN(150))*time.Millisecond)
		}
	}
	if m.kill(n) {
		return 1
	}
	return 0
}

// killDuringInstall SIGKILLs follower n, keeps it down while the cluster
// writes on (so that the leader trims its log past n's position and must
// send a snapshot), restarts it, and SIGKILLs it again as soon as its data
// directory shows the snapshot being received or swapped in. It returns
// the processes killed.
func (m *maintainer) killDuringInstall(ctx context.Context, rng *rand.Rand, n *node) int {
	c := m.r.c
	if !m.kill(n) {
		return 0
	}
	killed := 1
	before := raftIndex(ctx, c)
	// Past --snapshot-catchup-entries, and several snapshots later.
	need := before + c.cfg.SnapshotCatchupEntries + 4*c.snapshotCount
	deadline := time.Now().Add(10 * time.Second)
	start := time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if time.Since(start) > 2*c.cfg.SnapshotInterval+time.Second && raftIndex(ctx, c) >= need {
			break
		}
		pace(ctx, 100*time.Millisecond)
	}
	if err := c.restart(n); err != nil {
		c.rep.violate("restart", "%v", err)
		return killed
	}
	dir := filepath.Join(n.dir, "data")
	installs := countInstalls(n.logPath())
	deadline = time.Now().Add(10 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if inspectInstall(dir) {
			pace(ctx, time.Duration(rng.IntN(3))*time.Millisecond)
			if m.kill(n) {
				killed++
			}
			return killed
		}
		if countInstalls(n.logPath()) > installs || n.getState() != stateRunning {
			return killed // installed (or failed) between two looks
		}
		pace(ctx, time.Millisecond)
	}
	return killed
}

// inspectInstall reports whether a member's data directory shows a
// snapshot from a leader being received (snapshots/<id>.tmp), received
// and not yet restored, or being swapped in (kv.db.install). A snapshot
// the member takes itself holds a small marker; one a leader sends holds
// its kv.db until Restore has swapped it in.
func inspectInstall(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, kvDBInstall)); err == nil {
		return true
	}
	states, _ := filepath.Glob(filepath.Join(dir, snapshotsDir, "*", "state.bin"))
	for _, p := range states {
		if head, err := readHeadBytes(p, 20); err == nil && isBolt(head) {
			return true
		}
	}
	return false
}

// countInstalls counts the snapshots a member's log says it installed.
func countInstalls(log string) int {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "Installed remote snapshot")
}

// raftIndex returns the highest raft index a running member reports.
func raftIndex(ctx context.Context, c *cluster) uint64 {
	var best uint64
	for _, n := range c.running() {
		octx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		st, err := c.admin.Status(octx, n.clientURL)
		cancel()
		if err == nil {
			best = max(best, st.RaftIndex)
		}
	}
	return best
}

// checkDataDirs runs after the last process was stopped: every member's
// kv.db passes bbolt's consistency check, and no member kept a defrag or
// install file (each came back after its last kill, and opening the data
// directory finishes or removes them).
func (r *run) checkDataDirs() {
	for _, n := range r.c.live() {
		dir := filepath.Join(n.dir, "data")
		for _, left := range []string{kvDBDefragFile, kvDBInstall} {
			if _, err := os.Stat(filepath.Join(dir, left)); err == nil {
				r.rep.violate("data-dir", "%s still has %s after it came back and served", n.name, left)
			}
		}
		if err := checkKVFile(filepath.Join(dir, kvDBFile)); err != nil {
			r.rep.violate("kv.db", "%s: bbolt check of %s: %v", n.name, kvDBFile, err)
			continue
		}
		r.rep.KVChecked++
	}
}
