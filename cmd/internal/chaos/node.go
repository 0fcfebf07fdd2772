package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/accordkv/accord/internal/freeport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type nodeState int

const (
	stateRunning nodeState = iota
	statePaused            // SIGSTOP
	stateDown              // SIGKILLed by the harness, not yet restarted
	stateExited            // exited by itself (a crash or a refusal to start)
	stateRemoved           // removed from the cluster
)

func (s nodeState) String() string {
	return [...]string{"running", "paused", "down", "exited", "removed"}[s]
}

// node is one accordd process (across its restarts) and its proxy.
type node struct {
	idx        int
	name       string
	ip         string
	peerPort   int // accordd's peer listener
	clientURL  string
	dir        string // data-dir is dir/data, the log dir/accordd.log
	args       []string
	px         *proxy
	cli        *clientv3.Client // pinned to this member
	onExit     func(n *node, err error, tail string)
	accorddBin string

	mu       sync.Mutex // guards the fields below
	memberID uint64
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process has exited
	state    nodeState
	expected bool // the current process's exit is the harness's doing
	starts   int
	refusals int // unexpected exits since the member last served
}

// maxRefusals is how many times in a row a member may exit by itself (a
// crash, or a refusal to start) before the harness stops restarting it.
const maxRefusals = 3

// givenUp reports whether the member exited by itself maxRefusals times in
// a row and is left down.
func (n *node) givenUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state == stateExited && n.refusals >= maxRefusals
}

func (n *node) peerURL() string { return "http://" + n.px.addr() }
func (n *node) logPath() string { return filepath.Join(n.dir, "accordd.log") }

func (n *node) getState() nodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

func (n *node) id() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.memberID
}

func (n *node) setID(id uint64) {
	n.mu.Lock()
	n.memberID = id
	n.mu.Unlock()
}

// start starts the process (the first time or after a kill or an exit).
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("%s is still running", n.name)
		}
	}
	logf, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- chaos: start %d at %s ---\n", n.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.accorddBin, n.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	n.starts++
	n.cmd, n.exited, n.state, n.expected = cmd, make(chan struct{}), stateRunning, false
	exited := n.exited
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		expected := n.expected
		if !expected && n.state != stateRemoved {
			n.state = stateExited
			n.refusals++
		}
		close(exited)
		n.mu.Unlock()
		if !expected && n.onExit != nil {
			n.onExit(n, err, tailFile(n.logPath(), 20))
		}
	}()
	return nil
}

// kill SIGKILLs the process (paused or not) and waits for it to exit. It
// reports whether there was a process to kill.
func (n *node) kill() bool {
	n.mu.Lock()
	if n.cmd == nil || n.state == stateExited || n.state == stateDown || n.state == stateRemoved && n.exitedLocked() {
		n.mu.Unlock()
		return false
	}
	n.expected = true
	cmd, exited := n.cmd, n.exited
	if n.state != stateRemoved {
		n.state = stateDown
	}
	n.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
	return true
}

// hasExited reports whether the current process has exited.
func (n *node) hasExited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited == nil || n.exitedLocked()
}

func (n *node) exitedLocked() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// dump makes a process that does not exit print its goroutines into its
// log (SIGQUIT) and exit; it kills it if that does not work within 10s.
func (n *node) dump() {
	n.mu.Lock()
	n.expected = true
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil || n.hasExited() {
		return
	}
	_ = dumpProcess(cmd.Process)
	if !n.waitExit(10 * time.Second) {
		n.kill()
	}
}

// pause sends SIGSTOP; resume SIGCONT.
func (n *node) pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != stateRunning {
		return fmt.Errorf("%s is %s", n.name, n.state)
	}
	if err := pauseProcess(n.cmd.Process); err != nil {
		return err
	}
	n.state = statePaused
	return nil
}

func (n *node) resume() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == statePaused {
		_ = resumeProcess(n.cmd.Process)
		n.state = stateRunning
	}
}

// markRemoved notes that the member is being removed: its process will
// exit by itself (accordd exits 0 when the cluster removes it).
func (n *node) markRemoved() {
	n.mu.Lock()
	n.expected = true
	n.state = stateRemoved
	n.mu.Unlock()
}

// unmarkRemoved undoes markRemoved after a removal that did not happen.
func (n *node) unmarkRemoved(running bool) {
	n.mu.Lock()
	n.expected = false
	n.state = stateRunning
	if !running {
		n.state = stateExited
	}
	n.mu.Unlock()
}

// waitExit waits up to d for the current process to exit.
func (n *node) waitExit(d time.Duration) bool {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return true
	}
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

// exitCode returns the exit code of the last process, or -1.
func (n *node) exitCode() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.ProcessState == nil {
		return -1
	}
	return n.cmd.ProcessState.ExitCode()
}

// reservePort finds a free TCP port on ip, below the ephemeral range:
// members restart on their ports, and fault proxies listen on port 0 on
// the members' addresses (see package freeport).
func reservePort(ip string) (int, error) { return freeport.Reserve(ip) }

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// accorddFlags lists the flags accordd's --help shows.
func accorddFlags(bin string) (map[string]bool, error) {
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %v: %s", bin, err, out)
	}
	flags := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "--") {
			continue
		}
		name := strings.TrimPrefix(l, "--")
		if i := strings.IndexAny(name, " =\t"); i >= 0 {
			name = name[:i]
		}
		flags[name] = true
	}
	if !flags["initial-cluster"] {
		return nil, errors.New(bin + " --help lists no --initial-cluster: not accordd?")
	}
	return flags, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
