package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/accordkv/accord"
)

// The runbook test performs docs/RUNBOOK.md (the common etcd operations
// tutorial) with accordd and stock etcdctl v3.7.3, asserting on etcdctl's
// output at each step:
//
//  1. start one member from an env file with etcd.conf's variable names
//     (no flags at all), etcdctl version, endpoint status -w table, put/get;
//  2. member add a second member, start it with exactly the variables
//     member add printed; both are listed, and the data is on the new one;
//  3. member remove it: it is no longer listed, and it stops (exit code 0);
//  4. migrate a,b,c to A,B,C: add each new member (listed as unstarted
//     first), start it, wait until endpoint status shows it caught up, then
//     remove a,b,c; all data is present and writes continued throughout;
//  5. upgrade: snapshot save, then restart each member in turn on a newer
//     build with the same environment; the cluster serves throughout, runs
//     at the old version until the last member is upgraded, and the log
//     says so; and the snapshot restores into a new single-member cluster
//     with the data.
//
// Members listen on 127.0.0.2 (LOCAL_IP) and also on 127.0.0.1 for
// clients, as the env file says.

const localIP = "127.0.0.2"

// rbMember is one member of the runbook's cluster.
type rbMember struct {
	name           string
	clientPort     string
	peerPort       string
	endpoint       string // host:port for etcdctl
	clientURL      string
	peerURL        string
	env            []string
	p              *proc
	memberIDHex    string
	removedAlready bool
}

type runbook struct {
	t    *testing.T
	conf string // accordd.conf as shipped
	dir  string // working directory of the processes
}

// newMember fills in accordd.conf for a member called name with fresh
// ports, as an operator does on a new machine.
func (rb *runbook) newMember(name string) *rbMember {
	m := &rbMember{name: name, clientPort: freePort(rb.t), peerPort: freePort(rb.t)}
	m.endpoint = localIP + ":" + m.clientPort
	m.clientURL = "http://" + m.endpoint
	m.peerURL = "http://" + localIP + ":" + m.peerPort
	text := strings.NewReplacer(
		`LOCAL_IP="CHANGE_THIS"`, `LOCAL_IP="`+localIP+`"`,
		`ETCD_NAME="CHANGE_THIS"`, `ETCD_NAME="`+name+`"`,
		`/var/lib/accordd/data`, filepath.Join(rb.dir, name+"-"+m.peerPort+".data"), // a new machine: a new directory
		":2379", ":"+m.clientPort,
		":2380", ":"+m.peerPort,
	).Replace(rb.conf)
	m.env = readEnvFile(rb.t, text)
	m.env = setEnv(m.env, "ETCD_ELECTION_TIMEOUT", testElectionMS)
	m.env = setEnv(m.env, "ETCD_LOG_FORMAT", "console")
	if lvl := os.Getenv("ACCORDD_TEST_LOG"); lvl != "" {
		m.env = setEnv(m.env, "ETCD_LOG_LEVEL", lvl)
	}
	return m
}

// start runs accordd with the member's environment and no flags.
func (rb *runbook) start(m *rbMember) {
	rb.t.Helper()
	m.p = startProc(rb.t, m.name, rb.dir, m.env)
	waitFor(rb.t, 30*time.Second, m.name+" serves", func() (bool, string) {
		if !m.p.running() {
			rb.t.Fatalf("%s exited with code %d:\n%s", m.name, m.p.code, tail(m.p.logs(), 20))
		}
		out, err := ctl(m.endpoint, "endpoint", "health")
		return err == nil && strings.Contains(out, "is healthy"), fmt.Sprint(out, err)
	})
}

// waitStarted waits until `member list` on endpoints shows exactly ms,
// each started, with its name, peer URL and client URL.
func (rb *runbook) waitStarted(endpoints string, ms ...*rbMember) {
	t := rb.t
	t.Helper()
	waitFor(t, 20*time.Second, "members started in member list", func() (bool, string) {
		out, err := ctl(endpoints, "member", "list")
		if err != nil {
			return false, err.Error()
		}
		list := parseMemberList(t, out)
		ok := len(list) == len(ms)
		for _, ml := range list {
			i := slices.IndexFunc(ms, func(m *rbMember) bool { return m.name == ml.name })
			ok = ok && i >= 0 && ml.status == "started" && ml.peer == ms[i].peerURL && ml.client == ms[i].clientURL && ml.learner == "false"
		}
		return ok, out
	})
}

// memberLine is one line of `etcdctl member list`.
type memberLine struct {
	id, status, name, peer, client, learner string
}

func memberList(t *testing.T, endpoints string) []memberLine {
	t.Helper()
	out := mustCtl(t, endpoints, "member", "list")
	return parseMemberList(t, out)
}

func parseMemberList(t *testing.T, out string) []memberLine {
	t.Helper()
	var ms []memberLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, ", ")
		if len(f) != 6 {
			t.Fatalf("member list line %q: want 6 fields", line)
		}
		ms = append(ms, memberLine{f[0], f[1], f[2], f[3], f[4], f[5]})
	}
	return ms
}

// endpointStatus is `etcdctl endpoint status` of one endpoint: raft index
// and applied index (fields 12 and 13 of etcdctl 3.7's simple output).
type endpointStatus struct {
	endpoint, id       string
	leader             bool
	term               uint64
	raftIndex, applied uint64
}

func statuses(t *testing.T, endpoints string) ([]endpointStatus, error) {
	out, err := ctl(endpoints, "endpoint", "status")
	if err != nil {
		return nil, err
	}
	var sts []endpointStatus
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, ", ")
		if len(f) < 13 {
			t.Fatalf("endpoint status line %q: want at least 13 fields", line)
		}
		term, _ := strconv.ParseUint(f[10], 10, 64)
		idx, err1 := strconv.ParseUint(f[11], 10, 64)
		app, err2 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("endpoint status line %q: raft index %q, applied %q", line, f[11], f[12])
		}
		sts = append(sts, endpointStatus{endpoint: f[0], id: f[1], leader: f[8] == "true", term: term, raftIndex: idx, applied: app})
	}
	return sts, nil
}

// waitInSync waits until m's applied index reaches the highest raft index
// any of endpoints reported when the wait began: it has caught up with
// everything committed before it was started.
func (rb *runbook) waitInSync(m *rbMember, endpoints string) {
	rb.t.Helper()
	var target uint64
	waitFor(rb.t, 10*time.Second, "endpoint status of the cluster", func() (bool, string) {
		sts, err := statuses(rb.t, endpoints)
		if err != nil {
			return false, err.Error()
		}
		for _, st := range sts {
			target = max(target, st.raftIndex)
		}
		return true, ""
	})
	waitFor(rb.t, 30*time.Second, m.name+" in sync", func() (bool, string) {
		sts, err := statuses(rb.t, m.endpoint)
		if err != nil {
			return false, err.Error()
		}
		return sts[0].applied >= target, fmt.Sprintf("applied %d, want >= %d", sts[0].applied, target)
	})
}

func joinEndpoints(ms ...*rbMember) string {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.endpoint)
	}
	return strings.Join(eps, ",")
}

// memberAdd runs `etcdctl member add` for m and sets m's environment to
// the variables it printed, as the runbook copies them into etcd.conf.
func (rb *runbook) memberAdd(m *rbMember, endpoints string) {
	t := rb.t
	t.Helper()
	before := memberList(t, endpoints)
	var out string
	waitFor(t, 20*time.Second, "member add "+m.name, func() (bool, string) {
		var err error
		out, err = ctl(endpoints, "member", "add", m.name, "--peer-urls="+m.peerURL)
		return err == nil, fmt.Sprint(err)
	})
	if !regexp.MustCompile(`^Member\s+[0-9a-f]+ added to cluster\s+[0-9a-f]+\n\n`).MatchString(out) {
		t.Fatalf("member add printed:\n%s", out)
	}
	m.memberIDHex = strings.Fields(out)[1]
	printed := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "ETCD_") {
			printed[k] = strings.Trim(v, `"`)
			m.env = setEnv(m.env, k, strings.Trim(v, `"`))
		}
	}
	if printed["ETCD_NAME"] != m.name || printed["ETCD_INITIAL_ADVERTISE_PEER_URLS"] != m.peerURL ||
		printed["ETCD_INITIAL_CLUSTER_STATE"] != "existing" || !strings.Contains(printed["ETCD_INITIAL_CLUSTER"], m.name+"="+m.peerURL) || len(printed) != 4 {
		t.Fatalf("member add printed variables %q", printed)
	}
	// ETCD_INITIAL_CLUSTER must name the members there were, or the new
	// member has nobody to join.
	var missing []string
	for _, ml := range before {
		if !strings.Contains(printed["ETCD_INITIAL_CLUSTER"], ml.peer) {
			missing = append(missing, ml.name+"="+ml.peer)
		}
	}
	if len(missing) > 0 {
		// Reported, then completed so that the rest of the runbook runs.
		t.Errorf("member add %s printed ETCD_INITIAL_CLUSTER=%q without the existing members %q", m.name, printed["ETCD_INITIAL_CLUSTER"], missing)
		m.env = setEnv(m.env, "ETCD_INITIAL_CLUSTER", printed["ETCD_INITIAL_CLUSTER"]+","+strings.Join(missing, ","))
	}
}

// memberRemove removes m through endpoints and waits for its process to
// stop by itself, with exit code 0 (as a removed etcd member does).
func (rb *runbook) memberRemove(m *rbMember, endpoints string) {
	t := rb.t
	t.Helper()
	id := ""
	list := memberList(t, endpoints)
	for _, ml := range list {
		if ml.name == m.name && ml.peer == m.peerURL {
			id = ml.id
		}
	}
	if id == "" {
		t.Fatalf("%s (%s) is not in the member list %+v", m.name, m.peerURL, list)
	}
	out, err := ctl(endpoints, "member", "remove", id)
	if err != nil {
		// The outcome of removing the leader can be unknown to the client;
		// the member list says whether it happened.
		t.Logf("member remove %s: %v", id, err)
	} else if !regexp.MustCompile(`^Member\s+` + id + ` removed from cluster\s+[0-9a-f]+\n$`).MatchString(out) {
		t.Fatalf("member remove printed %q", out)
	}
	waitFor(t, 20*time.Second, m.name+" gone from member list", func() (bool, string) {
		out, err := ctl(endpoints, "member", "list")
		if err != nil {
			return false, err.Error()
		}
		return !strings.Contains(out, id), out
	})
	code, ok := m.p.wait(30 * time.Second)
	if !ok {
		t.Fatalf("removed member %s still runs 30s later", m.name)
	}
	if code != 0 {
		t.Fatalf("removed member %s exited with code %d, want 0", m.name, code)
	}
	if _, err := ctl(m.endpoint, "get", "foo"); err == nil {
		t.Fatalf("removed member %s still serves", m.name)
	}
	m.removedAlready = true
}

// writer puts keys w/00000, w/00001, ... one after the other through a
// clientv3 client until stopped (at most maxWrites), and records which
// writes were acknowledged and when.
type writer struct {
	cli      *clientv3.Client
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu    sync.Mutex // guards acked, ackAt, failed
	acked []string
	ackAt []time.Time
	fails int
}

const maxWrites = 20000

func startWriter(t *testing.T, endpoints []string) *writer {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{cli: cli, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := range maxWrites {
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			key := fmt.Sprintf("w/%05d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := cli.Put(ctx, key, "v")
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, key)
				w.ackAt = append(w.ackAt, time.Now())
			} else {
				w.fails++
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.finish() })
	return w
}

func (w *writer) setEndpoints(ms ...*rbMember) {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.endpoint)
	}
	w.cli.SetEndpoints(eps...)
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitProgress waits until n more writes than now are acknowledged.
func (w *writer) waitProgress(t *testing.T, n int, what string) {
	t.Helper()
	start := w.count()
	waitFor(t, 20*time.Second, "writes continue "+what, func() (bool, string) {
		c := w.count()
		return c >= start+n, fmt.Sprintf("%d acknowledged writes, want %d", c, start+n)
	})
}

func (w *writer) finish() {
	w.stopOnce.Do(func() {
		close(w.stop)
		<-w.done
		_ = w.cli.Close()
	})
}

func TestRunbook(t *testing.T) {
	start := time.Now()
	conf, err := os.ReadFile("accordd.conf")
	if err != nil {
		t.Fatal(err)
	}
	rb := &runbook{t: t, conf: string(conf), dir: t.TempDir()}
	step := func(s string) { t.Logf("%6.1fs  %s", time.Since(start).Seconds(), s) }

	step("1. start one member from the env file")
	a := rb.newMember("a")
	rb.start(a)
	if out := mustCtl(t, a.endpoint, "version"); out != "etcdctl version: 3.7.3\nAPI version: 3.7\n" {
		t.Errorf("etcdctl version printed %q", out)
	}
	table := mustCtl(t, a.endpoint, "endpoint", "status", "-w", "table")
	header := regexp.MustCompile(`│\s+ENDPOINT\s+│\s+ID\s+│\s+VERSION\s+│.*│\s+IS LEADER\s+│\s+IS LEARNER\s+│\s+RAFT TERM\s+│\s+RAFT INDEX\s+│\s+RAFT APPLIED INDEX\s+│`)
	row := regexp.MustCompile(`│ ` + regexp.QuoteMeta(a.endpoint) + ` │\s+` + memberIDHex(nodeID("etcd-cluster", "a")) + ` │ 3\.7\.0\+accord\.[0-9.]+ │.*│\s+true │\s+false │`)
	if !header.MatchString(table) || !row.MatchString(table) {
		t.Errorf("endpoint status -w table:\n%s", table)
	}
	if out := mustCtl(t, a.endpoint, "put", "foo", "bar"); out != "OK\n" {
		t.Errorf("put printed %q", out)
	}
	if out := mustCtl(t, a.endpoint, "get", "foo"); out != "foo\nbar\n" {
		t.Errorf("get printed %q", out)
	}
	// Also on the second client URL, 127.0.0.1.
	if out := mustCtl(t, "127.0.0.1:"+a.clientPort, "get", "foo", "--print-value-only"); out != "bar\n" {
		t.Errorf("get on 127.0.0.1 printed %q", out)
	}
	for path, want := range map[string]string{"/health": `{"health":"true","reason":""}`, "/metrics": "etcd_server_has_leader 1\n"} {
		resp, err := http.Get(a.clientURL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %.300s, want %q", path, resp.StatusCode, body, want)
		}
	}

	step("2. member add b, start it with the printed variables")
	b := rb.newMember("b")
	rb.memberAdd(b, a.endpoint)
	rb.start(b)
	rb.waitStarted(a.endpoint, a, b)
	table = mustCtl(t, b.endpoint, "member", "list", "-w", "table")
	if !regexp.MustCompile(`│\s+ID\s+│\s+STATUS\s+│\s+NAME\s+│\s+PEER ADDRS\s+│\s+CLIENT ADDRS\s+│\s+IS LEARNER\s+│`).MatchString(table) ||
		!regexp.MustCompile(`│\s+`+b.memberIDHex+` │ started │\s+b │ `+regexp.QuoteMeta(b.peerURL)+` │ `+regexp.QuoteMeta(b.clientURL)+` │\s+false │`).MatchString(table) {
		t.Errorf("member list -w table:\n%s", table)
	}
	if out := mustCtl(t, b.endpoint, "get", "foo", "--print-value-only", "--consistency=s"); out != "bar\n" {
		t.Errorf("serializable get on the new member printed %q", out)
	}

	step("3. member remove b")
	rb.memberRemove(b, a.endpoint)
	if ms := memberList(t, a.endpoint); len(ms) != 1 || ms[0].name != "a" {
		t.Errorf("member list after remove: %+v", ms)
	}

	step("4. migrate a,b,c to A,B,C while writing")
	b = rb.newMember("b")
	rb.memberAdd(b, a.endpoint)
	rb.start(b)
	rb.waitStarted(a.endpoint, a, b)
	c := rb.newMember("c")
	rb.memberAdd(c, joinEndpoints(a, b))
	rb.start(c)
	rb.waitStarted(a.endpoint, a, b, c)
	old := []*rbMember{a, b, c}
	w := startWriter(t, []string{a.endpoint, b.endpoint, c.endpoint})
	w.waitProgress(t, 20, "on a,b,c")
	var nu []*rbMember
	for _, name := range []string{"A", "B", "C"} {
		m := rb.newMember(name)
		cur := joinEndpoints(append(slices.Clone(old), nu...)...)
		rb.memberAdd(m, cur)
		// Listed as unstarted: no name and no client URLs yet.
		out := mustCtl(t, cur, "member", "list", "-w", "table")
		if !regexp.MustCompile(`│\s+` + m.memberIDHex + ` │ unstarted │\s+│ ` + regexp.QuoteMeta(m.peerURL) + ` │\s+│\s+false │`).MatchString(out) {
			t.Errorf("member list with unstarted %s:\n%s", name, out)
		}
		rb.start(m)
		nu = append(nu, m)
		rb.waitInSync(m, cur)
		rb.waitStarted(cur, append(slices.Clone(old), nu...)...)
		w.setEndpoints(append(slices.Clone(old), nu...)...)
		w.waitProgress(t, 10, "after adding "+name)
	}
	if sts, err := statuses(t, joinEndpoints(append(slices.Clone(old), nu...)...)); err != nil || len(sts) != 6 {
		t.Fatalf("endpoint status of six members: %v %v", sts, err)
	}
	all := joinEndpoints(nu...)
	for i, m := range old {
		w.setEndpoints(append(slices.Clone(old[i+1:]), nu...)...)
		rb.memberRemove(m, all)
		w.waitProgress(t, 10, "after removing "+m.name)
	}
	ms := memberList(t, all)
	if len(ms) != 3 {
		t.Fatalf("member list after migration: %+v", ms)
	}
	for _, m := range ms {
		if !slices.Contains([]string{"A", "B", "C"}, m.name) || m.status != "started" {
			t.Errorf("member list after migration: %+v", ms)
		}
	}
	if out := mustCtl(t, all, "get", "foo", "--print-value-only"); out != "bar\n" {
		t.Errorf("get foo after migration printed %q", out)
	}

	step("5. upgrade: snapshot save, then restart each member in turn on a newer build")
	snap := filepath.Join(t.TempDir(), "snapshot.db")
	mustCtl(t, nu[0].endpoint, "put", "before-snapshot", "yes")
	if out := mustCtl(t, nu[0].endpoint, "snapshot", "save", snap); !strings.Contains(out, "Snapshot saved at "+snap) {
		t.Errorf("snapshot save printed %q", out)
	}
	for _, m := range nu {
		m.p.stop()
		if _, err := ctl(m.endpoint, "endpoint", "health"); err == nil {
			t.Errorf("%s still healthy after SIGTERM", m.name)
		}
		w.waitProgress(t, 5, "while "+m.name+" is down")
		m.p.restartWith(accorddNextBin)
		rb.waitRestarted(m)
		rb.waitInSync(m, all)
		w.waitProgress(t, 10, "after restarting "+m.name)
	}
	// A, upgraded first, ran in a cluster at the old version; once C is
	// upgraded the cluster version moves up.
	oldV, newV := accord.ReleaseVersion, nextVersion
	if logs := nu[0].p.logs(); !strings.Contains(logs, `msg="set initial cluster version" cluster-version=`+oldV+` member-version=`+newV) ||
		!strings.Contains(logs, `msg="the cluster runs at a lower version than this member until every member is upgraded" cluster-version=`+oldV+` member-version=`+newV) {
		t.Errorf("A's log does not say the cluster runs at %s:\n%s", oldV, grepLines(logs, "cluster version"))
	}
	waitFor(t, 20*time.Second, "cluster version updated in A's log", func() (bool, string) {
		logs := nu[0].p.logs()
		return strings.Contains(logs, `msg="updated cluster version" from=`+oldV+` to=`+newV), grepLines(logs, "cluster version")
	})

	// Every acknowledged write is there.
	w.finish()
	out := mustCtl(t, all, "get", "w/", "--prefix", "--keys-only")
	have := map[string]bool{}
	for _, k := range strings.Fields(out) {
		have[k] = true
	}
	missing := 0
	for _, k := range w.acked {
		if !have[k] {
			missing++
		}
	}
	var maxGap time.Duration
	for i := 1; i < len(w.ackAt); i++ {
		maxGap = max(maxGap, w.ackAt[i].Sub(w.ackAt[i-1]))
	}
	t.Logf("writer: %d acknowledged, %d failed, longest gap between acknowledgements %v", len(w.acked), w.fails, maxGap.Round(time.Millisecond))
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes are missing", missing, len(w.acked))
	}
	if maxGap > 10*time.Second {
		t.Errorf("writes stalled for %v", maxGap)
	}

	step("5b. restore the snapshot into a new cluster")
	restored := filepath.Join(rb.dir, "restored.data")
	peer, client := freePort(t), freePort(t)
	peerURL := "http://127.0.0.1:" + peer
	cmd := exec.Command(accorddBin, "snapshot", "restore", snap, "--data-dir", restored, "--name", "r",
		"--initial-cluster-token", "restored", "--initial-advertise-peer-urls", peerURL)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "restored snapshot "+snap+" into "+restored) {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	r := &rbMember{name: "r", endpoint: "127.0.0.1:" + client}
	r.p = startProc(t, "r", rb.dir, nil, "--name=r", "--data-dir="+restored, "--initial-cluster-token=restored",
		"--listen-peer-urls="+peerURL, "--listen-client-urls=http://"+r.endpoint, "--election-timeout="+testElectionMS)
	waitFor(t, 20*time.Second, "restored member serves", func() (bool, string) {
		out, err := ctl(r.endpoint, "get", "before-snapshot", "--print-value-only")
		return err == nil && out == "yes\n", fmt.Sprint(out, err)
	})
	if out := mustCtl(t, r.endpoint, "get", "foo", "--print-value-only"); out != "bar\n" {
		t.Errorf("restored get foo printed %q", out)
	}
	if ms := memberList(t, r.endpoint); len(ms) != 1 || ms[0].name != "r" || ms[0].id != memberIDHex(nodeID("restored", "r")) || ms[0].peer != peerURL {
		t.Errorf("restored member list: %+v", ms)
	}
	r.p.stop()
	for _, m := range nu {
		m.p.stop()
	}
	step("done")
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitRestarted waits until a restarted member serves again.
func (rb *runbook) waitRestarted(m *rbMember) {
	rb.t.Helper()
	waitFor(rb.t, 30*time.Second, m.name+" serves after restart", func() (bool, string) {
		if !m.p.running() {
			rb.t.Fatalf("%s exited with code %d after restart:\n%s", m.name, m.p.code, tail(m.p.logs(), 20))
		}
		out, err := ctl(m.endpoint, "endpoint", "health")
		return err == nil && strings.Contains(out, "is healthy"), fmt.Sprint(out, err)
	})
}
