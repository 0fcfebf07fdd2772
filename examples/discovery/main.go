// Command discovery shows service discovery on accord: instances of an echo
// service register under a prefix with a lease they keep alive; a client
// resolves them with a Resolver and balances requests round-robin. Then
// one instance is killed (it stops serving and stops renewing its lease,
// as a crashed process would): the client skips it while it is still
// listed, and it disappears from the list when its lease runs out, one TTL
// later.
//
//	go run ./examples/discovery                       # 3 instances, TTL 2s
//	go run ./examples/discovery -instances 5 -ttl 3s
//
// Everything runs in one process, on a single-node store, to keep the demo
// to one command; with a cluster, each instance registers through the
// accord node it embeds and the client resolves through its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/discovery"
)

const prefix = "services/echo/"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags set.
type config struct {
	instances int
	ttl       time.Duration
	requests  int
}

// realMain parses the flags and runs the demo in a temporary directory; it
// returns the exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("discovery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.instances, "instances", 3, "instances to start (at least 2)")
	fs.DurationVar(&cfg.ttl, "ttl", 2*time.Second, "lease TTL of each registration (at least 1.5s with default options)")
	fs.IntVar(&cfg.requests, "requests", 6, "requests per round")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.instances < 2 || cfg.requests < 1 || cfg.ttl <= 0 {
		fmt.Fprintln(stderr, "discovery: need -instances >= 2, -requests >= 1 and a positive -ttl")
		return 2
	}
	dir, err := os.MkdirTemp("", "accord-discovery-")
	if err != nil {
		fmt.Fprintln(stderr, "discovery:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, stdout, dir, cfg); err != nil {
		fmt.Fprintln(stderr, "discovery:", err)
		return 1
	}
	return 0
}

// result is what the demo measured, for its test.
type result struct {
	killed       string
	removedAfter time.Duration  // from the kill to the Resolver dropping it
	failovers    int            // requests that skipped the dead instance meanwhile
	lastRound    map[string]int // instance name -> requests served, after the removal
}

// run opens a store in dir and plays the demo.
func run(ctx context.Context, out io.Writer, dir string, cfg config) (res *result, err error) {
	s, err := accord.Open(dir, nil) // one node, default options
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()

	// The instances.
	var insts []*instance
	defer func() {
		for _, in := range insts {
			in.stop(true)
		}
	}()
	for i := range cfg.instances {
		in, err := startInstance(ctx, s, fmt.Sprintf("echo-%d", i+1), cfg.ttl)
		if err != nil {
			return nil, err
		}
		insts = append(insts, in)
	}

	// The client.
	r, err := discovery.NewResolver(ctx, s, prefix, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	c := &client{r: r, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}}
	defer c.http.CloseIdleConnections()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := r.Wait(wctx, func(st discovery.State) bool { return len(st.Instances) == cfg.instances })
	if err != nil {
		return nil, fmt.Errorf("waiting for %d instances: %w", cfg.instances, err)
	}
	fmt.Fprintf(out, "resolved %d instances:", len(st.Instances))
	for _, inst := range st.Instances {
		fmt.Fprintf(out, " %s", inst.ID)
	}
	fmt.Fprintln(out)

	fmt.Fprintln(out, "round-robin:")
	if _, err := c.round(ctx, out, cfg.requests); err != nil {
		return nil, err
	}

	// Kill the second instance: no more serving, no more renewals, and no
	// deregistration either.
	victim := insts[1]
	victim.stop(false)
	killed := time.Now()
	fmt.Fprintf(out, "killed %s: it no longer serves nor renews its lease (TTL %v)\n", victim.name, cfg.ttl)

	// Keep serving requests meanwhile: the client skips the dead instance
	// while it is still listed, until the Resolver drops it.
	gone := func(st discovery.State) bool {
		for _, inst := range st.Instances {
			if inst.ID == victim.name {
				return false
			}
		}
		return true
	}
	deadline := killed.Add(2*cfg.ttl + 10*time.Second)
	requests, failovers := 0, 0
	for !gone(r.State()) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s still listed %v after it was killed", victim.name, time.Since(killed))
		}
		_, skipped, err := c.do(ctx)
		if err != nil {
			return nil, err
		}
		requests++
		failovers += skipped
		select {
		case <-r.State().Changed():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res = &result{killed: victim.name, removedAfter: time.Since(killed), failovers: failovers}
	fmt.Fprintf(out, "%s removed from the list when its lease expired, %v after the kill\n",
		victim.name, res.removedAfter.Round(100*time.Millisecond))
	fmt.Fprintf(out, "meanwhile %d requests were served, %d of them after failing over from %s\n", requests, failovers, victim.name)

	fmt.Fprintln(out, "round-robin:")
	if res.lastRound, err = c.round(ctx, out, cfg.requests); err != nil {
		return nil, err
	}
	return res, nil
}

// ---- an instance ----

// instance is one copy of the echo service: an HTTP server and its
// registration.
type instance struct {
	name   string
	srv    *http.Server
	done   chan struct{}
	reg    *discovery.Registration
	cancel context.CancelFunc // ends the registration's renewals
}

func startInstance(ctx context.Context, s *accord.Store, name string, ttl time.Duration) (*instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in := &instance{name: name, done: make(chan struct{})}
	in.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "hello from %s", name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		defer close(in.done)
		in.srv.Serve(ln)
	}()
	// The registration lives as long as regCtx: cancelling it is how this
	// demo "kills" the instance.
	regCtx, cancel := context.WithCancel(ctx)
	in.cancel = cancel
	in.reg, err = discovery.Register(regCtx, s, prefix, name, []byte(ln.Addr().String()), ttl)
	if err != nil {
		cancel()
		in.srv.Close()
		<-in.done
		return nil, err
	}
	return in, nil
}

// stop stops serving. Gracefully, it also deregisters; otherwise it only
// stops renewing, as a crash would, and the entry lingers until its lease
// expires.
func (in *instance) stop(graceful bool) {
	if graceful {
		in.reg.Close() // revoke: the entry disappears at once
	}
	in.cancel()
	in.srv.Close()
	<-in.done
}

// ---- the client ----

// client balances requests round-robin over the resolved instances.
type client struct {
	r    *discovery.Resolver
	http *http.Client
	next atomic.Uint64
}

// do sends one request to the next instance, skipping instances that do
// not answer. It returns the answer and how many instances it skipped.
func (c *client) do(ctx context.Context) (string, int, error) {
	insts := c.r.Instances() // never blocks
	if len(insts) == 0 {
		return "", 0, errors.New("no instances")
	}
	for skipped := range len(insts) {
		inst := insts[int(c.next.Add(1)-1)%len(insts)]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+string(inst.Value)+"/", nil)
		if err != nil {
			return "", skipped, err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return "", skipped, ctx.Err()
			}
			continue // dead or unreachable: try the next one
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		return string(body), skipped, nil
	}
	return "", len(insts), errors.New("no instance answered")
}

// round sends n requests and reports who answered each.
func (c *client) round(ctx context.Context, out io.Writer, n int) (map[string]int, error) {
	served := make(map[string]int)
	for i := range n {
		answer, _, err := c.do(ctx)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "  request %d: %s\n", i+1, answer)
		served[strings.TrimPrefix(answer, "hello from ")]++
	}
	return served, nil
}
