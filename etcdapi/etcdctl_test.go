package etcdapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/accordkv/accord"
)

// The real etcdctl, built once per test binary run from the tools module
// (../tools), which pins go.etcd.io/etcd/etcdctl/v3 v3.7.3. The first build
// on a machine downloads etcdctl's dependencies from the Go module proxy;
// later builds only link, from the module and build caches.
var etcdctlBuild struct {
	once sync.Once
	path string
	err  error
}

// etcdctlVersion is the etcdctl release ../tools/go.mod pins.
const etcdctlVersion = "3.7.3"

// etcdctlBinary returns the path of the etcdctl binary, building it on
// first use. A failed build fails the test: these tests are the proof that
// stock etcdctl works, so they must not quietly skip.
func etcdctlBinary(t testing.TB) string {
	t.Helper()
	etcdctlBuild.once.Do(func() {
		etcdctlBuild.path, etcdctlBuild.err = buildEtcdctl()
	})
	if etcdctlBuild.err != nil {
		t.Fatalf("building etcdctl v%s: %v", etcdctlVersion, etcdctlBuild.err)
	}
	return etcdctlBuild.path
}

// buildEtcdctl builds etcdctl into a directory shared by test runs (so
// that runs do not leave binaries behind), through a private directory and
// a rename, so that concurrent runs never see a half-written binary.
func buildEtcdctl() (string, error) {
	tools, err := filepath.Abs(filepath.Join("..", "tools"))
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "accord-test-etcdctl-v"+etcdctlVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// go test and go run put their own $GOROOT/bin first on the PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-C", tools, "-o", filepath.Join(tmp, "etcdctl"), "go.etcd.io/etcd/etcdctl/v3")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	bin := filepath.Join(dir, "etcdctl")
	if err := os.Rename(filepath.Join(tmp, "etcdctl"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// etcdctl runs the etcdctl binary against a set of endpoints.
type etcdctl struct {
	t     testing.TB
	bin   string
	flags []string // global flags: endpoints, timeouts, TLS

	timeout time.Duration // of one run; default 60 s
}

func newEtcdctl(t testing.TB, endpoints []string, extra ...string) *etcdctl {
	t.Helper()
	return &etcdctl{
		t:   t,
		bin: etcdctlBinary(t),
		flags: append([]string{
			"--endpoints=" + strings.Join(endpoints, ","),
			"--dial-timeout=5s",
			"--command-timeout=15s",
		}, extra...),
	}
}

// with returns a copy of c that reports to t (a subtest's).
func (c *etcdctl) with(t testing.TB) *etcdctl {
	cp := *c
	cp.t = t
	return &cp
}

// cmd returns the command for args, with stdin, stdout and stderr to be
// set by the caller. The environment holds no ETCDCTL_ variables.
func (c *etcdctl) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append(append([]string(nil), c.flags...), args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs etcdctl with stdin and returns its stdout and stderr.
func (c *etcdctl) run(stdin string, args ...string) (stdout, stderr string, err error) {
	timeout := c.timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.cmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// ok runs etcdctl and fails the test unless it succeeds; it returns stdout.
func (c *etcdctl) ok(args ...string) string {
	c.t.Helper()
	return c.okIn("", args...)
}

func (c *etcdctl) okIn(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, lastLines(errOut, 5))
	}
	return out
}

// fails runs etcdctl, expects it to fail, and returns its "Error: ..." line.
func (c *etcdctl) fails(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run("", args...)
	if err == nil {
		c.t.Fatalf("etcdctl %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			return l
		}
	}
	return lastLines(errOut, 1)
}

// lastLines is the last n lines of s (etcdctl logs JSON lines to stderr
// before its error).
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.Contains(l, " / ") && strings.Contains(l, "p/s") {
			continue // check perf's progress bar
		}
		lines = append(lines, l)
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// expectOutput fails unless got is want.
func expectOutput(t testing.TB, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s printed:\n%s\nwant:\n%s", what, got, want)
	}
}

// parseTable reads a table etcdctl printed with -w table (box-drawing or
// ASCII borders) into rows keyed by the header cells.
func parseTable(t testing.TB, out string) []map[string]string {
	t.Helper()
	var hdr []string
	var rows []map[string]string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		var cells []string
		switch {
		case strings.HasPrefix(line, "│"):
			cells = strings.Split(strings.Trim(line, "│"), "│")
		case strings.HasPrefix(line, "|"):
			cells = strings.Split(strings.Trim(line, "|"), "|")
		default:
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if hdr == nil {
			hdr = cells
			continue
		}
		if len(cells) != len(hdr) {
			t.Fatalf("table row %q has %d cells, the header %d:\n%s", line, len(cells), len(hdr), out)
		}
		row := map[string]string{}
		for i, h := range hdr {
			row[h] = cells[i]
		}
		rows = append(rows, row)
	}
	if hdr == nil {
		t.Fatalf("no table in:\n%s", out)
	}
	return rows
}

// tableHeader is the header row of a table etcdctl printed.
func tableHeader(out string) string {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "│") || strings.HasPrefix(line, "|") {
			cells := strings.FieldsFunc(line, func(r rune) bool { return r == '│' || r == '|' })
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return strings.Join(cells, ", ")
		}
	}
	return ""
}

// TestEtcdctl runs etcdctl's everyday commands against one member.
func TestEtcdctl(t *testing.T) {
	t.Parallel()
	c := newAPICluster(t, 1, nil)
	ctl := newEtcdctl(t, c.Endpoints())
	nd := c.nodes[0]
	memberHex := fmt.Sprintf("%x", MemberID(nd.Store().NodeID()))

	t.Run("Version", func(t *testing.T) {
		ctl := ctl.with(t)
		expectOutput(t, "version", ctl.ok("version"), "etcdctl version: "+etcdctlVersion+"\nAPI version: 3.7\n")
	})

	t.Run("KV", func(t *testing.T) {
		ctl := ctl.with(t)
		expectOutput(t, "put", ctl.ok("put", "kv/a", "1"), "OK\n")
		rev := nd.Store().Revision()
		expectOutput(t, "put", ctl.ok("put", "kv/a", "2"), "OK\n")
		expectOutput(t, "put", ctl.ok("put", "kv/b", "3"), "OK\n")
		expectOutput(t, "put --prev-kv", ctl.ok("put", "kv/c", "4", "--prev-kv"), "OK\n")
		expectOutput(t, "get", ctl.ok("get", "kv/a"), "kv/a\n2\n")
		expectOutput(t, "get missing", ctl.ok("get", "kv/none"), "")
		expectOutput(t, "get --prefix", ctl.ok("get", "--prefix", "kv/"), "kv/a\n2\nkv/b\n3\nkv/c\n4\n")
		expectOutput(t, "get --rev", ctl.ok("get", "kv/a", "--rev="+strconv.FormatInt(rev, 10)), "kv/a\n1\n")
		expectOutput(t, "get --prefix --keys-only", ctl.ok("get", "--prefix", "--keys-only", "kv/"), "kv/a\n\nkv/b\n\nkv/c\n\n")
		expectOutput(t, "get --prefix --limit", ctl.ok("get", "--prefix", "--limit=1", "kv/"), "kv/a\n2\n")
		expectOutput(t, "get --from-key", ctl.ok("get", "--from-key", "kv/b", "--print-value-only"), "3\n4\n")
		expectOutput(t, "get --consistency=s", ctl.ok("get", "kv/b", "--consistency=s"), "kv/b\n3\n")

		// -w json: etcdctl's JSON (numbers, base64 keys and values).
		var js struct {
			Header struct {
				ClusterID uint64 `json:"cluster_id"`
				MemberID  uint64 `json:"member_id"`
				Revision  int64  `json:"revision"`
				RaftTerm  uint64 `json:"raft_term"`
			} `json:"header"`
			Kvs []struct {
				Key            []byte `json:"key"`
				Value          []byte `json:"value"`
				CreateRevision int64  `json:"create_revision"`
				ModRevision    int64  `json:"mod_revision"`
				Version        int64  `json:"version"`
			} `json:"kvs"`
			Count int64 `json:"count"`
		}
		out := ctl.ok("get", "--prefix", "kv/", "-w", "json")
		if err := json.Unmarshal([]byte(out), &js); err != nil {
			t.Fatalf("get -w json: %v\n%s", err, out)
		}
		if !strings.Contains(out, `"key":"a3YvYQ=="`) {
			t.Fatalf("get -w json: keys are not base64: %s", out)
		}
		h := js.Header
		if h.ClusterID != ClusterID(nd.Store().ClusterName()) || h.MemberID != MemberID(nd.Store().NodeID()) || h.Revision != nd.Store().Revision() || h.RaftTerm == 0 {
			t.Fatalf("get -w json header: %+v", h)
		}
		if js.Count != 3 || len(js.Kvs) != 3 || string(js.Kvs[0].Key) != "kv/a" || string(js.Kvs[0].Value) != "2" ||
			js.Kvs[0].CreateRevision != rev || js.Kvs[0].ModRevision != rev+1 || js.Kvs[0].Version != 2 {
			t.Fatalf("get -w json: %s", out)
		}
		if out := ctl.ok("get", "--prefix", "kv/", "--count-only", "-w", "fields"); !strings.Contains(out, "\"Count\" : 3\n") || strings.Contains(out, "\"Key\"") {
			t.Fatalf("get --count-only -w fields printed:\n%s", out)
		}

		// txn, in etcdctl's interactive format: compares, a blank line,
		// success ops, a blank line, failure ops, a blank line.
		txn := "value(\"kv/a\") = \"2\"\nmod(\"kv/b\") > \"0\"\n\nput kv/t yes\nget kv/a\n\nput kv/t no\n\n"
		expectOutput(t, "txn (succeeding)", ctl.okIn(txn, "txn"), "SUCCESS\n\nOK\n\nkv/a\n2\n")
		txn = "value(\"kv/a\") = \"9\"\n\nput kv/t yes\n\nget kv/t\ndel kv/t\n\n"
		expectOutput(t, "txn (failing)", ctl.okIn(txn, "txn"), "FAILURE\n\nkv/t\nyes\n\n1\n")
		expectOutput(t, "txn -i prompts", ctl.okIn("\nget kv/b\n\n\n", "txn", "-i"),
			"compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nkv/b\n3\n")

		expectOutput(t, "del", ctl.ok("del", "kv/none"), "0\n")
		expectOutput(t, "del --prefix", ctl.ok("del", "--prefix", "kv/"), "3\n")
		expectOutput(t, "get after del", ctl.ok("get", "--prefix", "kv/"), "")
		expectOutput(t, "get --rev after del", ctl.ok("get", "--prefix", "kv/", "--rev="+strconv.FormatInt(rev, 10)), "kv/a\n1\n")
		if e := ctl.fails("get", "kv/a", "--rev=1000000"); e != "Error: etcdserver: mvcc: required revision is a future revision" {
			t.Fatalf("get --rev in the future: %s", e)
		}
	})

	t.Run("Compaction", func(t *testing.T) {
		ctl := ctl.with(t)
		ctl.ok("put", "cmp/k", "old")
		old := nd.Store().Revision()
		ctl.ok("put", "cmp/k", "new")
		cur := nd.Store().Revision()
		expectOutput(t, "compaction", ctl.ok("compaction", strconv.FormatInt(cur, 10)), fmt.Sprintf("compacted revision %d\n", cur))
		if e := ctl.fails("get", "cmp/k", "--rev="+strconv.FormatInt(old, 10)); e != "Error: etcdserver: mvcc: required revision has been compacted" {
			t.Fatalf("get --rev below the compaction: %s", e)
		}
		if e := ctl.fails("compaction", strconv.FormatInt(old, 10)); e != "Error: etcdserver: mvcc: required revision has been compacted" {
			t.Fatalf("compaction below the compaction: %s", e)
		}
		expectOutput(t, "get", ctl.ok("get", "cmp/k"), "cmp/k\nnew\n")
	})

	t.Run("Watch", func(t *testing.T) {
		ctl := ctl.with(t)
		ctl.ok("put", "w/a", "1")
		from := nd.Store().Revision()
		ctl.ok("put", "w/a", "2")
		ctl.ok("put", "w/b", "3")
		ctl.ok("del", "w/b")
		ctl.ok("put", "other", "x")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := ctl.cmd(ctx, "watch", "--rev="+strconv.FormatInt(from, 10), "--prefix", "--prev-kv", "w/")
		var out, errOut syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			cancel()
			<-done
		}()
		waitOutput := func(want string) {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for out.String() != want {
				select {
				case err := <-done:
					done <- err
					t.Fatalf("watch exited: %v\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", err, out.String(), want, lastLines(errOut.String(), 5))
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("watch printed:\n%s\nwant:\n%s\nstderr:\n%s", out.String(), want, lastLines(errOut.String(), 5))
				}
			}
		}
		// History from --rev: creates without a previous value, updates and
		// deletes with it (a delete's key-value is the key alone).
		history := "PUT\nw/a\n1\n" +
			"PUT\nw/a\n1\nw/a\n2\n" +
			"PUT\nw/b\n3\n" +
			"DELETE\nw/b\n3\nw/b\n\n"
		waitOutput(history)
		// And then live events.
		ctl.ok("put", "w/c", "4")
		ctl.ok("put", "w/a", "5")
		waitOutput(history + "PUT\nw/c\n4\n" + "PUT\nw/a\n2\nw/a\n5\n")
	})

	t.Run("Lease", func(t *testing.T) {
		ctl := ctl.with(t)
		out := ctl.ok("lease", "grant", "100")
		m := regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\(100s\)\n$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("lease grant printed %q", out)
		}
		id := m[1]
		expectOutput(t, "put --lease", ctl.ok("put", "lk/1", "v", "--lease="+id), "OK\n")
		expectOutput(t, "put --lease", ctl.ok("put", "lk/2", "v", "--lease="+id), "OK\n")
		out = ctl.ok("lease", "timetolive", id, "--keys")
		if !regexp.MustCompile(`^lease ` + id + ` granted with TTL\(100s\), remaining\((9\d|100)s\), attached keys\(\[lk/1 lk/2\]\)\n$`).MatchString(out) {
			t.Fatalf("lease timetolive --keys printed %q", out)
		}
		out = ctl.ok("lease", "timetolive", id)
		if !regexp.MustCompile(`^lease ` + id + ` granted with TTL\(100s\), remaining\((9\d|100)s\)\n$`).MatchString(out) {
			t.Fatalf("lease timetolive printed %q", out)
		}
		expectOutput(t, "lease keep-alive --once", ctl.ok("lease", "keep-alive", "--once", id), "lease "+id+" keepalived with TTL(100)\n")
		out = ctl.ok("lease", "list")
		if !strings.HasPrefix(out, "found ") || !strings.Contains(out, "\n"+id+"\n") {
			t.Fatalf("lease list printed %q", out)
		}
		expectOutput(t, "lease revoke", ctl.ok("lease", "revoke", id), "lease "+id+" revoked\n")
		expectOutput(t, "get after revoke", ctl.ok("get", "--prefix", "lk/"), "")
		expectOutput(t, "lease timetolive after revoke", ctl.ok("lease", "timetolive", id), "lease "+id+" already expired\n")
		if out := ctl.ok("lease", "list"); strings.Contains(out, id) {
			t.Fatalf("lease list after revoke printed %q", out)
		}
		if e := ctl.fails("lease", "revoke", id); e != "Error: failed to revoke lease (etcdserver: requested lease not found)" {
			t.Fatalf("revoke of a revoked lease: %s", e)
		}
	})

	t.Run("MemberList", func(t *testing.T) {
		ctl := ctl.with(t)
		var out string
		eventually(t, 10*time.Second, "member list shows the member started", func() error {
			out = ctl.ok("member", "list")
			want := fmt.Sprintf("%s, started, node0, http://%s, %s, false\n", memberHex, nd.opts.PeerAddr, nd.Endpoint())
			if out != want {
				return fmt.Errorf("member list printed %q, want %q", out, want)
			}
			return nil
		})
		out = ctl.ok("member", "list", "-w", "table")
		expectOutput(t, "member list -w table header", tableHeader(out), "ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER")
		rows := parseTable(t, out)
		if len(rows) != 1 || rows[0]["ID"] != memberHex || rows[0]["STATUS"] != "started" || rows[0]["NAME"] != "node0" ||
			rows[0]["PEER ADDRS"] != "http://"+nd.opts.PeerAddr || rows[0]["CLIENT ADDRS"] != nd.Endpoint() || rows[0]["IS LEARNER"] != "false" {
			t.Fatalf("member list -w table:\n%s", out)
		}
	})

	t.Run("Endpoint", func(t *testing.T) {
		ctl := ctl.with(t)
		out := ctl.ok("endpoint", "health")
		if !regexp.MustCompile(`^` + regexp.QuoteMeta(nd.Endpoint()) + ` is healthy: successfully committed proposal: took = \S+\n$`).MatchString(out) {
			t.Fatalf("endpoint health printed %q", out)
		}
		out = ctl.ok("endpoint", "status", "-w", "table")
		rows := parseTable(t, out)
		if len(rows) != 1 {
			t.Fatalf("endpoint status -w table:\n%s", out)
		}
		r := rows[0]
		if r["ENDPOINT"] != nd.Endpoint() || r["ID"] != memberHex || r["VERSION"] != Version || r["IS LEADER"] != "true" ||
			r["IS LEARNER"] != "false" || r["DB SIZE"] == "0 B" || r["RAFT TERM"] == "0" || r["ERRORS"] != "" {
			t.Fatalf("endpoint status -w table:\n%s", out)
		}
		out = ctl.ok("endpoint", "status")
		if !strings.HasPrefix(out, nd.Endpoint()+", "+memberHex+", "+Version+", ") {
			t.Fatalf("endpoint status printed %q", out)
		}
	})

	t.Run("Snapshot", func(t *testing.T) {
		ctl := ctl.with(t)
		ctl.ok("put", "snap/k", "v")
		path := filepath.Join(t.TempDir(), "snap.db")
		out := ctl.ok("snapshot", "save", path)
		if !strings.HasPrefix(out, "Snapshot saved at "+path+"\n") {
			t.Fatalf("snapshot save printed %q", out)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 512 || fi.Size()%512 != 32 {
			t.Fatalf("snapshot file is %d bytes: want a multiple of 512 plus a 32-byte sha256", fi.Size())
		}
	})
}

// TestEtcdctlCluster runs etcdctl's cluster commands against three
// members: member list, endpoint status and health across the cluster,
// and a learner's life: member add --learner, start, promote, remove.
func TestEtcdctlCluster(t *testing.T) {
	t.Parallel()
	c := newAPICluster(t, 3, nil)
	ctl := newEtcdctl(t, c.Endpoints())
	// etcdctl against a follower only: requests are forwarded.
	follower := c.nodes[0]
	if follower == c.leaderNode() {
		follower = c.nodes[1]
	}
	fctl := newEtcdctl(t, []string{follower.Endpoint()})

	memberHex := func(nd *apiNode) string { return fmt.Sprintf("%x", MemberID(nd.Store().NodeID())) }
	memberRow := func(nd *apiNode) string {
		return fmt.Sprintf("%s, started, node%d, http://%s, %s, false", memberHex(nd), nd.idx, nd.opts.PeerAddr, nd.Endpoint())
	}
	// memberList waits until member list (sorted) is want.
	memberList := func(t *testing.T, what string, want ...string) {
		t.Helper()
		eventually(t, 15*time.Second, what, func() error {
			out, errOut, err := ctl.run("", "member", "list")
			if err != nil {
				return fmt.Errorf("%v: %s", err, lastLines(errOut, 1))
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			slices.Sort(lines)
			slices.Sort(want)
			if strings.Join(lines, "\n") != strings.Join(want, "\n") {
				return fmt.Errorf("member list printed:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
			}
			return nil
		})
	}
	started := []string{memberRow(c.nodes[0]), memberRow(c.nodes[1]), memberRow(c.nodes[2])}

	t.Run("KVOnFollower", func(t *testing.T) {
		ctl := ctl.with(t)
		expectOutput(t, "put on a follower", fctl.with(t).ok("put", "f/k", "v"), "OK\n")
		expectOutput(t, "get on a follower", fctl.with(t).ok("get", "f/k"), "f/k\nv\n")
		expectOutput(t, "get on the cluster", ctl.ok("get", "f/k"), "f/k\nv\n")
	})

	t.Run("MemberList", func(t *testing.T) {
		ctl := ctl.with(t)
		memberList(t, "member list shows three started members", started...)
		out := ctl.ok("member", "list", "-w", "table")
		expectOutput(t, "member list -w table header", tableHeader(out), "ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER")
		rows := parseTable(t, out)
		if len(rows) != 3 {
			t.Fatalf("member list -w table:\n%s", out)
		}
		for _, r := range rows {
			if r["STATUS"] != "started" || !strings.HasPrefix(r["NAME"], "node") || r["IS LEARNER"] != "false" {
				t.Fatalf("member list -w table:\n%s", out)
			}
		}
		// Through a follower, serializable too.
		out = fctl.with(t).ok("member", "list", "--consistency=s")
		if len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
			t.Fatalf("member list on a follower printed:\n%s", out)
		}
	})

	t.Run("EndpointStatusCluster", func(t *testing.T) {
		ctl := ctl.with(t)
		out := ctl.ok("endpoint", "status", "--cluster", "-w", "table")
		rows := parseTable(t, out)
		if len(rows) != 3 {
			t.Fatalf("endpoint status --cluster -w table:\n%s", out)
		}
		leaders := 0
		for _, r := range rows {
			var nd *apiNode
			for _, n := range c.nodes {
				if n.Endpoint() == r["ENDPOINT"] {
					nd = n
				}
			}
			if nd == nil || r["ID"] != memberHex(nd) || r["VERSION"] != Version || r["IS LEARNER"] != "false" || r["DB SIZE"] == "0 B" {
				t.Fatalf("endpoint status --cluster -w table:\n%s", out)
			}
			if r["IS LEADER"] == "true" {
				leaders++
			}
		}
		if leaders != 1 {
			t.Fatalf("endpoint status --cluster shows %d leaders:\n%s", leaders, out)
		}
		out = ctl.ok("endpoint", "health", "--cluster")
		if n := strings.Count(out, " is healthy: successfully committed proposal"); n != 3 {
			t.Fatalf("endpoint health --cluster printed:\n%s", out)
		}
	})

	t.Run("Learner", func(t *testing.T) {
		ctl := ctl.with(t)
		// An unstarted learner: no name, no client URLs until it runs.
		ghost := freePort(t)
		out := ctl.ok("member", "add", "ghost", "--learner", "--peer-urls=http://"+ghost)
		m := regexp.MustCompile(`^Member +([0-9a-f]+) added as learner to cluster +([0-9a-f]+)\n`).FindStringSubmatch(out)
		if m == nil || m[2] != fmt.Sprintf("%x", ClusterID(c.nodes[0].Store().ClusterName())) {
			t.Fatalf("member add --learner printed:\n%s", out)
		}
		ghostID := m[1]
		memberList(t, "member list shows the unstarted learner", append(started[:3:3], fmt.Sprintf("%s, unstarted, , http://%s, , true", ghostID, ghost))...)
		expectOutput(t, "member remove", ctl.ok("member", "remove", ghostID), fmt.Sprintf("Member %16s removed from cluster %16x\n", ghostID, ClusterID(c.nodes[0].Store().ClusterName())))
		memberList(t, "member list after remove", started...)

		// A learner that runs, is promoted, then removed.
		peer := freePort(t)
		out = ctl.ok("member", "add", "node3", "--learner", "--peer-urls=http://"+peer)
		m = regexp.MustCompile(`^Member +([0-9a-f]+) added as learner to cluster +([0-9a-f]+)\n\n`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("member add --learner printed:\n%s", out)
		}
		id := m[1]
		var initial []string
		for _, nd := range c.nodes {
			initial = append(initial, fmt.Sprintf("node%d=http://%s", nd.idx, nd.opts.PeerAddr))
		}
		initial = append(initial, "node3=http://"+peer)
		slices.Sort(initial)
		envLines := regexp.MustCompile(`(?m)^ETCD_INITIAL_CLUSTER="([^"]*)"$`).FindStringSubmatch(out)
		var gotInitial []string
		if envLines != nil {
			gotInitial = strings.Split(envLines[1], ",")
			slices.Sort(gotInitial)
		}
		if !strings.Contains(out, "\nETCD_NAME=\"node3\"\n") || strings.Join(gotInitial, ",") != strings.Join(initial, ",") ||
			!strings.Contains(out, "\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://"+peer+"\"\n") ||
			!strings.HasSuffix(out, "\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n") {
			t.Fatalf("member add --learner printed:\n%s\nwant ETCD_INITIAL_CLUSTER=%q", out, strings.Join(initial, ","))
		}

		nd := &apiNode{c: c, idx: 3, dir: t.TempDir(), clientAddr: freePort(t)}
		nd.opts = accord.Options{
			Logger:          testLogger(t, "n3"),
			ElectionTimeout: testElection,
			UnsafeNoFsync:   true,
			PeerAddr:        peer,
			NodeName:        "node3",
			ClientURLs:      []string{"http://" + nd.clientAddr},
			JoinExisting:    true,
			Peers:           []string{c.nodes[0].opts.PeerAddr},
		}
		nd.apiOpts = Options{Logger: testLogger(t, "api3")}
		c.nodes = append(c.nodes, nd)
		nd.start()
		if got := fmt.Sprintf("%x", MemberID(nd.Store().NodeID())); got != id {
			t.Fatalf("member add printed ID %s; the node that joined has %s", id, got)
		}
		learnerRow := fmt.Sprintf("%s, started, node3, http://%s, %s, true", id, peer, nd.Endpoint())
		memberList(t, "member list shows the learner started", append(started[:3:3], learnerRow)...)

		// etcd refuses to promote a learner that has not caught up; retry.
		want := fmt.Sprintf("Member %16s promoted in cluster %16x\n", id, ClusterID(c.nodes[0].Store().ClusterName()))
		eventually(t, 15*time.Second, "member promote", func() error {
			out, errOut, err := ctl.run("", "member", "promote", id)
			if err != nil {
				if strings.Contains(errOut, "in sync with leader") {
					return errors.New(lastLines(errOut, 1))
				}
				t.Fatalf("member promote: %v\n%s\n%s", err, out, lastLines(errOut, 3))
			}
			if out != want {
				t.Fatalf("member promote printed %q, want %q", out, want)
			}
			return nil
		})
		memberList(t, "member list shows the promoted member", append(started[:3:3], strings.TrimSuffix(learnerRow, "true")+"false")...)

		expectOutput(t, "member remove", ctl.ok("member", "remove", id), fmt.Sprintf("Member %16s removed from cluster %16x\n", id, ClusterID(c.nodes[0].Store().ClusterName())))
		nd.kill()
		memberList(t, "member list after remove", started...)
		if e := ctl.fails("member", "remove", id); e != "Error: etcdserver: member not found" {
			t.Fatalf("removing a removed member: %s", e)
		}
	})
}

// TestEtcdctlTLS runs etcdctl against a member that requires client
// certificates.
func TestEtcdctlTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, ep := newTLSCluster(t, pki, true)
	ctl := newEtcdctl(t, []string{ep}, "--cacert="+pki.caFile, "--cert="+pki.certFile, "--key="+pki.keyFile)
	expectOutput(t, "put over TLS", ctl.ok("put", "k", "v"), "OK\n")
	expectOutput(t, "get over TLS", ctl.ok("get", "k"), "k\nv\n")
	if out := ctl.ok("endpoint", "health"); !strings.HasPrefix(out, ep+" is healthy") {
		t.Fatalf("endpoint health over TLS printed %q", out)
	}
	anon := newEtcdctl(t, []string{ep}, "--cacert="+pki.caFile, "--dial-timeout=1s", "--command-timeout=2s")
	if out, _, err := anon.run("", "get", "k"); err == nil {
		t.Fatalf("etcdctl without a client certificate was served: %q", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
