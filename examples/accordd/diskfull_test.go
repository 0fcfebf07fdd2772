//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
func TestDiskFull(t *testing.T) {
	start := time.Now()
	step := func(s string) { t.Logf("%6.1fs  %s", time.Since(start).Seconds(), s) }
	requireTmpfsNamespace(t)

	type member struct {
		name, endpoint, peerURL, mnt string
		p                            *proc
	}
	ms := make([]*member, 3)
	var initial []string
	for i := range ms {
		m := &member{name: fmt.Sprintf("m%d", i), endpoint: "127.0.0.1:" + freePort(t), peerURL: "http://127.0.0.1:" + freePort(t)}
		m.mnt = filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(m.mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		initial = append(initial, m.name+"="+m.peerURL)
		ms[i] = m
	}
	var eps []string
	for _, m := range ms {
		m.p = startOnTmpfs(t, m.name, m.mnt, "--name="+m.name, "--data-dir="+filepath.Join(m.mnt, m.name+".accord"),
			"--listen-client-urls=http://"+m.endpoint, "--listen-peer-urls="+m.peerURL,
			"--initial-cluster="+strings.Join(initial, ","), "--election-timeout="+testElectionMS, "--log-format=console")
		eps = append(eps, m.endpoint)
	}
	all := strings.Join(eps, ",")
	running := func() {
		t.Helper()
		for _, m := range ms {
			if !m.p.running() {
				t.Fatalf("%s exited with code %d:\n%s", m.name, m.p.code, tail(m.p.logs(), 30))
			}
		}
	}
	// leaderAndTerm waits until every member reports the same leader and
	// term, and returns them with the member IDs etcdctl prints.
	leaderAndTerm := func() (leader *member, term uint64, ids map[*member]string) {
		t.Helper()
		waitFor(t, 10*time.Second, "one leader and one term", func() (bool, string) {
			running()
			sts, err := statuses(t, all)
			if err != nil {
				return false, err.Error()
			}
			leader, term, ids = nil, sts[0].term, map[*member]string{}
			for _, st := range sts {
				for _, m := range ms {
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
			return leader != nil && len(ids) == 3, fmt.Sprintf("%+v", sts)
		})
		return leader, term, ids
	}

	step("1. cluster up: put, get, leader and term")
	waitFor(t, 30*time.Second, "three members healthy", func() (bool, string) {
		running()
		out, err := ctl(all, "endpoint", "health")
		return err == nil && strings.Count(out, "is healthy") == 3, fmt.Sprint(out, err)
	})
	// Each data directory is on its member's tmpfs, which this process
	// sees only through the member's root.
	for _, m := range ms {
		data := filepath.Join(m.mnt, m.name+".accord")
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s's data directory %s is visible outside its mount namespace (stat: %v)", m.name, data, err)
		}
		if _, err := os.Stat(nsPath(m.p, data)); err != nil {
			t.Fatalf("%s's data directory in its namespace: %v", m.name, err)
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(nsPath(m.p, m.mnt), &st); err != nil || st.Blocks*uint64(st.Bsize) != tmpfsBytes {
			t.Fatalf("%s's tmpfs: %d blocks of %d bytes (%v), want %d bytes", m.name, st.Blocks, st.Bsize, err, tmpfsBytes)
		}
	}
	if out := mustCtl(t, all, "put", "before", "v1"); out != "OK\n" {
		t.Fatalf("put printed %q", out)
	}
	w := startWriter(t, eps)
	w.waitProgress(t, 20, "before the disk fills")
	full, term, ids := leaderAndTerm()
	var healthy []*member
	for _, m := range ms {
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
		running()
		for _, m := range []*member{full, healthy[0]} {
			if _, err := ctl(m.endpoint, "put", "during", "x"); err == nil || !diskFullLine.MatchString(err.Error()) {
				t.Fatalf("put to %s (leader %s) on a full disk: want %q, got %v", m.name, full.name, diskFullLine, err)
			}
		}
		for _, m := range ms {
			for _, consistency := range []string{"s", "l"} {
				if out, err := ctl(m.endpoint, "get", "before", "--print-value-only", "--consistency="+consistency); err != nil || out != "v1\n" {
					t.Fatalf("get --consistency=%s on %s with the leader's disk full: %q %v", consistency, m.name, out, err)
				}
			}
		}
		sts, err := statuses(t, all)
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
		_, err := ctl(full.endpoint, "put", "during", "x")
		return err != nil && diskFullLine.MatchString(err.Error()), fmt.Sprint(err)
	})
	if free := freeBytes(t, mnt); free == 0 || free >= 64<<20 {
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
	if logs := full.p.logs(); !strings.Contains(logs, `msg="disk almost full: refusing writes until space is freed"`) {
		t.Errorf("the leader's log does not say its disk is full:\n%s", tail(logs, 20))
	}

	step("2c. still at 0 bytes free, move leadership to a healthy member")
	want := regexp.MustCompile(`^Leadership transferred from ` + ids[full] + ` to ` + ids[healthy[0]] + `\n$`)
	if out := mustCtl(t, full.endpoint, "move-leader", ids[healthy[0]]); !want.MatchString(out) {
		t.Fatalf("move-leader printed %q", out)
	}
	leader, newTerm, _ := leaderAndTerm()
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
	if _, err := ctl(full.endpoint, "put", "during", "x"); err == nil || !diskFullLine.MatchString(err.Error()) {
		t.Fatalf("put to %s, a full follower: want %q, got %v", full.name, diskFullLine, err)
	}
	if out, err := ctl(full.endpoint, "get", "before", "--print-value-only", "--consistency=s"); err != nil || out != "v1\n" {
		t.Fatalf("serializable get on %s, a full follower: %q %v", full.name, out, err)
	}
	waitFor(t, 5*time.Second, full.name+" fails to append with ENOSPC", func() (bool, string) {
		running()
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
	if logs := full.p.logs(); !strings.Contains(logs, `msg="disk space is back: accepting writes again"`) {
		t.Errorf("%s's log does not say its disk has space again:\n%s", full.name, tail(logs, 20))
	}
	// raft retries the append to the member that was full with a backoff
	// of up to about 10 s; a linearizable read waits until it caught up.
	waitFor(t, 30*time.Second, full.name+" caught up", func() (bool, string) {
		out, err := ctl(full.endpoint, "get", "after", "--print-value-only")
		return err == nil && out == "v3\n", fmt.Sprint(out, err)
	})
	for _, m := range ms {
		for k, v := range map[string]string{"before": "v1", "moved": "v2", "after": "v3"} {
			if out := mustCtl(t, m.endpoint, "get", k, "--print-value-only"); out != v+"\n" {
				t.Errorf("%s: get %s printed %q, want %q", m.name, k, out, v)
			}
		}
		have := map[string]bool{}
		for _, k := range strings.Fields(mustCtl(t, m.endpoint, "get", "w/", "--prefix", "--keys-only")) {
			have[k] = true
		}
		missing := 0
		for _, k := range w.acked {
			if !have[k] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d acknowledged writes are missing", m.name, missing, len(w.acked))
		}
	}
	t.Logf("writer: %d acknowledged, %d failed", len(w.acked), w.fails)
	if leader, final, _ := leaderAndTerm(); leader != healthy[0] || final != term {
		t.Errorf("after recovery: leader %s in term %d, want %s in term %d", leader.name, final, healthy[0].name, term)
	}
	step("done")
}

// diskFullLine is what etcdctl prints for a write refused by the disk
// guard. The message is accord's, so clientv3 does not map it to one of
// etcd's errors and etcdctl prints the gRPC status.
var diskFullLine = regexp.MustCompile(`(?m)^Error: rpc error: code = ResourceExhausted desc = etcdserver: disk full: no space left for the raft log$`)

// The members' tmpfs: big enough for accordd's data directory and the
// guard's 64 MiB, small enough to fill in a moment.
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
