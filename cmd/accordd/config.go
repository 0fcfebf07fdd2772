package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/accordkv/accord"
)

// Configuration comes from etcd's flags, each of which can also be given as
// its ETCD_* environment variable (--initial-cluster-token is
// ETCD_INITIAL_CLUSTER_TOKEN), exactly as etcd reads them, so that an
// etcd.conf EnvironmentFile works unchanged. accord's own additions (the
// gossip flags) read ACCORD_* variables instead: an ETCD_* name promises
// that etcd understands it, and an env file shared with etcd during a
// migration should not carry names etcd does not know.
//
// A flag wins over its variable. When both are set to different values
// (after ${VAR} expansion, see expandEnv) accordd logs a warning; etcd 3.7
// refuses to start in that case, which breaks the common systemd unit
// that passes --name=${ETCD_NAME} while its EnvironmentFile also exports
// ETCD_NAME.

// config is the parsed command line and environment, before validation.
type config struct {
	name                string
	dataDir             string
	listenPeerURLs      string
	listenClientURLs    string
	advertisePeerURLs   string
	advertiseClientURLs string
	initialCluster      string
	initialClusterState string
	initialClusterToken string

	certFile, keyFile, trustedCAFile             string
	clientCertAuth                               bool
	peerCertFile, peerKeyFile, peerTrustedCAFile string
	peerClientCertAuth                           bool
	peerAutoTLS                                  bool
	selfSignedCertValidity                       uint // years
	strictReconfigCheck                          bool
	featureGates                                 string

	electionTimeoutMS   uint
	heartbeatIntervalMS uint
	snapshotCount       uint64
	snapshotCatchup     uint64
	quotaBackendBytes   int64
	snapshotInterval    time.Duration
	maxRequestBytes     uint
	cors                string
	maxTxnOps           uint
	watchProgressNotify time.Duration
	autoCompactionMode  string
	autoCompactionRet   string
	unsafeNoFsync       bool
	enablePprof         bool

	logLevel          string
	logFormat         string
	logOutputs        string
	listenMetricsURLs string

	join            string
	listenGossipURL string
	gossipKeyFile   string
	bootstrapExpect int

	version bool

	set map[string]bool // flags given on the command line or by env
}

// accordFlags are accord's additions to etcd's flags: they read ACCORD_*
// environment variables.
var accordFlags = map[string]bool{
	"join":              true,
	"listen-gossip-url": true,
	"gossip-key-file":   true,
	"bootstrap-expect":  true,
	"snapshot-interval": true,
}

// ignoredFlags are etcd flags accordd accepts so that an existing etcd
// configuration starts, but that have no accord counterpart. Setting one
// logs a warning.
var ignoredFlags = []string{
	"max-snapshots", "max-wals", "wal-dir", "logger",
	"enable-v2", "v2-deprecation", "metrics", "pre-vote",
	"enable-grpc-gateway", "initial-election-tick-advance",
	"host-whitelist", "auth-token", "backend-bbolt-freelist-type",
	"socket-reuse-port", "socket-reuse-address", "experimental-initial-corrupt-check",
	"experimental-enable-distributed-tracing", "max-learners",
}

// etcdFeatureGates are the feature gates etcd 3.7 knows
// (server/features), with AllAlpha and AllBeta, which set every alpha or
// beta gate. accordd checks --feature-gates as etcd does (an unknown gate
// or a value that is not a bool refuses to start) so that a configuration
// written for etcd either starts or says why, but none of them changes
// what accord does: accord has no counterpart to these etcd internals.
var etcdFeatureGates = []string{
	"AllAlpha", "AllBeta",
	"StopGRPCServiceOnDefrag", "TxnModeWriteWithSharedBuffer", "InitialCorruptCheck", "CompactHashCheck",
	"LeaseCheckpoint", "LeaseCheckpointPersist", "SetMemberLocalAddr", "FastLeaseKeepAlive", "PriorityRequest",
}

// parseFeatureGates parses --feature-gates (Name=bool,Name=bool) as etcd's
// featuregate package does, and returns the settings as Name=bool.
func parseFeatureGates(v string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, fmt.Errorf("missing bool value for %s", k)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("invalid value of %s=%s: want true or false", k, strings.TrimSpace(val))
		}
		if !slices.Contains(etcdFeatureGates, k) {
			return nil, fmt.Errorf("unrecognized feature gate: %s (etcd 3.7 knows %s)", k, strings.Join(etcdFeatureGates, ", "))
		}
		out = append(out, fmt.Sprintf("%s=%t", k, b))
	}
	return out, nil
}

// envName is the environment variable that carries flag name.
func envName(name string) string {
	prefix := "ETCD_"
	if accordFlags[name] {
		prefix = "ACCORD_"
	}
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// newFlagSet defines every flag of the daemon on a new FlagSet, with
// etcd's defaults except for the addresses (127.0.0.1 rather than
// localhost, so that the default peer address is an IP).
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("accordd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.name, "name", "default", "human-readable name of this member")
	fs.StringVar(&c.dataDir, "data-dir", "", "path to the data directory (default \"${name}.accord\")")
	fs.StringVar(&c.listenPeerURLs, "listen-peer-urls", "http://127.0.0.1:2380", "URL to listen on for peer traffic (raft and accord's RPCs; one URL)")
	fs.StringVar(&c.listenClientURLs, "listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to listen on for client traffic (etcd v3 API)")
	fs.StringVar(&c.advertisePeerURLs, "initial-advertise-peer-urls", "", "this member's peer URL, as the other members reach it (default: --listen-peer-urls)")
	fs.StringVar(&c.advertiseClientURLs, "advertise-client-urls", "", "this member's client URLs, as clients reach them (default: --listen-client-urls)")
	fs.StringVar(&c.initialCluster, "initial-cluster", "", "initial cluster configuration: name=peerURL,... (default: ${name}=${initial-advertise-peer-urls})")
	fs.StringVar(&c.initialClusterState, "initial-cluster-state", "new", "new (every member of --initial-cluster starts together) or existing (join a cluster after `etcdctl member add`)")
	fs.StringVar(&c.initialClusterToken, "initial-cluster-token", "etcd-cluster", "the cluster's name: members of different clusters never mix")

	fs.StringVar(&c.certFile, "cert-file", "", "path to the client server TLS certificate file")
	fs.StringVar(&c.keyFile, "key-file", "", "path to the client server TLS key file")
	fs.StringVar(&c.trustedCAFile, "trusted-ca-file", "", "path to the client server TLS trusted CA file (for --client-cert-auth)")
	fs.BoolVar(&c.clientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	fs.StringVar(&c.peerCertFile, "peer-cert-file", "", "path to the peer TLS certificate file (server and client)")
	fs.StringVar(&c.peerKeyFile, "peer-key-file", "", "path to the peer TLS key file")
	fs.StringVar(&c.peerTrustedCAFile, "peer-trusted-ca-file", "", "path to the peer TLS trusted CA file (the cluster CA)")
	fs.BoolVar(&c.peerClientCertAuth, "peer-client-cert-auth", false, "require peer client certificates (accord always does with https peer URLs)")
	fs.BoolVar(&c.peerAutoTLS, "peer-auto-tls", false, "with https peer URLs and no --peer-cert-file/--peer-key-file: encrypt peer traffic with a generated self-signed certificate, without authenticating peers (as etcd)")
	fs.UintVar(&c.selfSignedCertValidity, "self-signed-cert-validity", 1, "validity of the certificate --peer-auto-tls generates, in years")
	fs.BoolVar(&c.strictReconfigCheck, "strict-reconfig-check", true, "refuse member changes that would leave too few started or reachable voters for a quorum")
	fs.StringVar(&c.featureGates, "feature-gates", "", "etcd's feature gates (Name=true|false,...): accepted and checked as etcd does; accord has none of them, so they change nothing")

	fs.UintVar(&c.electionTimeoutMS, "election-timeout", 1000, "time (in milliseconds) for an election to time out")
	fs.UintVar(&c.heartbeatIntervalMS, "heartbeat-interval", 100, "accepted for etcd compatibility; accord derives heartbeats from --election-timeout")
	fs.Uint64Var(&c.snapshotCount, "snapshot-count", 8192, "number of committed log entries that trigger a snapshot")
	fs.Int64Var(&c.quotaBackendBytes, "quota-backend-bytes", 0, "space quota of the keyspace file (kv.db): past it a NOSPACE alarm stops writes; 0 is the default, 2 GiB")
	fs.Uint64Var(&c.snapshotCatchup, "snapshot-catchup-entries", 10240, "log entries kept after a snapshot, so that a slow follower catches up from the log rather than a snapshot")
	fs.DurationVar(&c.snapshotInterval, "snapshot-interval", 2*time.Second, "how often to check whether --snapshot-count entries have accumulated (accord)")
	fs.UintVar(&c.maxRequestBytes, "max-request-bytes", 1572864, "maximum client request size in bytes")
	fs.StringVar(&c.cors, "cors", "*", "comma-separated origins allowed by CORS on the HTTP gateway (URLs with a port), or * for all")
	fs.UintVar(&c.maxTxnOps, "max-txn-ops", 128, "maximum number of operations permitted in a transaction")
	fs.DurationVar(&c.watchProgressNotify, "watch-progress-notify-interval", 10*time.Minute, "interval of watch progress notifications")
	fs.StringVar(&c.autoCompactionMode, "auto-compaction-mode", "periodic", "periodic (retention is a duration) or revision (retention is a number of revisions)")
	fs.StringVar(&c.autoCompactionRet, "auto-compaction-retention", "0", "auto compaction retention: 0 disables; periodic: \"1h\" or hours (\"1\"); revision: a count")
	fs.BoolVar(&c.enablePprof, "enable-pprof", false, "serve Go's runtime profiles at /debug/pprof/ on the client (and metrics) URLs")
	fs.BoolVar(&c.unsafeNoFsync, "unsafe-no-fsync", false, "disables fsync, unsafe, will cause data loss on a machine crash (tests only)")

	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json or console (text)")
	fs.StringVar(&c.logOutputs, "log-outputs", "default", "stderr (default) or stdout")
	fs.StringVar(&c.listenMetricsURLs, "listen-metrics-urls", "", "comma-separated URLs to serve /metrics and /health on, besides the client URLs")

	fs.StringVar(&c.join, "join", "", "accord: comma-separated gossip addresses (host:port) of members to join")
	fs.StringVar(&c.listenGossipURL, "listen-gossip-url", "", "accord: address for gossip, TCP and UDP (default with --join or --bootstrap-expect: the peer host, port 2381)")
	fs.StringVar(&c.gossipKeyFile, "gossip-key-file", "", "accord: file holding the gossip encryption key (16, 24 or 32 bytes, raw or base64)")
	fs.IntVar(&c.bootstrapExpect, "bootstrap-expect", 0, "accord: with gossip, how many members start a new cluster together")

	fs.BoolVar(&c.version, "version", false, "print the version and exit")

	for _, name := range ignoredFlags {
		fs.String(name, "", "accepted for etcd compatibility and ignored")
	}
	return fs
}

// envLookup turns a list of KEY=VALUE strings into a lookup function.
func envLookup(env []string) func(string) (string, bool) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// expandEnv expands ${VAR} and $VAR in s from lookup, leaving references to
// unset variables as they are (so that an error message shows them).
// etcd.conf files commonly build values from other variables
// (ETCD_INITIAL_CLUSTER="${ETCD_NAME}=http://${LOCAL_IP}:2380"), which a
// shell or systemd expands in a flag but not in the variable etcd reads.
func expandEnv(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	return os.Expand(s, func(name string) string {
		if v, ok := lookup(name); ok {
			return v
		}
		return "${" + name + "}"
	})
}

// parseConfig parses args (without the program name) and the environment
// env (KEY=VALUE). It returns warnings to log once logging is set up.
func parseConfig(args, env []string) (*config, []string, error) {
	c := &config{set: map[string]bool{}}
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%v (see accordd --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q (flags take the form --name=value; see accordd --help)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })

	lookup := envLookup(env)
	var warnings []string
	known := map[string]bool{}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			return
		}
		key := envName(f.Name)
		known[key] = true
		raw, ok := lookup(key)
		if !ok || raw == "" { // etcd ignores empty variables too
			return
		}
		val := expandEnv(raw, lookup)
		if c.set[f.Name] {
			if f.Value.String() != val {
				warnings = append(warnings, fmt.Sprintf("--%s=%s shadows %s=%s; using the flag", f.Name, f.Value.String(), key, raw))
			}
			return
		}
		if err := fs.Set(f.Name, val); err != nil && envErr == nil {
			envErr = fmt.Errorf("%s=%q: %v", key, raw, err)
		}
		c.set[f.Name] = true
	})
	if envErr != nil {
		return nil, nil, envErr
	}
	var unknown []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "ETCD_") || strings.HasPrefix(k, "ACCORD_")) && !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(k, "ETCD_"), "ACCORD_"), "_", "-"))
		switch {
		case k == "ETCD_VERSION":
		case accordFlags[name]:
			warnings = append(warnings, fmt.Sprintf("environment variable %s is not read: accord's own settings use %s", k, envName(name)))
		case !accordFlags[name] && strings.HasPrefix(k, "ACCORD_") && known[envName(name)]:
			warnings = append(warnings, fmt.Sprintf("environment variable %s is not read: etcd's settings use %s", k, envName(name)))
		default:
			warnings = append(warnings, fmt.Sprintf("unrecognized environment variable %s", k))
		}
	}
	for _, name := range ignoredFlags {
		if c.set[name] {
			warnings = append(warnings, fmt.Sprintf("--%s (%s) is accepted for etcd compatibility and ignored", name, envName(name)))
		}
	}
	if c.set["heartbeat-interval"] {
		warnings = append(warnings, "--heartbeat-interval is ignored: accord derives heartbeats from --election-timeout")
	}
	if c.featureGates != "" {
		gates, err := parseFeatureGates(c.featureGates)
		if err != nil {
			return nil, nil, fmt.Errorf("--feature-gates: %v", err)
		}
		if len(gates) > 0 {
			warnings = append(warnings, fmt.Sprintf("--feature-gates %s: accepted for etcd compatibility; accord has none of etcd's feature gates, so they change nothing", strings.Join(gates, ",")))
		}
	}
	return c, warnings, nil
}

// member is one entry of --initial-cluster.
type member struct {
	name string
	url  *url.URL
}

// settings is a validated configuration, ready to start the daemon.
type settings struct {
	name          string
	dataDir       string
	token         string
	state         string // "new", "existing" or "gossip"
	listenPeer    *url.URL
	advertisePeer *url.URL
	listenClient  []*url.URL
	advertiseCli  []*url.URL
	listenMetrics []*url.URL
	cluster       []member
	pprof         bool

	clientTLS  *tls.Config // for https client and metrics URLs
	peerTLS    *tls.Config
	logLevel   string
	logFormat  string
	logOutput  io.Writer
	compaction compactionPolicy
	cors       []string // --cors: allowed origins; empty allows all

	// peerAutoTLS: generate (or reuse) a self-signed peer certificate in
	// the data directory before starting (--peer-auto-tls), valid for
	// certValidity.
	peerAutoTLS  bool
	certValidity time.Duration
	warnings     []string // found by validate, logged once logging is set up

	opts accord.Options // Logger is set by the caller
}

// compactionPolicy is --auto-compaction-mode/-retention.
type compactionPolicy struct {
	mode      string        // "periodic" or "revision"
	period    time.Duration // periodic mode
	revisions int64         // revision mode
}

// nodeID is the accord node ID of member name of the cluster token, as
// every member computes it from --initial-cluster: 16 hex digits of
// sha256(token + "/" + name). `accordd snapshot restore` uses it too, so
// that a restored directory opens under the same flags.
func nodeID(token, name string) string {
	sum := sha256.Sum256([]byte(token + "/" + name))
	return hex.EncodeToString(sum[:8])
}

// parseURLs parses a comma-separated list of http(s) URLs of the form
// scheme://host:port, as etcd's URL flags take.
func parseURLs(flagName, s string) ([]*url.URL, error) {
	var out []*url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := parseURL(part)
		if err != nil {
			return nil, fmt.Errorf("--%s: %v", flagName, err)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--%s is empty", flagName)
	}
	return out, nil
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("%q is not a URL like http://10.0.0.1:2379 (scheme http or https, host and port, no path)", s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%q: the URL needs a port (like http://10.0.0.1:2379)", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("%q: bad port %q", s, port)
	}
	if strings.ContainsAny(host, " /") {
		return nil, fmt.Errorf("%q: bad host %q", s, host)
	}
	u.Path = ""
	return u, nil
}

// unspecified reports whether u's host binds every interface.
func unspecified(u *url.URL) bool {
	h := u.Hostname()
	ip := net.ParseIP(h)
	return h == "" || (ip != nil && ip.IsUnspecified())
}

// hostPort parses a gossip address given as host:port or as a URL.
func hostPort(flagName, s string) (string, error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	s = strings.TrimSuffix(s, "/")
	if _, port, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("--%s: %q is not host:port", flagName, s)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("--%s: %q: bad port", flagName, s)
	}
	return s, nil
}

// parseInitialCluster parses name=URL,name=URL.
func parseInitialCluster(s string) ([]member, error) {
	var out []member
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, raw, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=URL", part)
		}
		u, err := parseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("--initial-cluster: member %q: %v", name, err)
		}
		if name != "" && seen[name] {
			return nil, fmt.Errorf("--initial-cluster lists %q twice: accord members have one peer URL each", name)
		}
		seen[name] = true
		out = append(out, member{name: name, url: u})
	}
	if len(out) == 0 {
		return nil, errors.New("--initial-cluster is empty")
	}
	return out, nil
}

// validate checks c and derives the settings, returning the first problem
// as one line.
func (c *config) validate() (*settings, error) {
	s := &settings{name: c.name, token: c.initialClusterToken, logFormat: c.logFormat, pprof: c.enablePprof}
	if c.name == "" {
		return nil, errors.New("--name is empty")
	}
	if len(c.name) > 128 || strings.ContainsAny(c.name, ",=\n\r\t") {
		return nil, fmt.Errorf("--name %q: use at most 128 characters, without ',' or '='", c.name)
	}
	if c.snapshotInterval <= 0 {
		return nil, fmt.Errorf("--snapshot-interval %v: must be positive", c.snapshotInterval)
	}
	// etcd's rule (flags.UniqueURLs): "*" alone, or URLs with a port.
	if c.cors != "*" && c.cors != "" {
		us, err := parseURLs("cors", c.cors)
		if err != nil {
			return nil, err
		}
		for _, u := range us {
			s.cors = append(s.cors, u.Scheme+"://"+u.Host) // an Origin header's form
		}
	}
	s.dataDir = c.dataDir
	if s.dataDir == "" {
		s.dataDir = c.name + ".accord"
	}
	switch strings.ToLower(c.logLevel) {
	case "debug", "info", "warn", "error":
		s.logLevel = strings.ToLower(c.logLevel)
	case "warning":
		s.logLevel = "warn"
	case "dpanic", "panic", "fatal":
		s.logLevel = "error"
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	switch c.logFormat {
	case "json":
	case "console", "text":
		s.logFormat = "text"
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", c.logFormat)
	}
	switch c.logOutputs {
	case "default", "stderr", "":
		s.logOutput = os.Stderr
	case "stdout":
		s.logOutput = os.Stdout
	default:
		return nil, fmt.Errorf("--log-outputs %q: want stderr or stdout (run under systemd or a log shipper for files)", c.logOutputs)
	}
	if !validToken(c.initialClusterToken) {
		return nil, fmt.Errorf("--initial-cluster-token %q: use 1-128 characters from [A-Za-z0-9._-] (it is accord's cluster name)", c.initialClusterToken)
	}
	if c.electionTimeoutMS < 10 {
		return nil, fmt.Errorf("--election-timeout %d: at least 10 (milliseconds)", c.electionTimeoutMS)
	}

	// Client side.
	var err error
	if s.listenClient, err = parseURLs("listen-client-urls", c.listenClientURLs); err != nil {
		return nil, err
	}
	if c.advertiseClientURLs != "" {
		if s.advertiseCli, err = parseURLs("advertise-client-urls", c.advertiseClientURLs); err != nil {
			return nil, err
		}
	} else {
		for _, u := range s.listenClient {
			if unspecified(u) {
				return nil, fmt.Errorf("--advertise-client-urls is required when --listen-client-urls binds every interface (%s)", u)
			}
		}
		s.advertiseCli = s.listenClient
	}
	if c.listenMetricsURLs != "" {
		if s.listenMetrics, err = parseURLs("listen-metrics-urls", c.listenMetricsURLs); err != nil {
			return nil, err
		}
	}
	needClientTLS := false
	for _, u := range append(slices.Clone(s.listenClient), s.listenMetrics...) {
		needClientTLS = needClientTLS || u.Scheme == "https"
	}
	if needClientTLS {
		if s.clientTLS, err = serverTLS("", c.certFile, c.keyFile, c.trustedCAFile, c.clientCertAuth); err != nil {
			return nil, err
		}
	} else if c.clientCertAuth {
		return nil, errors.New("--client-cert-auth needs https in --listen-client-urls")
	}

	// Peer side.
	peers, err := parseURLs("listen-peer-urls", c.listenPeerURLs)
	if err != nil {
		return nil, err
	}
	if len(peers) != 1 {
		return nil, fmt.Errorf("--listen-peer-urls lists %d URLs: accord listens on one peer URL", len(peers))
	}
	s.listenPeer = peers[0]
	if c.advertisePeerURLs != "" {
		adv, err := parseURLs("initial-advertise-peer-urls", c.advertisePeerURLs)
		if err != nil {
			return nil, err
		}
		if len(adv) != 1 {
			return nil, fmt.Errorf("--initial-advertise-peer-urls lists %d URLs: accord members have one peer URL", len(adv))
		}
		s.advertisePeer = adv[0]
	} else {
		if unspecified(s.listenPeer) {
			return nil, fmt.Errorf("--initial-advertise-peer-urls is required when --listen-peer-urls binds every interface (%s)", s.listenPeer)
		}
		s.advertisePeer = s.listenPeer
	}
	if s.listenPeer.Scheme != s.advertisePeer.Scheme {
		return nil, fmt.Errorf("--listen-peer-urls (%s) and --initial-advertise-peer-urls (%s) use different schemes", s.listenPeer, s.advertisePeer)
	}
	autoTLS := c.peerAutoTLS && c.peerCertFile == "" && c.peerKeyFile == ""
	switch {
	case c.peerAutoTLS && s.listenPeer.Scheme != "https":
		s.warnings = append(s.warnings, "--peer-auto-tls has no effect with http peer URLs")
	case c.peerAutoTLS && !autoTLS:
		s.warnings = append(s.warnings, "--peer-auto-tls is ignored: --peer-cert-file and --peer-key-file are given")
	}
	if s.listenPeer.Scheme == "https" && autoTLS {
		// etcd's --peer-auto-tls: encrypted, not authenticated.
		if c.join != "" || c.bootstrapExpect > 1 {
			return nil, errors.New("--peer-auto-tls cannot be combined with gossip (--join, --bootstrap-expect): gossip admits a member by its certificate from the cluster CA, which self-signed certificates do not have; give --peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
		}
		if c.selfSignedCertValidity == 0 {
			return nil, errors.New("--self-signed-cert-validity 0: at least 1 (year)")
		}
		if c.peerTrustedCAFile != "" || c.peerClientCertAuth {
			s.warnings = append(s.warnings, "--peer-trusted-ca-file and --peer-client-cert-auth are ignored with --peer-auto-tls: peers present self-signed certificates, which are not verified")
		}
		s.peerAutoTLS = true
		s.certValidity = time.Duration(c.selfSignedCertValidity) * 365 * 24 * time.Hour
		s.warnings = append(s.warnings, "--peer-auto-tls: peer traffic is encrypted with a self-signed certificate, but members do not authenticate each other: any host that reaches the peer port can take part (use --peer-trusted-ca-file with certificates from a cluster CA to prevent that)")
	} else if s.listenPeer.Scheme == "https" {
		if c.peerTrustedCAFile == "" {
			return nil, errors.New("https peer URLs need --peer-trusted-ca-file (the cluster CA): accord peers verify each other (--peer-auto-tls instead encrypts without verifying)")
		}
		if s.peerTLS, err = serverTLS("peer-", c.peerCertFile, c.peerKeyFile, c.peerTrustedCAFile, true); err != nil {
			return nil, err
		}
		s.peerTLS.RootCAs = s.peerTLS.ClientCAs
	} else if c.peerCertFile != "" || c.peerKeyFile != "" {
		return nil, errors.New("--peer-cert-file/--peer-key-file are set but the peer URLs use http: use https URLs for peer TLS")
	}

	if s.compaction, err = parseCompaction(c.autoCompactionMode, c.autoCompactionRet); err != nil {
		return nil, err
	}

	o := &s.opts
	o.ClusterName = c.initialClusterToken
	o.NodeName = c.name
	o.PeerAddr = s.listenPeer.Host
	o.AdvertisePeerAddr = s.advertisePeer.Host
	o.PeerTLS = s.peerTLS
	o.ElectionTimeout = time.Duration(c.electionTimeoutMS) * time.Millisecond
	o.SnapshotThreshold = c.snapshotCount
	o.TrailingLogs = c.snapshotCatchup
	o.SnapshotInterval = c.snapshotInterval
	o.MaxRequestBytes = int(c.maxRequestBytes)
	o.MaxTxnOps = int(c.maxTxnOps)
	o.WatchProgressNotifyInterval = c.watchProgressNotify
	o.UnsafeNoFsync = c.unsafeNoFsync
	o.QuotaBytes = c.quotaBackendBytes
	o.AutoCompaction = accord.AutoCompaction{Period: s.compaction.period, Revisions: s.compaction.revisions}
	o.NoStrictReconfigCheck = !c.strictReconfigCheck
	o.Version = memberVersion
	for _, u := range s.advertiseCli {
		o.ClientURLs = append(o.ClientURLs, u.String())
	}

	// Gossip.
	gossip := c.join != "" || c.bootstrapExpect > 1
	if c.bootstrapExpect < 0 {
		return nil, fmt.Errorf("--bootstrap-expect %d is negative", c.bootstrapExpect)
	}
	if c.gossipKeyFile != "" && c.listenGossipURL == "" && !gossip {
		return nil, errors.New("--gossip-key-file needs gossip: --listen-gossip-url, --join or --bootstrap-expect")
	}
	if gossip || c.listenGossipURL != "" {
		addr := c.listenGossipURL
		if addr == "" {
			h := s.listenPeer.Hostname()
			if h == "localhost" {
				h = "127.0.0.1"
			}
			addr = net.JoinHostPort(h, "2381")
		}
		if o.GossipAddr, err = hostPort("listen-gossip-url", addr); err != nil {
			return nil, err
		}
		if h, _, _ := net.SplitHostPort(o.GossipAddr); h != "" && net.ParseIP(h) == nil {
			return nil, fmt.Errorf("--listen-gossip-url %q: the host must be an IP address", addr)
		}
		for _, j := range strings.Split(c.join, ",") {
			if strings.TrimSpace(j) == "" {
				continue
			}
			hp, err := hostPort("join", j)
			if err != nil {
				return nil, err
			}
			o.Join = append(o.Join, hp)
		}
		if c.gossipKeyFile != "" {
			if o.GossipKey, err = readGossipKey(c.gossipKeyFile); err != nil {
				return nil, err
			}
		}
	}
	if gossip {
		// Members find each other by gossip: --initial-cluster has no part.
		for _, f := range []string{"initial-cluster", "initial-cluster-state"} {
			if c.set[f] {
				return nil, fmt.Errorf("--%s and --join/--bootstrap-expect exclude each other: a gossip cluster forms by itself", f)
			}
		}
		s.state = "gossip"
		o.BootstrapExpect = c.bootstrapExpect
		if !c.set["name"] {
			o.NodeName = "" // accord names the member after its generated ID
		}
		return s, nil
	}

	ic := c.initialCluster
	if ic == "" {
		ic = c.name + "=" + s.advertisePeer.String()
	}
	if s.cluster, err = parseInitialCluster(ic); err != nil {
		return nil, err
	}
	var self *member
	for i := range s.cluster {
		if s.cluster[i].name == c.name {
			self = &s.cluster[i]
		}
	}
	if self == nil {
		return nil, fmt.Errorf("--initial-cluster %q has no member named %q (--name)", ic, c.name)
	}
	if self.url.Host != s.advertisePeer.Host || self.url.Scheme != s.advertisePeer.Scheme {
		return nil, fmt.Errorf("--initial-cluster gives %s the peer URL %s, but --initial-advertise-peer-urls is %s", c.name, self.url, s.advertisePeer)
	}
	for _, m := range s.cluster {
		if m.url.Scheme != s.advertisePeer.Scheme {
			return nil, fmt.Errorf("--initial-cluster mixes http and https peer URLs (%s)", m.url)
		}
	}
	switch c.initialClusterState {
	case "new":
		s.state = "new"
		o.NodeID = nodeID(c.initialClusterToken, c.name)
		addrs := map[string]bool{}
		for _, m := range s.cluster {
			if m.name == "" {
				return nil, fmt.Errorf("--initial-cluster: member with peer URL %s has no name", m.url)
			}
			if addrs[m.url.Host] {
				return nil, fmt.Errorf("--initial-cluster lists peer address %s twice", m.url.Host)
			}
			addrs[m.url.Host] = true
			o.InitialCluster = append(o.InitialCluster, accord.InitialMember{ID: nodeID(c.initialClusterToken, m.name), PeerAddr: m.url.Host})
		}
	case "existing":
		s.state = "existing"
		o.JoinExisting = true
		for _, m := range s.cluster {
			if m.name != c.name && m.url.Host != s.advertisePeer.Host {
				o.Peers = append(o.Peers, m.url.Host)
			}
		}
		if len(o.Peers) == 0 {
			return nil, fmt.Errorf("--initial-cluster-state=existing, but --initial-cluster %q names no other member to join", ic)
		}
	default:
		return nil, fmt.Errorf("--initial-cluster-state %q: want new or existing", c.initialClusterState)
	}
	return s, nil
}

func validToken(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// parseCompaction parses --auto-compaction-mode and -retention as etcd
// does: periodic retention is a duration ("30m") or a number of hours
// ("1"); revision retention is a number of revisions; "0" disables.
func parseCompaction(mode, retention string) (compactionPolicy, error) {
	p := compactionPolicy{mode: mode}
	switch mode {
	case "periodic":
		if h, err := strconv.ParseFloat(retention, 64); err == nil && h >= 0 {
			p.period = time.Duration(h * float64(time.Hour))
		} else if d, err := time.ParseDuration(retention); err == nil && d >= 0 {
			p.period = d
		} else {
			return p, fmt.Errorf("--auto-compaction-retention %q: want a duration (\"1h\") or hours (\"1\") with --auto-compaction-mode=periodic", retention)
		}
		if p.period > 0 && p.period < time.Second {
			return p, fmt.Errorf("--auto-compaction-retention %q: at least 1s", retention)
		}
	case "revision":
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n < 0 {
			return p, fmt.Errorf("--auto-compaction-retention %q: want a number of revisions with --auto-compaction-mode=revision", retention)
		}
		p.revisions = n
	default:
		return p, fmt.Errorf("--auto-compaction-mode %q: want periodic or revision", mode)
	}
	return p, nil
}

// serverTLS loads a certificate and key, and with clientAuth the CA that
// client certificates must chain to. prefix is "" or "peer-", for messages.
func serverTLS(prefix, certFile, keyFile, caFile string, clientAuth bool) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		what := "client"
		if prefix == "peer-" {
			what = "peer"
		}
		return nil, fmt.Errorf("https %s URLs need --%scert-file and --%skey-file", what, prefix, prefix)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--%scert-file/--%skey-file: %v", prefix, prefix, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--%strusted-ca-file: %v", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%strusted-ca-file %s: no PEM certificate in it", prefix, caFile)
		}
		cfg.ClientCAs = pool
	}
	if clientAuth {
		if cfg.ClientCAs == nil {
			return nil, fmt.Errorf("--%sclient-cert-auth needs --%strusted-ca-file", prefix, prefix)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// readGossipKey reads a gossip key file: 16, 24 or 32 raw bytes, or their
// base64 (what `consul keygen` and `openssl rand -base64 32` print).
func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %v", err)
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err == nil && validKeyLen(len(k)) {
		return k, nil
	}
	if validKeyLen(len(b)) {
		return b, nil
	}
	return nil, fmt.Errorf("--gossip-key-file %s: want 16, 24 or 32 bytes, raw or base64", path)
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
