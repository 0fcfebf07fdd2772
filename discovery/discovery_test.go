package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/discovery"
	"github.com/accordkv/accord/internal/freeport"
)

// electionTimeout is the election timeout of the test stores: short, so
// that leases (at least 1.5 election timeouts) expire quickly.
const electionTimeout = 100 * time.Millisecond

func testOptions() *accord.Options {
	return &accord.Options{ElectionTimeout: electionTimeout, UnsafeNoFsync: true}
}

// openStore opens a single-node store that is closed when the test ends.
func openStore(t *testing.T) *accord.Store {
	t.Helper()
	s, err := accord.Open(t.TempDir(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

func register(t *testing.T, ctx context.Context, s *accord.Store, prefix, id, value string, ttl time.Duration) *discovery.Registration {
	t.Helper()
	reg, err := discovery.Register(ctx, s, prefix, id, []byte(value), ttl)
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func newResolver(t *testing.T, s *accord.Store, prefix string, interval time.Duration) *discovery.Resolver {
	t.Helper()
	r, err := discovery.NewResolver(t.Context(), s, prefix, &discovery.ResolverOptions{CheckInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitState waits until cond holds for r's state, failing after d.
func waitState(t *testing.T, r *discovery.Resolver, d time.Duration, what string, cond func(discovery.State) bool) discovery.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	st, err := r.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("%s: not within %v: %v; last state: %s", what, d, err, describe(st))
	}
	return st
}

func describe(st discovery.State) string {
	return fmt.Sprintf("%v at rev %d, stale %v (%v)", ids(st.Instances), st.Rev, st.Stale, st.Err)
}

func ids(insts []discovery.Instance) []string {
	out := []string{}
	for _, inst := range insts {
		out = append(out, inst.ID)
	}
	return out
}

func hasIDs(want ...string) func(discovery.State) bool {
	return func(st discovery.State) bool { return slices.Equal(ids(st.Instances), want) }
}

func TestRegisterAndResolve(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	r := newResolver(t, s, "services/api/", time.Second)
	if st := r.State(); len(st.Instances) != 0 || st.Stale || st.Err != nil {
		t.Fatalf("empty prefix: %s", describe(st))
	}

	// A long TTL: anything that disappears below was deregistered, not
	// expired.
	const ttl = time.Minute
	b := register(t, ctx, s, "services/api/", "b", "10.0.0.2:80", ttl)
	a := register(t, ctx, s, "services/api/", "a", "10.0.0.1:80", ttl)
	register(t, ctx, s, "services/other/", "x", "elsewhere", ttl)
	if a.Key() != "services/api/a" {
		t.Errorf("Key() = %q", a.Key())
	}
	st := waitState(t, r, 5*time.Second, "two instances", hasIDs("a", "b"))
	if got := st.Instances[0]; string(got.Value) != "10.0.0.1:80" || got.Lease != a.Lease() || got.Lease == accord.NoLease || got.ModRevision == 0 {
		t.Errorf("instance a = %+v, want its value and lease %d", got, a.Lease())
	}
	if st.Stale || st.Err != nil {
		t.Errorf("fresh list marked stale: %s", describe(st))
	}

	// Instances is a copy.
	insts := r.Instances()
	insts[0].Value[0] = 'X'
	insts[0].ID = "changed"
	if again := r.Instances(); again[0].ID != "a" || string(again[0].Value) != "10.0.0.1:80" {
		t.Fatalf("changing the returned list changed the Resolver's: %+v", again[0])
	}

	if err := b.Update(ctx, []byte("10.0.0.2:81")); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, 5*time.Second, "updated value", func(st discovery.State) bool {
		return len(st.Instances) == 2 && string(st.Instances[1].Value) == "10.0.0.2:81"
	})

	// Close deregisters at once (the TTL is a minute).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitState(t, r, 5*time.Second, "b deregistered", hasIDs("a"))
	if err := b.Update(ctx, []byte("x")); !errors.Is(err, accord.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
}

// A registration whose owner stops renewing it (ctx ended: the process
// hung or died) disappears when its lease expires, not before; while it is
// renewed it outlives its TTL many times over.
func TestRegistrationExpiresWhenNotRenewed(t *testing.T) {
	s := openStore(t)
	r := newResolver(t, s, "services/", time.Second)
	const ttl = 400 * time.Millisecond
	ctx, stopRenewing := context.WithCancel(t.Context())
	reg := register(t, ctx, s, "services/", "worker-1", "addr", ttl)
	waitState(t, r, 5*time.Second, "registered", hasIDs("worker-1"))

	// Renewed: still there after 3 TTLs.
	for start := time.Now(); time.Since(start) < 3*ttl; {
		if got := ids(r.Instances()); !slices.Equal(got, []string{"worker-1"}) {
			t.Fatalf("a renewed registration vanished after %v: %v", time.Since(start), got)
		}
		select {
		case <-r.State().Changed():
		case <-time.After(20 * time.Millisecond):
		}
	}
	resp, err := s.TimeToLive(t.Context(), reg.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL <= ttl/3 {
		t.Errorf("lease has %v left of %v: not being renewed", resp.TTL, ttl)
	}

	stopped := time.Now()
	stopRenewing()
	waitState(t, r, 10*time.Second, "expired", hasIDs())
	// The last renewal was at most ttl/3 before; the lease must not have
	// been revoked when renewing stopped.
	if gone := time.Since(stopped); gone < ttl/2 {
		t.Errorf("entry gone %v after renewals stopped, before its TTL %v could run out", gone, ttl)
	}
	if _, err := s.TimeToLive(t.Context(), reg.Lease()); !errors.Is(err, accord.ErrLeaseNotFound) {
		t.Errorf("lease after expiry: %v, want ErrLeaseNotFound", err)
	}
	if err := reg.Close(); err != nil {
		t.Errorf("Close of an expired registration: %v", err)
	}
}

// A registration whose lease is lost (here revoked behind its back)
// registers again with a new lease.
func TestRegistrationReregisters(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	r := newResolver(t, s, "services/", time.Second)
	reg := register(t, ctx, s, "services/", "w", "addr", 300*time.Millisecond)
	first := reg.Lease()
	if err := s.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, 10*time.Second, "registered again with a new lease", func(st discovery.State) bool {
		return len(st.Instances) == 1 && st.Instances[0].Lease != first
	})
	if got := st.Instances[0]; string(got.Value) != "addr" {
		t.Errorf("re-registered as %+v, want value addr", got)
	}
	// The registration records its new lease right after writing the key.
	eventually(t, 5*time.Second, "Lease() reports the new lease", func() error {
		if got, want := reg.Lease(), st.Instances[0].Lease; got != want {
			return fmt.Errorf("registration reports lease %d, the entry has %d", got, want)
		}
		return nil
	})
}

// eventually polls cond every few milliseconds until it returns nil,
// failing the test with its last error after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
	}
}

func TestRegisterErrors(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		s    *accord.Store
		id   string
		ttl  time.Duration
	}{
		{"no id", s, "", time.Second},
		{"zero ttl", s, "a", 0},
		{"nil store", nil, "a", time.Second},
	} {
		if _, err := discovery.Register(ctx, tc.s, "p/", tc.id, nil, tc.ttl); !errors.Is(err, accord.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", tc.name, err)
		}
	}
	if _, err := discovery.NewResolver(ctx, s, "", nil); !errors.Is(err, accord.ErrEmptyKey) {
		t.Errorf("resolver with empty prefix: %v, want ErrEmptyKey", err)
	}

	closed, err := accord.Open(t.TempDir(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := discovery.Register(ctx, closed, "p/", "a", nil, time.Second); !errors.Is(err, accord.ErrClosed) {
		t.Errorf("register on a closed store: %v, want ErrClosed", err)
	}
	if _, err := discovery.NewResolver(ctx, closed, "p/", nil); !errors.Is(err, accord.ErrClosed) {
		t.Errorf("resolver on a closed store: %v, want ErrClosed", err)
	}
}

func TestResolverStops(t *testing.T) {
	for _, how := range []string{"Close", "ctx", "store closed"} {
		t.Run(how, func(t *testing.T) {
			s, err := accord.Open(t.TempDir(), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			reg := register(t, t.Context(), s, "svc/", "a", "x", time.Minute)
			r, err := discovery.NewResolver(ctx, s, "svc/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			waitState(t, r, 5*time.Second, "registered", hasIDs("a"))
			switch how {
			case "Close":
				r.Close()
			case "ctx":
				cancel()
			case "store closed":
				s.Close()
				// The registration's goroutine stops too; deregistering is
				// no longer possible.
				if err := reg.Close(); !errors.Is(err, accord.ErrClosed) {
					t.Errorf("Close of a registration on a closed store: %v, want ErrClosed", err)
				}
			}
			st := waitState(t, r, 5*time.Second, "stopped", func(st discovery.State) bool { return errors.Is(st.Err, accord.ErrClosed) })
			if !st.Stale || !errors.Is(st.Err, accord.ErrClosed) {
				t.Errorf("stopped resolver: %s, want stale with ErrClosed", describe(st))
			}
			if !slices.Equal(ids(st.Instances), []string{"a"}) {
				t.Errorf("stopped resolver lost its list: %s", describe(st))
			}
			select {
			case <-st.Changed():
			default:
				t.Error("final state's Changed is open: waiters would hang")
			}
			if _, err := r.Wait(t.Context(), func(discovery.State) bool { return false }); !errors.Is(err, accord.ErrClosed) {
				t.Errorf("Wait on a stopped resolver: %v, want ErrClosed", err)
			}
		})
	}
}

// ---- a three-node cluster, for quorum loss ----

// node is one member of a small cluster built with explicit membership
// (AddMember, then JoinExisting), as etcd does it.
type node struct {
	dir  string
	opts accord.Options
	s    *accord.Store
}

func (n *node) start(t *testing.T) {
	t.Helper()
	s, err := accord.Open(n.dir, &n.opts)
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	if n.s != nil {
		if err := n.s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		n.s = nil
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr() // below the ephemeral range: see package freeport
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func newCluster(t *testing.T) []*node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var nodes []*node
	t.Cleanup(func() { stopCluster(t, nodes) })
	for i := range 3 {
		n := &node{dir: t.TempDir(), opts: accord.Options{
			ElectionTimeout: 250 * time.Millisecond,
			UnsafeNoFsync:   true,
			PeerAddr:        freeAddr(t),
		}}
		if i > 0 {
			addMember(t, ctx, nodes[0].s, n.opts.PeerAddr)
			n.opts.JoinExisting = true
			n.opts.Peers = []string{nodes[0].s.PeerAddr()}
		}
		nodes = append(nodes, n)
		n.start(t)
	}
	return nodes
}

// addMember adds a voter at addr. An unknown outcome (leadership moved
// mid-change, as it may on a loaded machine) is resolved by looking.
func addMember(t *testing.T, ctx context.Context, s *accord.Store, addr string) {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		_, err := s.AddMember(ctx, addr, false)
		if err == nil {
			return
		}
		if !errors.Is(err, accord.ErrUnknownOutcome) {
			t.Fatalf("add member %s: %v", addr, err)
		}
		ms, merr := s.Members(ctx)
		if merr != nil {
			t.Fatalf("add member %s: %v; then members: %v", addr, err, merr)
		}
		for _, m := range ms {
			if m.PeerAddr == addr {
				return
			}
		}
	}
	t.Fatalf("add member %s: outcome unknown five times", addr)
}

// stopCluster stops the running nodes, the leader last: followers that
// stop under a steady leader see no election.
func stopCluster(t *testing.T, nodes []*node) {
	t.Helper()
	var leader *node
	for _, n := range nodes {
		if n.s == nil {
			continue
		}
		if st, err := n.s.Status(t.Context()); err == nil && st.Leader == st.ID {
			leader = n
			continue
		}
		n.stop(t)
	}
	if leader != nil {
		leader.stop(t)
	}
}

// waitSteady waits until every running node names the same leader in the
// same term.
func waitSteady(t *testing.T, nodes []*node) {
	t.Helper()
	eventually(t, 20*time.Second, "one leader everyone agrees on", func() error {
		var leader string
		var term uint64
		for i, n := range nodes {
			st, err := n.s.Status(t.Context())
			if err != nil {
				return err
			}
			if st.Leader == "" || i > 0 && (st.Leader != leader || st.Term != term) {
				return fmt.Errorf("node %d: leader %q term %d; node 0: %q term %d", i, st.Leader, st.Term, leader, term)
			}
			leader, term = st.Leader, st.Term
		}
		return nil
	})
}

// When the cluster loses quorum the Resolver keeps its list, says it is
// stale, and resyncs once quorum is back; registrations survive the outage
// (leases do not expire without a leader).
func TestResolverStaleOnQuorumLoss(t *testing.T) {
	nodes := newCluster(t)
	s := nodes[0].s
	ctx := t.Context()
	reg := register(t, ctx, s, "services/", "api-1", "10.0.0.1:80", time.Second)
	r := newResolver(t, s, "services/", 100*time.Millisecond)
	waitState(t, r, 10*time.Second, "registered", hasIDs("api-1"))

	nodes[1].stop(t)
	nodes[2].stop(t)
	st := waitState(t, r, 10*time.Second, "stale after quorum loss", func(st discovery.State) bool { return st.Stale })
	if !slices.Equal(ids(st.Instances), []string{"api-1"}) || st.Err == nil {
		t.Fatalf("stale state %s: want the last list and the reason", describe(st))
	}
	if !r.Stale() || !slices.Equal(ids(r.Instances()), []string{"api-1"}) {
		t.Fatalf("Stale()/Instances() disagree with State: %v %v", r.Stale(), ids(r.Instances()))
	}

	nodes[1].start(t)
	nodes[2].start(t)
	waitSteady(t, nodes)
	st = waitState(t, r, 20*time.Second, "fresh again", func(st discovery.State) bool { return !st.Stale })
	if !slices.Equal(ids(st.Instances), []string{"api-1"}) || st.Err != nil {
		t.Fatalf("after resync: %s, want api-1, fresh", describe(st))
	}
	// The registration kept its lease through the outage and is renewed
	// again.
	if got := st.Instances[0].Lease; got != reg.Lease() {
		t.Errorf("lease %d after the outage, registration says %d", got, reg.Lease())
	}
	// And the resolver follows changes again.
	register(t, ctx, nodes[1].s, "services/", "api-2", "10.0.0.2:80", time.Second)
	waitState(t, r, 10*time.Second, "a new registration after resync", hasIDs("api-1", "api-2"))
}
