package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/internal/freeport"
)

// The end-to-end tests run real accordd processes on loopback and drive
// them with the real etcdctl v3.7.3. TestMain builds both once; a build
// failure fails the run (never a skip).
var (
	accorddBin     string
	accorddNextBin string // advertises nextVersion: a "newer build" for the upgrade
	etcdctlBin     string
	binDir         string // where they are; etcdBinary builds etcd and etcdutl here
	toolsDir       string // the tools module
)

// nextVersion is accord.ReleaseVersion with its minor version bumped.
var nextVersion = func() string {
	parts := strings.SplitN(accord.ReleaseVersion, ".", 3)
	minor, _ := strconv.Atoi(parts[1])
	return parts[0] + "." + strconv.Itoa(minor+1) + ".0"
}()

// testElectionMS is the election timeout of test clusters (--election-timeout):
// short, but long enough for a loaded 2-core machine not to flap.
const (
	testElectionMS  = "300"
	electionTimeout = 300 * time.Millisecond
)

func TestMain(m *testing.M) {
	code, err := buildAndRun(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "accordd tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func buildAndRun(m *testing.M) (int, error) {
	bin, err := os.MkdirTemp("", "accordd-test-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(bin)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return 0, err
	}
	binDir, toolsDir = bin, filepath.Join(root, "tools")
	// go test and go run put their own $GOROOT/bin first on the PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return 0, err
	}
	accorddBin = filepath.Join(bin, "accordd")
	accorddNextBin = filepath.Join(bin, "accordd-next")
	etcdctlBin = filepath.Join(bin, "etcdctl")
	builds := [][]string{
		{"build", "-o", accorddBin, "."},
		{"build", "-ldflags", "-X main.memberVersion=" + nextVersion, "-o", accorddNextBin, "."},
		{"build", "-C", filepath.Join(root, "tools"), "-o", etcdctlBin, "go.etcd.io/etcd/etcdctl/v3"},
	}
	for _, args := range builds {
		cmd := exec.Command(goTool, args...)
		if args[1] == "-C" {
			// tools/ is its own module, outside go.work: its etcd build list
			// must not raise the versions the workspace is tested with.
			cmd.Env = append(os.Environ(), "GOWORK=off")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	code := 0
	// goleak checks the in-process tests (and the etcd client some tests
	// use); its Cleanup gets the exit code instead of exiting, so that the
	// binaries are removed.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment
		// (TestMetricsHandler runs a store in-process).
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
		goleak.Cleanup(func(c int) { code = c }),
	)
	return code, nil
}

// etcd v3.7.3's server and etcdutl, built on first use (only the tests
// that compare with etcd need them).
var (
	etcdBuild struct {
		once          sync.Once
		etcd, etcdutl string
		err           error
	}
)

// etcdBinaries returns the paths of etcd and etcdutl v3.7.3, built from
// the tools module; a build failure fails the test.
func etcdBinaries(t testing.TB) (etcd, etcdutl string) {
	t.Helper()
	b := &etcdBuild
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = err
			return
		}
		etcd, etcdutl := filepath.Join(binDir, "etcd"), filepath.Join(binDir, "etcdutl")
		for _, args := range [][]string{
			{"build", "-o", etcd, "./etcd"},
			{"build", "-o", etcdutl, "go.etcd.io/etcd/etcdutl/v3"},
		} {
			cmd := exec.Command(goTool, args...)
			cmd.Dir = toolsDir
			cmd.Env = append(os.Environ(), "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		b.etcd, b.etcdutl = etcd, etcdutl
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.etcd, b.etcdutl
}

// startEtcd starts a single-member etcd v3.7.3 on 127.0.0.1 with its data
// in dataDir and returns it and its client URL, once it is healthy.
func startEtcd(t testing.TB, name, dataDir string) (*proc, string) {
	t.Helper()
	return startEtcdOn(t, name, dataDir, "http://127.0.0.1:"+freePort(t))
}

// startEtcdOn is startEtcd with the member's peer URL (a restored data
// directory's).
func startEtcdOn(t testing.TB, name, dataDir, peer string) (*proc, string) {
	t.Helper()
	etcd, _ := etcdBinaries(t)
	client := "http://127.0.0.1:" + freePort(t)
	logf, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--name=" + name, "--data-dir=" + dataDir,
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=" + name + "=" + peer,
	}
	p := &proc{t: t, bin: etcd, name: name, args: args, dir: t.TempDir(), log: logf.Name()}
	p.start(logf)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s:\n%s", name, tail(p.logs(), 40))
		}
	})
	waitFor(t, 30*time.Second, name+" serves", func() (bool, string) {
		out, err := ctl(client, "endpoint", "health")
		return err == nil, fmt.Sprint(out, err)
	})
	return p, client
}

// freePort reserves a free port on 127.0.0.1, below the ephemeral range
// (see package freeport): members restart on their ports.
func freePort(t testing.TB) string {
	t.Helper()
	port, err := freeport.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(port)
}

// proc is one accordd process.
type proc struct {
	t    testing.TB
	bin  string // the accordd binary
	name string
	args []string
	env  []string
	dir  string // working directory
	log  string // stderr and stdout go here

	cmd  *exec.Cmd
	done chan struct{}
	code int // exit code, once done is closed
}

// startProc starts accordd with args and exactly env (plus PATH) in the
// working directory dir. The process is killed at the end of the test if
// it still runs; its log is printed if the test failed.
func startProc(t testing.TB, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	return startProcWith(t, accorddBin, name, dir, env, args...)
}

// startProcWith is startProc with another accordd binary.
func startProcWith(t testing.TB, bin, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, bin: bin, name: name, args: args, env: env, dir: dir, log: logf.Name()}
	p.start(logf)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s (%s):\n%s", name, strings.Join(args, " "), tail(p.logs(), 80))
		}
	})
	return p
}

func (p *proc) start(logf *os.File) {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
}

// restart starts the process again with the same arguments and
// environment, appending to its log.
func (p *proc) restart() { p.restartWith(p.bin) }

// restartWith restarts the process on another binary (an upgrade).
func (p *proc) restartWith(bin string) {
	p.t.Helper()
	p.bin = bin
	logf, err := os.OpenFile(p.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "--- restart ---\n")
	p.start(logf)
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.code, true
	case <-time.After(d):
		return 0, false
	}
}

// stop sends SIGTERM and waits for a clean exit (code 0).
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	code, ok := p.wait(20 * time.Second)
	if !ok {
		p.t.Fatalf("%s did not exit within 20s of SIGTERM", p.name)
	}
	if code != 0 {
		p.t.Fatalf("%s exited with code %d after SIGTERM, want 0", p.name, code)
	}
}

// stopSignalled is stop for etcd, which ends on SIGTERM by the signal
// itself (osutil.HandleInterrupts re-raises it): it waits for the exit.
func (p *proc) stopSignalled() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := p.wait(20 * time.Second); !ok {
		p.t.Fatalf("%s did not exit within 20s of SIGTERM", p.name)
	}
}

func (p *proc) kill() {
	if p.cmd == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) logs() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ctl runs etcdctl against endpoints and returns its stdout; the error
// includes stderr.
func ctl(endpoints string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	full := append([]string{"--endpoints=" + endpoints, "--dial-timeout=2s", "--command-timeout=5s"}, args...)
	cmd := exec.CommandContext(ctx, etcdctlBin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"ETCDCTL_API=3"}
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("etcdctl %s: %v: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// mustCtl is ctl that fails the test on error.
func mustCtl(t testing.TB, endpoints string, args ...string) string {
	t.Helper()
	out, err := ctl(endpoints, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond every 200ms until it holds or d passes; then it fails
// the test with what cond last reported.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s: %s", d, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readEnvFile parses an EnvironmentFile (KEY=VALUE or KEY="VALUE", # comments)
// into KEY=VALUE strings, values unexpanded, as systemd hands them over.
func readEnvFile(t testing.TB, text string) []string {
	t.Helper()
	var env []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env file line %q", line)
		}
		env = append(env, k+"="+strings.Trim(v, `"`))
	}
	return env
}

// setEnv returns env with key set to value (replacing an existing entry).
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
