// Command configshare runs three replicas of a tiny HTTP service that share
// their feature flags through accord, with no database to run: each replica
// embeds an accord node, the nodes find each other by gossip and form one
// cluster, and each replica binds the flags to a typed accord.Var. A flag
// changed through any replica's HTTP endpoint is seen by all of them,
// typically within milliseconds.
//
//	go run ./examples/configshare              # start, flip a flag through r1, watch r1..r3 see it, exit
//	go run ./examples/configshare -serve 5m    # then keep serving for 5 minutes (or until Ctrl-C)
//
// While it serves, try (with the printed addresses):
//
//	curl http://127.0.0.1:PORT/flags
//	curl -X PUT -d true http://127.0.0.1:PORT/flags/dark-mode
//
// The three replicas run in one process for the sake of a one-command demo;
// in production each is its own process on its own host, started with the
// same code: Options.GossipAddr, Join naming one or more of the others, and
// BootstrapExpect 3.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/accordkv/accord"
)

// flagsKey is the key holding every flag, as one JSON object.
const flagsKey = "configshare/flags"

// Flags are the feature flags the replicas share.
type Flags map[string]bool

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain parses the flags and runs the demo; it returns the exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("configshare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serve := fs.Duration("serve", 0, "after the demo, keep serving this long (0: exit at once)")
	dir := fs.String("dir", "", "parent of the replicas' data directories (default: a temporary directory, removed at exit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "accord-configshare-")
		if err != nil {
			fmt.Fprintln(stderr, "configshare:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, stdout, *dir, *serve); err != nil {
		fmt.Fprintln(stderr, "configshare:", err)
		return 1
	}
	return 0
}

// run starts three replicas in dir, changes a flag through the first and
// checks that every replica sees it within a second, then changes it back
// through the last; then it serves for the given time, and shuts down.
func run(ctx context.Context, out io.Writer, dir string, serve time.Duration) (err error) {
	c, err := startCluster(ctx, dir, 3)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.close(); err == nil {
			err = cerr
		}
	}()
	for _, r := range c.replicas {
		fmt.Fprintf(out, "%s serving %s\n", r.name, r.url)
	}
	fmt.Fprintln(out, "cluster of 3 formed by gossip")

	for _, step := range []struct {
		via int
		on  bool
	}{{0, true}, {2, false}} {
		via := c.replicas[step.via]
		rev, err := c.setFlag(ctx, step.via, "new-checkout", step.on)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "PUT %s/flags/new-checkout %v: revision %d\n", via.name, step.on, rev)
		written := time.Now()
		for i, r := range c.replicas {
			if err := c.waitFlag(ctx, i, "new-checkout", step.on, written.Add(time.Second)); err != nil {
				return err
			}
			fmt.Fprintf(out, "  %s sees new-checkout=%v (after %v)\n", r.name, step.on, time.Since(written).Round(time.Microsecond))
		}
	}

	if serve > 0 {
		fmt.Fprintf(out, "serving for %v; try:\n  curl %s/flags\n  curl -X PUT -d true %s/flags/dark-mode\n",
			serve, c.replicas[0].url, c.replicas[1].url)
		t := time.NewTimer(serve)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	fmt.Fprintln(out, "shutting down")
	return nil
}

// ---- the replicas ----

// replica is one copy of the service: an accord node, the flags bound to
// a Var, and an HTTP server.
type replica struct {
	name  string
	store *accord.Store
	flags *accord.Var[Flags]
	srv   *http.Server
	url   string
	done  chan struct{} // closed when Serve returns
}

// cluster is the three replicas, and an HTTP client to talk to them.
type cluster struct {
	replicas []*replica
	client   *http.Client
}

// startCluster starts n replicas with data directories under dir: the first
// one alone, the others joining it by gossip; all expect n nodes, and
// bootstrap together once they see each other. It returns when every
// replica serves HTTP with its flags bound.
func startCluster(ctx context.Context, dir string, n int) (c *cluster, err error) {
	c = &cluster{client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	var join []string
	for i := range n {
		name := fmt.Sprintf("r%d", i+1)
		s, err := accord.Open(filepath.Join(dir, name), &accord.Options{
			NodeName:        name,
			PeerAddr:        "127.0.0.1:0", // raft and accord's RPCs
			GossipAddr:      "127.0.0.1:0", // serf, TCP and UDP
			Join:            join,
			BootstrapExpect: n,
		})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		c.replicas = append(c.replicas, &replica{name: name, store: s})
		if i == 0 {
			join = []string{s.GossipAddr()}
		}
	}

	// Open does not wait for a cluster of several nodes to form: a
	// linearizable read does, bounded here so that a mistake fails fast.
	formCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, r := range c.replicas {
		if _, err := r.store.Get(formCtx, flagsKey, accord.WithCountOnly()); err != nil {
			return nil, fmt.Errorf("%s: waiting for the cluster to form: %w", r.name, err)
		}
	}

	for _, r := range c.replicas {
		// The Var follows the key until ctx ends or Close.
		if r.flags, err = accord.BindVar[Flags](ctx, r.store, flagsKey, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		r.url = "http://" + ln.Addr().String()
		r.srv = &http.Server{Handler: r.handler(), ReadHeaderTimeout: 10 * time.Second}
		r.done = make(chan struct{})
		go func() {
			defer close(r.done)
			r.srv.Serve(ln) // returns http.ErrServerClosed on Shutdown
		}()
	}
	return c, nil
}

// close stops the HTTP servers, then the Vars, then the stores.
func (c *cluster) close() error {
	var errs []error
	for _, r := range c.replicas {
		if r.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, r.srv.Shutdown(ctx))
			cancel()
			<-r.done
		}
		if r.flags != nil {
			r.flags.Close()
		}
	}
	c.client.CloseIdleConnections()
	for _, r := range c.replicas {
		errs = append(errs, r.store.Close())
	}
	return errors.Join(errs...)
}

// flagsResponse is what GET /flags returns.
type flagsResponse struct {
	Replica  string `json:"replica"`
	Revision int64  `json:"revision"`
	Flags    Flags  `json:"flags"`
	Error    string `json:"error,omitempty"` // e.g. a stored value that does not decode
}

// handler serves GET /flags (every flag, from the Var: no I/O) and
// PUT /flags/{name} (body true or false: a compare-and-set on the flags).
func (r *replica) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flags", func(w http.ResponseWriter, req *http.Request) {
		snap := r.flags.Snapshot() // never blocks
		resp := flagsResponse{Replica: r.name, Revision: snap.Rev, Flags: snap.Value}
		if resp.Flags == nil {
			resp.Flags = Flags{}
		}
		if snap.Err != nil {
			resp.Error = snap.Err.Error()
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("PUT /flags/{name}", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 64))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		on, err := strconv.ParseBool(strings.TrimSpace(string(body)))
		if err != nil {
			http.Error(w, "body must be true or false", http.StatusBadRequest)
			return
		}
		rev, err := r.setFlag(req.Context(), req.PathValue("name"), on)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
	})
	return mux
}

// setFlag changes one flag without losing concurrent changes to the others:
// read the flags, change a copy, and write it only if nobody wrote since
// (CompareAndSet), else try again from the newer flags.
func (r *replica) setFlag(ctx context.Context, name string, on bool) (int64, error) {
	for attempt := 0; attempt < 20; attempt++ {
		snap := r.flags.Snapshot()
		rev := snap.Rev
		var bad *accord.DecodeError
		if errors.As(snap.Err, &bad) {
			rev = bad.Rev // overwrite the version that does not decode
		}
		next := maps.Clone(snap.Value)
		if next == nil {
			next = Flags{}
		}
		next[name] = on
		newRev, err := r.flags.CompareAndSet(ctx, rev, next)
		if !errors.Is(err, accord.ErrConflict) {
			return newRev, err
		}
		// Our copy is behind: wait until the Var has the newer version.
		select {
		case <-snap.Changed():
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return 0, errors.New("too many concurrent changes; try again")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// ---- the client side of the demo ----

// setFlag sets a flag through replica i's HTTP endpoint and returns the
// revision of the write.
func (c *cluster) setFlag(ctx context.Context, i int, name string, on bool) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.replicas[i].url+"/flags/"+name, strings.NewReader(strconv.FormatBool(on)))
	if err != nil {
		return 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("PUT %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(msg)))
	}
	var body struct{ Revision int64 }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Revision, nil
}

// flags reads replica i's flags through its HTTP endpoint.
func (c *cluster) flags(ctx context.Context, i int) (*flagsResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.replicas[i].url+"/flags", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var out flagsResponse
	return &out, json.NewDecoder(resp.Body).Decode(&out)
}

// waitFlag polls replica i over HTTP until the flag has the wanted value,
// failing at the deadline.
func (c *cluster) waitFlag(ctx context.Context, i int, name string, on bool, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		got, err := c.flags(ctx, i)
		if err == nil {
			if v, ok := got.Flags[name]; ok && v == on {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%s does not see %s=%v in time (last: %+v, %v)", c.replicas[i].name, name, on, got, err)
		}
	}
}
