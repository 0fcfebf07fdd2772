package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accordkv/accord"
)

// TestSystemdNotify runs accordd as systemd's Type=notify does: with
// NOTIFY_SOCKET naming a unixgram socket (a path, and an abstract "@"
// name), it sends READY=1 once it serves clients, STOPPING=1 on SIGTERM,
// and exits 0.
func TestSystemdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "notify.sock")
			if abstract {
				name = fmt.Sprintf("@accordd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
			}
			sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			read := func(want string) {
				t.Helper()
				buf := make([]byte, 4096)
				_ = sock.SetReadDeadline(time.Now().Add(30 * time.Second))
				n, err := sock.Read(buf)
				if err != nil {
					t.Fatalf("waiting for %s: %v", want, err)
				}
				if got := string(buf[:n]); got != want {
					t.Fatalf("notify socket got %q, want %q", got, want)
				}
			}
			client, peer, metrics := freePort(t), freePort(t), freePort(t)
			args := []string{"--listen-client-urls=http://127.0.0.1:" + client, "--listen-peer-urls=http://127.0.0.1:" + peer,
				"--listen-metrics-urls=http://127.0.0.1:" + metrics, "--election-timeout=" + testElectionMS}
			pprof := abstract // one of the two runs also checks --enable-pprof
			if pprof {
				args = append(args, "--enable-pprof")
			}
			p := startProc(t, "notify", dir, []string{"NOTIFY_SOCKET=" + name}, args...)
			read("READY=1")
			// READY=1 means it serves: a linearizable read works at once.
			if out := mustCtl(t, "127.0.0.1:"+client, "put", "k", "v"); out != "OK\n" {
				t.Errorf("put printed %q", out)
			}
			// The metrics URL serves /metrics (etcd's names and accord's) and /health.
			for _, c := range []struct{ path, want string }{
				{"/health", `{"health":"true","reason":""}`},
				{"/metrics", "etcd_debugging_mvcc_current_revision 2\n"},
				{"/metrics", "accord_keys 1\n"},
			} {
				path, want := c.path, c.want
				resp, err := http.Get("http://127.0.0.1:" + metrics + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
					t.Errorf("GET %s on the metrics URL: %d %.300s, want %q", path, resp.StatusCode, body, want)
				}
			}
			// Go's profiles, on the client and metrics URLs, only with --enable-pprof.
			for _, port := range []string{client, metrics} {
				resp, err := http.Get("http://127.0.0.1:" + port + "/debug/pprof/cmdline")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if ok := resp.StatusCode == 200 && strings.Contains(string(body), "accordd"); ok != pprof {
					t.Errorf("GET /debug/pprof/cmdline on port %s with --enable-pprof=%v: %d %.200q", port, pprof, resp.StatusCode, body)
				}
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			read("STOPPING=1")
			code, ok := p.wait(20 * time.Second)
			if !ok || code != 0 {
				t.Fatalf("after SIGTERM: exited %v, code %d; want exit code 0", ok, code)
			}
			logs := p.logs()
			for _, want := range []string{`"msg":"ready to serve client requests"`, `"msg":"set initial cluster version","cluster-version":"` + accord.ReleaseVersion + `"`, `"msg":"accordd stopped"`} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s", want)
				}
			}
			// Restarted on the same directory, it serves the data again.
			p.restart()
			waitFor(t, 20*time.Second, "restarted member serves k", func() (bool, string) {
				out, err := ctl("127.0.0.1:"+client, "get", "k", "--print-value-only")
				return err == nil && out == "v\n", fmt.Sprint(out, err)
			})
			p.stop()
		})
	}
}

// TestGossipBootstrap starts three members with only --join and
// --bootstrap-expect=3 (and their own listen URLs): they find each other
// and form one cluster.
func TestGossipBootstrap(t *testing.T) {
	type node struct {
		client, peer, gossip string
		p                    *proc
	}
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = &node{client: "127.0.0.1:" + freePort(t), peer: "127.0.0.1:" + freePort(t), gossip: "127.0.0.1:" + freePort(t)}
	}
	for i, n := range nodes {
		var join []string
		for j, o := range nodes {
			if j != i {
				join = append(join, o.gossip)
			}
		}
		// Each in its own working directory: the default data dir
		// (default.accord) and the default name are the same for all.
		n.p = startProc(t, fmt.Sprintf("g%d", i), t.TempDir(), nil,
			"--join="+strings.Join(join, ","), "--bootstrap-expect=3",
			"--listen-client-urls=http://"+n.client, "--listen-peer-urls=http://"+n.peer, "--listen-gossip-url="+n.gossip,
			"--election-timeout="+testElectionMS)
	}
	eps := nodes[0].client + "," + nodes[1].client + "," + nodes[2].client
	waitFor(t, 60*time.Second, "three started members", func() (bool, string) {
		out, err := ctl(nodes[2].client, "member", "list")
		if err != nil {
			return false, err.Error()
		}
		started := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(line, ", started, ") && strings.HasSuffix(line, ", false") {
				started++
			}
		}
		return started == 3, out
	})
	if out := mustCtl(t, nodes[0].client, "put", "gossip", "works"); out != "OK\n" {
		t.Errorf("put printed %q", out)
	}
	waitFor(t, 10*time.Second, "every member reads the write", func() (bool, string) {
		out, err := ctl(eps, "endpoint", "status")
		if err != nil {
			return false, err.Error()
		}
		leaders := strings.Count(out, ", true, false, ")
		return leaders == 1 && strings.Count(out, "\n") == 3, out
	})
	for _, n := range nodes {
		if out := mustCtl(t, n.client, "get", "gossip", "--print-value-only", "--consistency=s"); out != "works\n" {
			// A serializable read may lag; the linearizable one may not.
			if out := mustCtl(t, n.client, "get", "gossip", "--print-value-only"); out != "works\n" {
				t.Errorf("%s: get gossip printed %q", n.client, out)
			}
		}
	}
	for _, n := range nodes {
		n.p.stop()
	}
}

// TestStartFailures: a data directory of another cluster, or a port in
// use, stops accordd before it serves, with exit code 1 and one line.
func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	// A data directory of cluster "other".
	foreign := filepath.Join(dir, "foreign")
	s, err := accord.Open(foreign, &accord.Options{ClusterName: "other", ElectionTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyURL := "http://" + busy.Addr().String()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"foreign data dir", []string{"--data-dir=" + foreign}, "cannot open --data-dir " + foreign + ": accord: data directory belongs to another node, cluster or version"},
		{"client port in use", []string{"--listen-client-urls=" + busyURL}, "cannot listen on client URL " + busyURL + " (--listen-client-urls): address already in use"},
		{"peer port in use", []string{"--listen-peer-urls=" + busyURL}, "cannot listen on peer URL " + busyURL + " (--listen-peer-urls): address already in use"},
		{"bad URL", []string{"--initial-advertise-peer-urls=10.0.0.1:2380"}, `--initial-advertise-peer-urls: "10.0.0.1:2380" is not a URL`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--election-timeout=" + testElectionMS}, tc.args...)
			if !strings.Contains(strings.Join(args, " "), "--listen-client-urls") {
				args = append(args, "--listen-client-urls=http://127.0.0.1:"+freePort(t))
			}
			if !strings.Contains(strings.Join(args, " "), "--listen-peer-urls") {
				args = append(args, "--listen-peer-urls=http://127.0.0.1:"+freePort(t))
			}
			p := startProc(t, "fail", t.TempDir(), nil, args...)
			code, ok := p.wait(20 * time.Second)
			if !ok {
				t.Fatal("accordd still runs")
			}
			out := p.logs()
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "accordd: ") || !strings.Contains(out, tc.want) {
				t.Errorf("output %q: want one line starting \"accordd: \" saying %q", out, tc.want)
			}
		})
	}
	if entries, err := os.ReadDir(foreign); err != nil || len(entries) == 0 {
		t.Errorf("foreign data dir changed: %v %v", entries, err)
	}
}
