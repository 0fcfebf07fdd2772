package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
)

// versionCheckInterval is how often accordd checks the cluster version, to
// log when a rolling upgrade (or downgrade) changes it.
const versionCheckInterval = 2 * time.Second

// memberIDHex is the member ID etcdctl prints for an accord node ID.
func memberIDHex(nodeID string) string { return fmt.Sprintf("%x", etcdapi.MemberID(nodeID)) }

// newLogger returns the daemon's structured logger.
func newLogger(s *settings) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(s.logLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if s.logFormat == "text" {
		h = slog.NewTextHandler(s.logOutput, opts)
	} else {
		h = slog.NewJSONHandler(s.logOutput, opts)
	}
	return slog.New(h)
}

// daemon is a running accordd: the store, the etcd API servers on the
// client URLs, the metrics servers, and the goroutines that watch them.
type daemon struct {
	s     *settings
	log   *slog.Logger
	store *accord.Store

	apis    []*etcdapi.Server
	metrics []*http.Server

	errc   chan error // a listener failed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// serve runs the daemon until a signal, the member's removal or a failure,
// and returns the exit code. Everything that can fail because of the
// configuration or the machine (a port in use, a foreign data directory)
// fails before the first log line where possible, so that the one line on
// stderr says why.
func serve(s *settings, warnings []string, stderr io.Writer) int {
	log := newLogger(s)
	for _, w := range append(warnings, s.warnings...) {
		log.Warn(w)
	}

	// Bind every client and metrics listener, and check that the peer and
	// gossip ports are free, before touching the data directory.
	var clientLns, metricsLns []net.Listener
	closeAll := func() {
		for _, ln := range append(clientLns, metricsLns...) {
			_ = ln.Close()
		}
	}
	for _, u := range s.listenClient {
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			closeAll()
			return fail(stderr, fmt.Errorf("cannot listen on client URL %s (--listen-client-urls): %w", u, unwrapOpError(err)))
		}
		clientLns = append(clientLns, ln)
	}
	for _, u := range s.listenMetrics {
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			closeAll()
			return fail(stderr, fmt.Errorf("cannot listen on metrics URL %s (--listen-metrics-urls): %w", u, unwrapOpError(err)))
		}
		metricsLns = append(metricsLns, ln)
	}
	if err := probeTCP(s.opts.PeerAddr); err != nil {
		closeAll()
		return fail(stderr, fmt.Errorf("cannot listen on peer URL %s (--listen-peer-urls): %w", s.listenPeer, err))
	}
	if s.opts.GossipAddr != "" {
		if err := probeGossip(s.opts.GossipAddr); err != nil {
			closeAll()
			return fail(stderr, fmt.Errorf("cannot listen on gossip address %s (--listen-gossip-url): %w", s.opts.GossipAddr, err))
		}
	}

	// Signals that arrive while Open runs (joining can take a while) are
	// handled once it returns.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	if s.peerAutoTLS {
		conf, err := selfSignedPeerTLS(s.dataDir, peerHosts(s), s.certValidity)
		if err != nil {
			closeAll()
			return fail(stderr, err)
		}
		s.opts.PeerTLS = conf
	}
	if s.state == "existing" && !initialized(s.dataDir) {
		log.Info("joining an existing cluster: asking its members for this member's ID", "name", s.name, "peers", s.opts.Peers, "advertise-peer-url", s.advertisePeer.String())
	}
	s.opts.Logger = log
	store, err := accord.Open(s.dataDir, &s.opts)
	if err != nil {
		closeAll()
		msg := fmt.Sprintf("cannot open --data-dir %s: %v", s.dataDir, err)
		if errors.Is(err, accord.ErrForeignDir) && s.state == "new" {
			msg += fmt.Sprintf(" (member %q of --initial-cluster-token %q has node ID %s; a member added with `member add` keeps --initial-cluster-state=existing)", s.name, s.token, s.opts.NodeID)
		}
		return fail(stderr, errors.New(msg))
	}

	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{s: s, log: log, store: store, errc: make(chan error, len(clientLns)+len(metricsLns)), ctx: ctx, cancel: cancel}
	log.Info("accordd started",
		"version", version(), "etcd-api", etcdapi.Version,
		"name", s.name, "node-id", store.NodeID(), "member-id", memberIDHex(store.NodeID()),
		"cluster", store.ClusterName(), "data-dir", s.dataDir, "initial-cluster-state", s.state,
		"listen-client-urls", urlStrings(s.listenClient), "advertise-client-urls", urlStrings(s.advertiseCli),
		"listen-peer-url", s.listenPeer.String(), "advertise-peer-url", s.advertisePeer.String(),
		"listen-metrics-urls", urlStrings(s.listenMetrics), "gossip", store.GossipAddr())

	if err := d.startServers(clientLns, metricsLns); err != nil {
		closeAll()
		d.shutdown()
		return fail(stderr, err)
	}
	d.wg.Go(d.notifyWhenReady)
	d.wg.Go(d.watchClusterVersion)

	code := 0
	select {
	case sig := <-sigs:
		log.Info("received signal; shutting down", "signal", sig.String())
	case <-store.Removed():
		log.Warn("this member has been permanently removed from the cluster; exiting", "member-id", memberIDHex(store.NodeID()))
	case err := <-d.errc:
		log.Error("listener failed; shutting down", "err", err)
		code = 1
		defer fail(stderr, err)
	}
	if err := sdNotify("STOPPING=1"); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	stopped := make(chan struct{})
	go func() {
		// A second signal while shutting down exits at once.
		select {
		case sig := <-sigs:
			log.Warn("second signal; exiting without a graceful shutdown", "signal", sig.String())
			os.Exit(1)
		case <-stopped:
		}
	}()
	d.shutdown()
	close(stopped)
	log.Info("accordd stopped")
	return code
}

// startServers starts the etcd API on the client listeners (one etcdapi
// server for the plaintext ones, one for the TLS ones) and the metrics
// servers.
func (d *daemon) startServers(clientLns, metricsLns []net.Listener) error {
	peerScheme := d.s.advertisePeer.Scheme
	metricsHandler, err := newMetricsHandler(d.store)
	if err != nil {
		return err
	}
	metrics := newMetricsMux(metricsHandler, d.store, false, d.s.pprof)
	var plain, secure *etcdapi.Server
	for i, ln := range clientLns {
		u := d.s.listenClient[i]
		srv := &plain
		var tlsCfg *tls.Config
		if u.Scheme == "https" {
			srv, tlsCfg = &secure, d.s.clientTLS
		}
		if *srv == nil {
			api, err := etcdapi.New(d.store, &etcdapi.Options{
				TLS:             tlsCfg,
				Logger:          d.log,
				PeerURLScheme:   peerScheme,
				MaxRequestBytes: d.s.opts.MaxRequestBytes,
				HTTPHandler:     metrics,
				CORS:            d.s.cors,
			})
			if err != nil {
				return err
			}
			*srv = api
			d.apis = append(d.apis, api)
		}
		api := *srv
		d.wg.Go(func() {
			if err := api.Serve(ln); err != nil {
				d.errc <- fmt.Errorf("serving clients on %s: %w", u, err)
			}
		})
		d.log.Info("serving client traffic", "address", u.String())
	}
	for i, ln := range metricsLns {
		u := d.s.listenMetrics[i]
		if u.Scheme == "https" {
			ln = tls.NewListener(ln, d.s.clientTLS)
		}
		hs := &http.Server{Handler: newMetricsMux(metricsHandler, d.store, true, d.s.pprof), ReadHeaderTimeout: 10 * time.Second}
		d.metrics = append(d.metrics, hs)
		d.wg.Go(func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.errc <- fmt.Errorf("serving metrics on %s: %w", u, err)
			}
		})
		d.log.Info("serving /metrics and /health", "address", u.String())
	}
	return nil
}

// shutdown stops serving clients, then closes the store (a restart, not a
// departure: the member stays in the cluster), and waits for every
// goroutine.
func (d *daemon) shutdown() {
	d.cancel()
	for _, api := range d.apis {
		_ = api.Close()
	}
	for _, hs := range d.metrics {
		_ = hs.Close()
	}
	if err := d.store.Close(); err != nil {
		d.log.Warn("closing the store", "err", err)
	}
	d.wg.Wait()
}

// notifyWhenReady tells systemd READY=1 once this member serves clients:
// its client listeners accept, and a linearizable read succeeds (the member
// knows a leader and has caught up with it), as etcd waits for its server
// to be ready.
func (d *daemon) notifyWhenReady() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	waitingSince := time.Now()
	lastLog := waitingSince
	for {
		ctx, cancel := context.WithTimeout(d.ctx, time.Second)
		_, err := d.store.Get(ctx, "health", accord.WithKeysOnly(), accord.WithLimit(1))
		cancel()
		if err == nil {
			break
		}
		if time.Since(lastLog) > 10*time.Second {
			d.log.Info("waiting for the cluster to have a leader before serving", "waiting", time.Since(waitingSince).Round(time.Second).String(), "err", err)
			lastLog = time.Now()
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
	d.log.Info("ready to serve client requests")
	if err := sdNotify("READY=1"); err != nil {
		d.log.Warn("cannot notify systemd", "err", err)
	}
}

// watchClusterVersion logs the cluster version (the lowest accord version
// among the members) once it is known and whenever it changes, as etcd logs
// "set initial cluster version" and "updated cluster version".
func (d *daemon) watchClusterVersion() {
	t := time.NewTicker(versionCheckInterval)
	defer t.Stop()
	last := ""
	for {
		ctx, cancel := context.WithTimeout(d.ctx, versionCheckInterval)
		st, err := d.store.Status(ctx)
		cancel()
		if err == nil && st.ClusterVersion != "" && st.ClusterVersion != last {
			if last == "" {
				d.log.Info("set initial cluster version", "cluster-version", st.ClusterVersion, "member-version", st.Version)
			} else {
				d.log.Info("updated cluster version", "from", last, "to", st.ClusterVersion, "cluster-version", st.ClusterVersion, "member-version", st.Version)
			}
			if st.ClusterVersion != st.Version {
				d.log.Warn("the cluster runs at a lower version than this member until every member is upgraded", "cluster-version", st.ClusterVersion, "member-version", st.Version)
			}
			last = st.ClusterVersion
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeTCP checks that addr can be bound, and releases it again.
func probeTCP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return unwrapOpError(err)
	}
	return ln.Close()
}

// probeGossip checks that addr can be bound on TCP and UDP.
func probeGossip(addr string) error {
	if err := probeTCP(addr); err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return unwrapOpError(err)
	}
	return pc.Close()
}

// unwrapOpError turns "listen tcp 127.0.0.1:2379: bind: address already in
// use" into "address already in use": the caller names the address.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err
		}
		return oe.Err
	}
	return err
}

// initialized reports whether dir already holds an accord data directory.
func initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "accord.manifest"))
	return err == nil
}

func urlStrings(us []*url.URL) string {
	var out []string
	for _, u := range us {
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}
