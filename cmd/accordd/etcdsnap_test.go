package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/accordkv/accord/etcdapi"
)

// Moving data between etcd 3.7.3 and accordd by snapshot file, with stock
// etcdctl and etcdutl v3.7.3 and real processes: `etcdctl snapshot save`
// from etcd, `accordd snapshot restore`, and accordd serving the same keys,
// history, revisions and leases; the reverse with etcdutl and etcd; and
// `accordd snapshot status` printing what etcdutl prints.

// getJSON is `etcdctl get -w json`.
type getJSON struct {
	Header struct {
		Revision int64 `json:"revision"`
	} `json:"header"`
	KVs []struct {
		Key            []byte `json:"key"`
		CreateRevision int64  `json:"create_revision"`
		ModRevision    int64  `json:"mod_revision"`
		Version        int64  `json:"version"`
		Value          []byte `json:"value"`
		Lease          int64  `json:"lease"`
	} `json:"kvs"`
}

func getAll(t *testing.T, endpoint string, args ...string) getJSON {
	t.Helper()
	var g getJSON
	out := mustCtl(t, endpoint, append([]string{"get", "-w", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("etcdctl get %v -w json: %v: %s", args, err, out)
	}
	return g
}

var leaseGranted = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(600s\)`)

// writeHistory writes the same history to an etcd or an accordd: versions
// below and above a compaction at 3, a deleted key, a key with a lease of
// 600 s. It returns the lease ID (hex).
func writeHistory(t *testing.T, endpoint string) string {
	t.Helper()
	for _, args := range [][]string{
		{"put", "a", "1"}, // 2
		{"put", "a", "2"}, // 3
		{"put", "b", "x"}, // 4
		{"del", "b"},      // 5
		{"put", "c", "y"}, // 6
	} {
		mustCtl(t, endpoint, args...)
	}
	m := leaseGranted.FindStringSubmatch(mustCtl(t, endpoint, "lease", "grant", "600"))
	if m == nil {
		t.Fatal("lease grant printed no lease")
	}
	mustCtl(t, endpoint, "put", "lk", "v", "--lease="+m[1]) // 7
	mustCtl(t, endpoint, "compact", "3")
	mustCtl(t, endpoint, "put", "a", "3") // 8
	return m[1]
}

// servedState is what a member serves of writeHistory's data.
type servedState struct {
	all    getJSON // every key
	atRev3 getJSON // a as of revision 3, above the compaction
	leases string  // lease list
}

func readServed(t *testing.T, endpoint, lease string) servedState {
	t.Helper()
	st := servedState{
		all:    getAll(t, endpoint, "", "--prefix"),
		atRev3: getAll(t, endpoint, "a", "--rev=3"),
		leases: mustCtl(t, endpoint, "lease", "list"),
	}
	if _, err := ctl(endpoint, "get", "a", "--rev=2"); err == nil || !strings.Contains(err.Error(), "required revision has been compacted") {
		t.Errorf("get a --rev=2 below the compaction at 3: %v, want \"required revision has been compacted\"", err)
	}
	ttl := mustCtl(t, endpoint, "lease", "timetolive", lease, "--keys")
	m := regexp.MustCompile(`^lease ` + lease + ` granted with TTL\(600s\), remaining\((\d+)s\), attached keys\(\[lk\]\)\n$`).FindStringSubmatch(ttl)
	if m == nil {
		t.Errorf("lease timetolive %s --keys printed %q", lease, ttl)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 || n > 600 {
		t.Errorf("lease %s: remaining TTL %ds", lease, n)
	}
	return st
}

// sameServed fails the test unless got serves what want does.
func sameServed(t *testing.T, got, want servedState) {
	t.Helper()
	if got.all.Header.Revision != want.all.Header.Revision || got.all.Header.Revision != 8 {
		t.Errorf("revision %d, want %d (8)", got.all.Header.Revision, want.all.Header.Revision)
	}
	gb, _ := json.Marshal(got.all.KVs)
	wb, _ := json.Marshal(want.all.KVs)
	if !bytes.Equal(gb, wb) || len(want.all.KVs) != 3 {
		t.Errorf("keys:\n got %s\nwant %s", gb, wb)
	}
	gb, _ = json.Marshal(got.atRev3.KVs)
	wb, _ = json.Marshal(want.atRev3.KVs)
	if !bytes.Equal(gb, wb) || len(want.atRev3.KVs) != 1 || string(want.atRev3.KVs[0].Value) != "2" {
		t.Errorf("a at revision 3:\n got %s\nwant %s", gb, wb)
	}
	if got.leases != want.leases {
		t.Errorf("lease list:\n got %q\nwant %q", got.leases, want.leases)
	}
}

// runCmd runs a binary and returns its stdout, stderr and exit code.
func runCmd(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return stdout.String(), stderr.String(), code
}

// sameStatus checks that `accordd snapshot status` prints what `etcdutl
// snapshot status` prints for file, in every output format etcdutl has for
// it, and returns the JSON status.
func sameStatus(t *testing.T, etcdutl, file string) etcdapi.SnapshotStatus {
	t.Helper()
	for _, format := range []string{"", "simple", "table", "json", "fields"} {
		args := []string{"snapshot", "status", file}
		if format != "" {
			args = append(args, "-w", format)
		}
		want, werr, wcode := runCmd(t, etcdutl, args...)
		got, gerr, gcode := runCmd(t, accorddBin, args...)
		if wcode != 0 || gcode != 0 || got != want {
			t.Errorf("snapshot status -w %q:\naccordd (exit %d):\n%s%s\netcdutl (exit %d):\n%s%s", format, gcode, got, gerr, wcode, want, werr)
		}
	}
	var st etcdapi.SnapshotStatus
	out, _, _ := runCmd(t, accorddBin, "snapshot", "status", file, "-w", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// bucketContents reads every key and value of the named top-level
// buckets of a bolt file.
func bucketContents(t *testing.T, path string, names ...string) map[string]map[string]string {
	t.Helper()
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := make(map[string]map[string]string)
	if err := db.View(func(tx *bbolt.Tx) error {
		for _, n := range names {
			b := tx.Bucket([]byte(n))
			if b == nil {
				continue
			}
			m := make(map[string]string)
			if err := b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
				return err
			}
			out[n] = m
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// startRestored starts accordd on a directory `accordd snapshot restore`
// made for member m1 of cluster tok at peer URL peer.
func startRestored(t *testing.T, name, dir, peer string) (*proc, string) {
	t.Helper()
	client := "http://127.0.0.1:" + freePort(t)
	p := startProc(t, name, filepath.Dir(dir), nil,
		"--name=m1", "--data-dir="+dir, "--initial-cluster-token=tok",
		"--initial-advertise-peer-urls="+peer, "--initial-cluster=m1="+peer, "--listen-peer-urls="+peer,
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--election-timeout="+testElectionMS)
	waitFor(t, 30*time.Second, name+" serves", func() (bool, string) {
		out, err := ctl(client, "endpoint", "health")
		return err == nil, fmt.Sprint(out, err)
	})
	return p, client
}

// TestSnapshotFromEtcd moves an etcd 3.7.3 member's data into accordd:
// `etcdctl snapshot save` against etcd, `accordd snapshot status` (as
// etcdutl's), `accordd snapshot restore` with etcdutl's flags, and accordd
// serving every key with its revisions and version, the revision, the
// compaction, the history above it, and the lease with its key; etcd's
// users and roles stay in kv.db as etcd stored them. Then what restore
// must refuse: no trailer without --skip-hash-check, a wrong trailer, a
// storage version newer than 3.7, a damaged bolt file.
func TestSnapshotFromEtcd(t *testing.T) {
	t.Parallel()
	_, etcdutl := etcdBinaries(t)
	work := t.TempDir()
	etcdDir := filepath.Join(work, "etcd-data")
	etcd, ep := startEtcd(t, "e1", etcdDir)
	lease := writeHistory(t, ep)
	for _, args := range [][]string{
		{"user", "add", "root", "--new-user-password=pw-root"},
		{"role", "add", "r1"},
		{"role", "grant-permission", "r1", "readwrite", "/foo"},
		{"user", "add", "u1", "--new-user-password=pw-u1"},
		{"user", "grant-role", "u1", "r1"},
	} {
		mustCtl(t, ep, args...)
	}
	want := readServed(t, ep, lease)
	snap := filepath.Join(work, "etcd.snapshot.db")
	if out := mustCtl(t, ep, "snapshot", "save", snap); !strings.Contains(out, "Snapshot saved at "+snap) {
		t.Fatalf("snapshot save printed %q", out)
	}
	etcd.stopSignalled()

	st := sameStatus(t, etcdutl, snap)
	if st.Revision != 8 || st.TotalKey != 3 || st.Version != "3.7.0" {
		t.Errorf("snapshot status %+v, want revision 8, 3 keys, version 3.7.0", st)
	}

	peer := "http://127.0.0.1:" + freePort(t)
	restored := filepath.Join(work, "m1.accord")
	out, errOut, code := runCmd(t, accorddBin, "snapshot", "restore", snap,
		"--data-dir", restored, "--name", "m1", "--initial-cluster", "m1="+peer,
		"--initial-cluster-token", "tok", "--initial-advertise-peer-urls", peer)
	if code != 0 || !strings.HasPrefix(out, "restored snapshot "+snap+" into "+restored+`: a new single-member cluster "tok", member "m1"`) {
		t.Fatalf("snapshot restore (exit %d): %s%s", code, out, errOut)
	}
	p, client := startRestored(t, "from-etcd", restored, peer)
	sameServed(t, readServed(t, client, lease), want)
	// etcd's default --cors is "*", and so is accordd's.
	if _, h, _ := httpGet(t, http.MethodGet, client+"/version", "http://any.example:1"); h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("default --cors: Access-Control-Allow-Origin %q, want *", h.Get("Access-Control-Allow-Origin"))
	}
	// It takes writes at the next revision.
	if g := mustCtl(t, client, "put", "after", "1", "-w", "json"); !strings.Contains(g, `"revision":9`) {
		t.Errorf("first put after the restore: %s, want revision 9", g)
	}
	p.stop()
	auth := []string{"auth", "authUsers", "authRoles"}
	wantAuth := bucketContents(t, snap, auth...)
	if u := wantAuth["authUsers"]; len(u) != 2 || u["root"] == "" || u["u1"] == "" || len(wantAuth["authRoles"]) != 1 {
		t.Fatalf("etcd's snapshot holds users %q, roles %q: want root and u1, r1", u, wantAuth["authRoles"])
	}
	gotAuth := bucketContents(t, filepath.Join(restored, "kv.db"), auth...)
	if gb, wb := fmt.Sprint(gotAuth), fmt.Sprint(wantAuth); gb != wb {
		t.Errorf("auth buckets in kv.db:\n got %s\nwant %s", gb, wb)
	}

	// --bump-revision with --mark-compacted, as etcdutl's.
	bumped := filepath.Join(work, "bumped.accord")
	if out, errOut, code := runCmd(t, accorddBin, "snapshot", "restore", snap, "--data-dir", bumped, "--name", "m1",
		"--initial-cluster-token", "tok", "--initial-advertise-peer-urls", peer, "--bump-revision", "100", "--mark-compacted"); code != 0 {
		t.Fatalf("snapshot restore --bump-revision (exit %d): %s%s", code, out, errOut)
	}
	p, client = startRestored(t, "bumped", bumped, peer)
	if g := getAll(t, client, "a"); g.Header.Revision != 108 || len(g.KVs) != 1 || string(g.KVs[0].Value) != "3" {
		t.Errorf("after --bump-revision 100: revision %d, a = %+v; want 108 and 3", g.Header.Revision, g.KVs)
	}
	if _, err := ctl(client, "get", "a", "--rev=107"); err == nil || !strings.Contains(err.Error(), "required revision has been compacted") {
		t.Errorf("get --rev=107 after --mark-compacted: %v", err)
	}
	p.stop()
	if _, errOut, code := runCmd(t, accorddBin, "snapshot", "restore", snap, "--data-dir", filepath.Join(work, "x"), "--bump-revision", "5"); code != 1 || !strings.Contains(errOut, "--mark-compacted required if --bump-revision > 0") {
		t.Errorf("--bump-revision without --mark-compacted: exit %d, %s", code, errOut)
	}

	// What restore must refuse, with one line and nothing left behind.
	bare, err := os.ReadFile(filepath.Join(etcdDir, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	withSum := func(db []byte) []byte {
		sum := sha256.Sum256(db)
		return append(append([]byte{}, db...), sum[:]...)
	}
	newer := filepath.Join(work, "newer.db")
	if err := os.WriteFile(newer, bare, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("storageVersion"), []byte("3.8.0"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	newerDB, err := os.ReadFile(newer)
	if err != nil {
		t.Fatal(err)
	}
	snapBytes, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	wrongSum := append([]byte{}, snapBytes...)
	wrongSum[len(wrongSum)-1] ^= 1
	// Damaged bolt files with a good trailer: the pages after the two
	// meta pages replaced by random bytes (three patterns) or zeros.
	damaged := func(seed uint64) []byte {
		d := append([]byte{}, bare[:8192]...)
		rng := rand.New(rand.NewPCG(seed, 2))
		for len(d) < 6*4096 {
			b := byte(0)
			if seed > 0 {
				b = byte(rng.Uint32())
			}
			d = append(d, b)
		}
		return withSum(d)
	}
	for _, c := range []struct {
		name, file string
		data       []byte
		flags      []string
		want       string
	}{
		{"no trailer", "bare.db", bare, nil, "snapshot missing hash but --skip-hash-check=false"},
		{"wrong trailer", "wrong.db", wrongSum, nil, "expected sha256 ["},
		{"newer storage", "newer.snap", withSum(newerDB), nil, "storage version 3.8.0: this build reads etcd storage versions 3.5 to 3.7"},
		{"damaged bolt 1", "damaged1.db", damaged(1), nil, "data corrupt"},
		{"damaged bolt 2", "damaged2.db", damaged(2), nil, "data corrupt"},
		{"damaged bolt 3", "damaged3.db", damaged(3), []string{"--skip-hash-check"}, "data corrupt"},
		{"zeroed pages", "zeroed.db", damaged(0), nil, "data corrupt"},
		{"--wal-dir", "s.db", snapBytes, []string{"--wal-dir=" + filepath.Join(work, "wal")}, "--wal-dir is not supported"},
	} {
		path := filepath.Join(work, c.file)
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(work, "refused")
		_, errOut, code := runCmd(t, accorddBin, append([]string{"snapshot", "restore", path, "--data-dir", dir}, c.flags...)...)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "panic") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line with %q", c.name, code, errOut, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: the refused restore left %s behind (%v)", c.name, dir, err)
		}
	}
	for _, f := range []string{"damaged1.db", "damaged2.db", "damaged3.db", "zeroed.db"} {
		if _, errOut, code := runCmd(t, accorddBin, "snapshot", "status", filepath.Join(work, f)); code != 1 || !strings.Contains(errOut, "data corrupt") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("snapshot status of %s: exit %d, %q; want exit 1 and one line", f, code, errOut)
		}
	}

	// A db copied out of a data directory restores with --skip-hash-check.
	skipped := filepath.Join(work, "skipped.accord")
	if out, errOut, code := runCmd(t, accorddBin, "snapshot", "restore", filepath.Join(work, "bare.db"), "--data-dir", skipped, "--skip-hash-check"); code != 0 {
		t.Fatalf("restore --skip-hash-check (exit %d): %s%s", code, out, errOut)
	}
	if got, err := etcdapi.ReadSnapshotStatus(filepath.Join(skipped, "kv.db")); err != nil || got.Revision != 8 || got.TotalKey != 3 {
		t.Errorf("kv.db restored from a bare db: %+v %v", got, err)
	}
}

// TestSnapshotToEtcd moves accordd's data into etcd 3.7.3: `etcdctl
// snapshot save` against accordd, `etcdutl snapshot status` and
// `accordd snapshot status` agreeing on it, `etcdutl snapshot restore`, and
// etcd serving the same keys, revisions, compaction, history and lease.
func TestSnapshotToEtcd(t *testing.T) {
	t.Parallel()
	_, etcdutl := etcdBinaries(t)
	work := t.TempDir()
	client := "http://127.0.0.1:" + freePort(t)
	p := startProc(t, "to-etcd", work, nil,
		"--name=a1", "--data-dir=a1.accord",
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls=http://127.0.0.1:"+freePort(t), "--election-timeout="+testElectionMS)
	waitFor(t, 30*time.Second, "accordd serves", func() (bool, string) {
		out, err := ctl(client, "endpoint", "health")
		return err == nil, fmt.Sprint(out, err)
	})
	lease := writeHistory(t, client)
	want := readServed(t, client, lease)
	snap := filepath.Join(work, "accord.snapshot.db")
	if out := mustCtl(t, client, "snapshot", "save", snap); !strings.Contains(out, "Snapshot saved at "+snap) {
		t.Fatalf("snapshot save printed %q", out)
	}
	p.stop()

	st := sameStatus(t, etcdutl, snap)
	if st.Revision != 8 || st.TotalKey != 3 || st.Version != "3.6.0" {
		t.Errorf("snapshot status %+v, want revision 8, 3 keys, version 3.6.0", st)
	}

	peer := "http://127.0.0.1:" + freePort(t)
	etcdDir := filepath.Join(work, "e1.etcd")
	if out, errOut, code := runCmd(t, etcdutl, "snapshot", "restore", snap, "--data-dir", etcdDir, "--name", "e1",
		"--initial-cluster", "e1="+peer, "--initial-advertise-peer-urls", peer); code != 0 {
		t.Fatalf("etcdutl snapshot restore (exit %d): %s%s", code, out, errOut)
	}
	e, ep := startEtcdOn(t, "e1", etcdDir, peer)
	sameServed(t, readServed(t, ep, lease), want)
	e.stopSignalled()
}
