package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// cluster is a set of accordd processes on loopback, each behind its
// fault proxy, with the clients that talk to them.
type cluster struct {
	cfg           Config
	dir           string
	token         string
	net           *network
	flags         map[string]bool // accordd's flags
	rep           *Report
	snapshotCount uint64

	// onAdd and onRemove are called when a member joins (after it serves)
	// and when it is removed; the run starts and stops its watcher.
	onAdd, onRemove func(*node)

	mu      sync.Mutex // guards the fields below
	nodes   []*node    // every node ever created, by idx-1
	members []*node    // current members, in the order they joined
	clients []pinnedClient
	admin   *clientv3.Client // on every member
	closed  bool
}

type etcdMember = pb.Member

// pinnedClient is a client and the member slot it talks to (-1: all).
type pinnedClient struct {
	cli *clientv3.Client
	pin int
}

// newClient returns an etcd client on endpoints that reconnects quickly
// after a member restarts and logs nothing.
func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
}

// startCluster starts cfg.Members members and waits until each serves.
func startCluster(ctx context.Context, cfg Config, dir string, rep *Report, snapshotCount uint64) (*cluster, error) {
	flags, err := accorddFlags(cfg.Accordd)
	if err != nil {
		return nil, err
	}
	c := &cluster{
		cfg:           cfg,
		dir:           dir,
		token:         fmt.Sprintf("chaos-%d", cfg.Seed),
		net:           newNetwork(cfg.Seed),
		flags:         flags,
		rep:           rep,
		snapshotCount: snapshotCount,
	}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	var initial []string
	for range cfg.Members {
		n, err := c.newNode()
		if err != nil {
			return nil, err
		}
		initial = append(initial, n.name+"="+n.peerURL())
	}
	for _, n := range c.nodes {
		n.args = c.args(n, strings.Join(initial, ","), "new")
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	c.members = slices.Clone(c.nodes)
	if c.admin, err = newClient(c.endpoints()); err != nil {
		return nil, err
	}
	for _, n := range c.nodes {
		if err := c.waitServing(ctx, n, cfg.RecoverTimeout+30*time.Second); err != nil {
			return nil, fmt.Errorf("chaos: the new cluster did not start: %w\n%s", err, tailFile(n.logPath(), 30))
		}
	}
	if err := c.learnIDs(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// newNode allocates the next member index, its ports, directory, client
// and proxy. The caller sets its arguments and starts it.
func (c *cluster) newNode() (*node, error) {
	c.mu.Lock()
	idx := len(c.nodes) + 1
	c.mu.Unlock()
	if idx > 240 {
		return nil, errors.New("chaos: out of loopback addresses")
	}
	ip := nodeIP(idx)
	peerPort, err := reservePort(ip)
	if err != nil {
		return nil, fmt.Errorf("chaos: reserving a port on %s (does this system route 127.0.0.0/8 to loopback?): %w", ip, err)
	}
	clientPort, err := reservePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	n := &node{
		idx:        idx,
		name:       fmt.Sprintf("n%d", idx),
		ip:         ip,
		peerPort:   peerPort,
		clientURL:  fmt.Sprintf("http://127.0.0.1:%d", clientPort),
		accorddBin: c.cfg.Accordd,
		onExit:     c.exited,
	}
	n.dir = filepath.Join(c.dir, n.name)
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		ln.Close()
		return nil, err
	}
	n.px = startProxy(c.net, idx, ln, net.JoinHostPort(ip, itoa(peerPort)))
	if n.cli, err = newClient([]string{n.clientURL}); err != nil {
		n.px.close()
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

// args are accordd's arguments for n.
func (c *cluster) args(n *node, initialCluster, state string) []string {
	a := []string{
		"--name=" + n.name,
		"--data-dir=" + filepath.Join(n.dir, "data"),
		"--listen-peer-urls=http://" + net.JoinHostPort(n.ip, itoa(n.peerPort)),
		"--initial-advertise-peer-urls=" + n.peerURL(),
		"--listen-client-urls=" + n.clientURL,
		"--advertise-client-urls=" + n.clientURL,
		"--initial-cluster=" + initialCluster,
		"--initial-cluster-state=" + state,
		"--initial-cluster-token=" + c.token,
		"--election-timeout=" + itoa(int(c.cfg.ElectionTimeout/time.Millisecond)),
		"--snapshot-count=" + fmt.Sprint(c.snapshotCount),
		"--log-level=" + c.cfg.LogLevel,
	}
	if c.flags["snapshot-interval"] {
		a = append(a, "--snapshot-interval="+c.cfg.SnapshotInterval.String())
	}
	if c.flags["watch-progress-notify-interval"] {
		a = append(a, "--watch-progress-notify-interval="+c.cfg.WatchProgressInterval.String())
	}
	if c.flags["snapshot-catchup-entries"] {
		a = append(a, "--snapshot-catchup-entries="+fmt.Sprint(c.cfg.SnapshotCatchupEntries))
	}
	return a
}

// exited is called when a member's process exits without the harness
// killing or removing it: a crash, or a refusal to start.
func (c *cluster) exited(n *node, err error, tail string) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	c.rep.violate("process-exit", "%s exited by itself (%v); last lines of its log:\n%s", n.name, err, indent(tail))
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ")
}

// close kills every process and closes every client and proxy.
func (c *cluster) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	nodes := slices.Clone(c.nodes)
	clients := slices.Clone(c.clients)
	admin := c.admin
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.kill() })
	}
	wg.Wait()
	for _, pc := range clients {
		pc.cli.Close()
	}
	if admin != nil {
		admin.Close()
	}
	for _, n := range nodes {
		n.cli.Close()
		n.px.close()
	}
}

// memberList returns the current members.
func (c *cluster) memberList() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// live returns the members the harness has not given up on (see
// maxRefusals).
func (c *cluster) live() []*node {
	return slices.DeleteFunc(c.memberList(), (*node).givenUp)
}

// running returns the members whose process runs (not paused).
func (c *cluster) running() []*node {
	var out []*node
	for _, n := range c.memberList() {
		if n.getState() == stateRunning {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) endpoints() []string {
	var eps []string
	for _, n := range c.memberList() {
		eps = append(eps, n.clientURL)
	}
	return eps
}

// client returns a new client on the member in slot pin (its index in the
// member list, modulo its length), or on every member for pin < 0. It
// follows membership changes; the cluster closes it.
func (c *cluster) client(pin int) (*clientv3.Client, error) {
	cli, err := newClient(c.pinned(pin))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.clients = append(c.clients, pinnedClient{cli, pin})
	c.mu.Unlock()
	return cli, nil
}

func (c *cluster) pinned(pin int) []string {
	eps := c.endpoints()
	if pin < 0 || len(eps) == 0 {
		return eps
	}
	return []string{eps[pin%len(eps)]}
}

// pinnedName names the member slot pin talks to ("" for every member).
func (c *cluster) pinnedName(pin int) string {
	if pin < 0 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.members) == 0 {
		return ""
	}
	return c.members[pin%len(c.members)].name
}

// refreshClients points every client at the current members.
func (c *cluster) refreshClients() {
	c.mu.Lock()
	clients := slices.Clone(c.clients)
	admin := c.admin
	c.mu.Unlock()
	for _, pc := range clients {
		pc.cli.SetEndpoints(c.pinned(pc.pin)...)
	}
	admin.SetEndpoints(c.endpoints()...)
}

// learnIDs fills in the etcd member IDs of the members from the member
// list, matching peer URLs.
func (c *cluster) learnIDs(ctx context.Context) error {
	var lastErr error
	for range 50 {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.admin.MemberList(octx)
		cancel()
		if err == nil {
			missing := 0
			for _, n := range c.memberList() {
				found := false
				for _, m := range resp.Members {
					if len(m.PeerURLs) > 0 && m.PeerURLs[0] == n.peerURL() {
						n.setID(m.ID)
						found = true
					}
				}
				if !found {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			err = fmt.Errorf("%d members missing from the member list %v", missing, resp.Members)
		}
		lastErr = err
		if !pace(ctx, 200*time.Millisecond) {
			break
		}
	}
	return fmt.Errorf("chaos: member list: %w", lastErr)
}

// serves reports whether n answers a linearizable read within a second.
func (c *cluster) serves(ctx context.Context, n *node) error {
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := n.cli.Get(octx, "chaos/probe")
	return err
}

// waitServing waits up to d for n to serve a linearizable read.
func (c *cluster) waitServing(ctx context.Context, n *node, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := c.serves(ctx, n)
		if err == nil {
			n.mu.Lock()
			n.refusals = 0
			n.mu.Unlock()
			return nil
		}
		if st := n.getState(); st == stateExited {
			if n.givenUp() {
				return fmt.Errorf("%s exited by itself (code %d) %d times in a row and is left down: it needs an operator", n.name, n.exitCode(), maxRefusals)
			}
			return fmt.Errorf("%s exited (code %d)", n.name, n.exitCode())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s does not serve after %v: %w", n.name, d, err)
		}
		pace(ctx, 100*time.Millisecond)
	}
}

// waitAllServing waits until every member serves; each that does not
// within d is a violation (what says what the cluster was recovering from).
func (c *cluster) waitAllServing(ctx context.Context, d time.Duration, what string) bool {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for _, n := range c.live() {
		wg.Go(func() {
			if err := c.waitServing(ctx, n, d); err != nil && ctx.Err() == nil {
				mu.Lock()
				ok = false
				mu.Unlock()
				c.rep.violate("not-serving", "after %s: %v; last lines of its log:\n%s", what, err, indent(tailFile(n.logPath(), 15)))
			}
		})
	}
	wg.Wait()
	return ok
}

// leader asks every running member for its status and returns the leader
// the one with the highest term names, or nil.
func (c *cluster) leader(ctx context.Context) *node {
	members := c.running()
	type answer struct {
		term   uint64
		leader uint64
	}
	answers := make([]answer, len(members))
	var wg sync.WaitGroup
	for i, n := range members {
		wg.Go(func() {
			octx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
			defer cancel()
			st, err := c.admin.Status(octx, n.clientURL)
			if err == nil {
				answers[i] = answer{st.RaftTerm, st.Leader}
			}
		})
	}
	wg.Wait()
	best := answer{}
	for _, a := range answers {
		if a.leader != 0 && a.term >= best.term {
			best = a
		}
	}
	if best.leader == 0 {
		return nil
	}
	for _, n := range c.memberList() {
		if n.id() == best.leader {
			return n
		}
	}
	return nil
}

// restart starts a killed (or exited) member again.
func (c *cluster) restart(n *node) error {
	if err := n.start(); err != nil {
		return err
	}
	c.rep.addRestarts(1)
	return nil
}

// healAll lifts every network fault, resumes paused members and restarts
// members that are down or exited.
func (c *cluster) healAll() {
	c.net.clear()
	for _, n := range c.memberList() {
		switch n.getState() {
		case statePaused:
			n.resume()
		case stateDown, stateExited:
			if n.givenUp() {
				continue
			}
			if err := c.restart(n); err != nil {
				c.rep.violate("restart", "%v", err)
			}
		}
	}
}

// addMember adds a new member with MemberAdd and starts it with
// --initial-cluster-state=existing and the member list the add returned,
// as `etcdctl member add` tells an operator to.
func (c *cluster) addMember(ctx context.Context) (*node, error) {
	n, err := c.newNode()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := c.admin.MemberAdd(octx, []string{n.peerURL()})
	cancel()
	var id uint64
	var peers []string // peer URLs of the members, the new one included
	if err == nil {
		id = resp.Member.ID
		for _, m := range resp.Members {
			peers = append(peers, m.PeerURLs...)
		}
	} else {
		// The add may have happened: the member list tells.
		for _, m := range c.memberListAfterError(ctx) {
			peers = append(peers, m.PeerURLs...)
			if len(m.PeerURLs) > 0 && m.PeerURLs[0] == n.peerURL() {
				id = m.ID
			}
		}
		if id == 0 {
			c.forget(n)
			return nil, fmt.Errorf("member add: %w", err)
		}
	}
	var initial []string
	for _, u := range peers {
		if m := c.nodeByPeerURL(u); m != nil {
			initial = append(initial, m.name+"="+u)
		}
	}
	n.setID(id)
	n.args = c.args(n, strings.Join(initial, ","), "existing")
	if err := n.start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.members = append(c.members, n)
	c.mu.Unlock()
	c.refreshClients()
	if err := c.waitServing(ctx, n, c.cfg.RecoverTimeout); err != nil {
		c.rep.violate("join", "new member %s (initial cluster %s): %v; last lines of its log:\n%s", n.name, strings.Join(initial, ","), err, indent(tailFile(n.logPath(), 20)))
	}
	if c.onAdd != nil {
		c.onAdd(n)
	}
	return n, nil
}

// forget drops a node that never became a member.
func (c *cluster) forget(n *node) {
	c.mu.Lock()
	c.members = slices.DeleteFunc(c.members, func(m *node) bool { return m == n })
	c.mu.Unlock()
	n.kill()
}

func (c *cluster) nodeByPeerURL(u string) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.peerURL() == u {
			return n
		}
	}
	return nil
}

// memberListAfterError reads the member list after a membership change
// failed without saying whether it happened: up to 20 tries, 200ms apart.
// nil if no try succeeded.
func (c *cluster) memberListAfterError(ctx context.Context) []*etcdMember {
	for range 20 {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		l, err := c.admin.MemberList(octx)
		cancel()
		if err == nil {
			if l.Members == nil {
				return []*etcdMember{}
			}
			return l.Members
		}
		if !pace(ctx, 200*time.Millisecond) {
			return nil
		}
	}
	return nil
}

// removeMember removes n with MemberRemove and waits for its process to
// exit, as accordd does once the cluster removed it.
func (c *cluster) removeMember(ctx context.Context, n *node) error {
	id := n.id()
	n.markRemoved()
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.admin.MemberRemove(octx, id)
	cancel()
	if err != nil {
		// The removal may have happened: the member list tells.
		ms := c.memberListAfterError(ctx)
		gone := ms != nil && !slices.ContainsFunc(ms, func(m *etcdMember) bool { return m.ID == id })
		if !gone {
			n.unmarkRemoved(!n.hasExited())
			return fmt.Errorf("member remove %s: %w", n.name, err)
		}
	}
	c.mu.Lock()
	c.members = slices.DeleteFunc(c.members, func(m *node) bool { return m == n })
	c.mu.Unlock()
	c.refreshClients()
	if c.onRemove != nil {
		c.onRemove(n)
	}
	if !n.waitExit(c.cfg.RecoverTimeout) {
		tail := tailFile(n.logPath(), 10)
		n.dump()
		c.rep.violate("removed-member", "%s still runs %v after its removal (its goroutines, dumped with SIGQUIT, are at the end of %s); last lines of its log before the dump:\n%s",
			n.name, c.cfg.RecoverTimeout, n.logPath(), indent(tail))
	} else if code := n.exitCode(); code != 0 {
		c.rep.violate("removed-member", "%s exited with code %d after its removal (accordd exits 0); last lines of its log:\n%s", n.name, code, indent(tailFile(n.logPath(), 10)))
	}
	return nil
}

// pick returns a random element of ns.
func pick[T any](rng *rand.Rand, ns []T) T { return ns[rng.IntN(len(ns))] }

// pace waits d or until ctx ends; it reports whether ctx is still live.
func pace(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
