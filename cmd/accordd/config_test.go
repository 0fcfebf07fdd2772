package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accordkv/accord"
)

// settingsFor parses and validates args and env, failing the test on error.
func settingsFor(t *testing.T, args, env []string) (*settings, []string) {
	t.Helper()
	c, warnings, err := parseConfig(args, env)
	if err != nil {
		t.Fatalf("parseConfig(%q, %q): %v", args, env, err)
	}
	s, err := c.validate()
	if err != nil {
		t.Fatalf("validate(%q, %q): %v", args, env, err)
	}
	return s, warnings
}

func TestConfigDefaults(t *testing.T) {
	s, warnings := settingsFor(t, nil, nil)
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	o := s.opts
	id := nodeID("etcd-cluster", "default")
	want := accord.Options{
		NodeID:                      id,
		NodeName:                    "default",
		ClusterName:                 "etcd-cluster",
		PeerAddr:                    "127.0.0.1:2380",
		AdvertisePeerAddr:           "127.0.0.1:2380",
		ClientURLs:                  []string{"http://127.0.0.1:2379"},
		InitialCluster:              []accord.InitialMember{{ID: id, PeerAddr: "127.0.0.1:2380"}},
		ElectionTimeout:             time.Second,
		SnapshotThreshold:           8192,
		SnapshotInterval:            2 * time.Second,
		TrailingLogs:                10240,
		MaxRequestBytes:             1572864,
		MaxTxnOps:                   128,
		WatchProgressNotifyInterval: 10 * time.Minute,
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("options:\n got %+v\nwant %+v", o, want)
	}
	if s.dataDir != "default.accord" || s.state != "new" || urlStrings(s.listenClient) != "http://127.0.0.1:2379" ||
		s.listenPeer.String() != "http://127.0.0.1:2380" || s.logLevel != "info" || s.logFormat != "json" {
		t.Errorf("settings: data-dir %q, state %q, client %s, peer %s, log %s/%s", s.dataDir, s.state,
			urlStrings(s.listenClient), s.listenPeer, s.logLevel, s.logFormat)
	}
	if len(id) != 16 {
		t.Errorf("node ID %q: want 16 hex digits", id)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := []string{
		"ETCD_NAME=n1",
		"ETCD_DATA_DIR=/var/lib/accordd",
		"ETCD_LISTEN_CLIENT_URLS=http://10.0.0.1:2379,http://127.0.0.1:2379",
		"ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.1:2379",
		"ETCD_LISTEN_PEER_URLS=http://10.0.0.1:2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.1:2380",
		"ETCD_INITIAL_CLUSTER=n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380",
		"ETCD_INITIAL_CLUSTER_TOKEN=prod",
		"ETCD_ELECTION_TIMEOUT=250",
		"ETCD_LOG_LEVEL=debug",
		"ETCD_AUTO_COMPACTION_RETENTION=2",
		"ETCD_SNAPSHOT_COUNT=500",
		"ETCD_SNAPSHOT_CATCHUP_ENTRIES=50",
		"ACCORD_SNAPSHOT_INTERVAL=2s",
	}
	s, warnings := settingsFor(t, nil, env)
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	o := s.opts
	if o.NodeName != "n1" || s.dataDir != "/var/lib/accordd" || o.ClusterName != "prod" || o.NodeID != nodeID("prod", "n1") ||
		o.ElectionTimeout != 250*time.Millisecond || s.logLevel != "debug" || s.compaction.period != 2*time.Hour {
		t.Errorf("got name %q dir %q cluster %q id %q election %v log %s compaction %v", o.NodeName, s.dataDir, o.ClusterName, o.NodeID, o.ElectionTimeout, s.logLevel, s.compaction)
	}
	if o.SnapshotThreshold != 500 || o.TrailingLogs != 50 || o.SnapshotInterval != 2*time.Second {
		t.Errorf("snapshots: count %d, catch-up entries %d, interval %v", o.SnapshotThreshold, o.TrailingLogs, o.SnapshotInterval)
	}
	if len(s.listenClient) != 2 || !slices.Equal(o.ClientURLs, []string{"http://10.0.0.1:2379"}) {
		t.Errorf("client URLs: listen %s, advertise %q", urlStrings(s.listenClient), o.ClientURLs)
	}
	wantIC := []accord.InitialMember{{ID: nodeID("prod", "n1"), PeerAddr: "10.0.0.1:2380"}, {ID: nodeID("prod", "n2"), PeerAddr: "10.0.0.2:2380"}}
	if !reflect.DeepEqual(o.InitialCluster, wantIC) {
		t.Errorf("initial cluster %+v, want %+v", o.InitialCluster, wantIC)
	}
}

// Every member of a static cluster computes the same initial configuration
// from the same --initial-cluster, with itself in it.
func TestConfigInitialClusterSameOnEveryMember(t *testing.T) {
	ic := "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380"
	var first []accord.InitialMember
	ids := map[string]bool{}
	for i, name := range []string{"a", "b", "c"} {
		peer := "http://10.0.0." + string(rune('1'+i)) + ":2380"
		s, _ := settingsFor(t, []string{"--name=" + name, "--initial-cluster=" + ic, "--listen-peer-urls=" + peer,
			"--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=" + strings.Replace(peer, "2380", "2379", 1),
			"--initial-cluster-token=tok"}, nil)
		if first == nil {
			first = s.opts.InitialCluster
		} else if !reflect.DeepEqual(first, s.opts.InitialCluster) {
			t.Errorf("%s computes %+v, a computed %+v", name, s.opts.InitialCluster, first)
		}
		ids[s.opts.NodeID] = true
		if !slices.ContainsFunc(s.opts.InitialCluster, func(m accord.InitialMember) bool {
			return m.ID == s.opts.NodeID && m.PeerAddr == s.opts.AdvertisePeerAddr
		}) {
			t.Errorf("%s (%s at %s) is not in its initial cluster %+v", name, s.opts.NodeID, s.opts.AdvertisePeerAddr, s.opts.InitialCluster)
		}
	}
	if len(ids) != 3 {
		t.Errorf("node IDs not distinct: %v", ids)
	}
	// Another token is another cluster: other IDs.
	if a, b := nodeID("tok", "a"), nodeID("tok", "a"); a == nodeID("tok2", "a") || a != b {
		t.Error("nodeID does not depend on exactly the token and the name")
	}
}

func TestConfigExistingFromMemberAdd(t *testing.T) {
	// What `etcdctl member add b --peer-urls=http://10.0.0.2:2380` prints,
	// with a member that has not started yet (empty name).
	env := []string{
		"ETCD_NAME=b",
		"ETCD_INITIAL_CLUSTER=a=http://10.0.0.1:2380,=http://10.0.0.3:2380,b=http://10.0.0.2:2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.2:2380",
		"ETCD_INITIAL_CLUSTER_STATE=existing",
		"ETCD_LISTEN_PEER_URLS=http://10.0.0.2:2380",
	}
	s, _ := settingsFor(t, nil, env)
	o := s.opts
	if !o.JoinExisting || o.NodeID != "" || len(o.InitialCluster) != 0 || !slices.Equal(o.Peers, []string{"10.0.0.1:2380", "10.0.0.3:2380"}) {
		t.Errorf("join %v, node ID %q, initial cluster %v, peers %q", o.JoinExisting, o.NodeID, o.InitialCluster, o.Peers)
	}
}

func TestConfigGossip(t *testing.T) {
	s, _ := settingsFor(t, []string{"--join=127.0.0.1:2391,http://127.0.0.1:2392", "--bootstrap-expect=3", "--listen-peer-urls=http://127.0.0.1:2390"}, nil)
	o := s.opts
	if s.state != "gossip" || o.BootstrapExpect != 3 || o.GossipAddr != "127.0.0.1:2381" || o.NodeID != "" || o.NodeName != "" ||
		!slices.Equal(o.Join, []string{"127.0.0.1:2391", "127.0.0.1:2392"}) || len(o.InitialCluster) != 0 {
		t.Errorf("state %s expect %d gossip %q id %q name %q join %q ic %v", s.state, o.BootstrapExpect, o.GossipAddr, o.NodeID, o.NodeName, o.Join, o.InitialCluster)
	}
	// accord's additions come from ACCORD_*; a key file holds base64.
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, warnings := settingsFor(t, []string{"--name=g1"}, []string{"ACCORD_JOIN=10.0.0.1:2381", "ACCORD_LISTEN_GOSSIP_URL=10.0.0.2:2381",
		"ACCORD_GOSSIP_KEY_FILE=" + key, "ETCD_BOOTSTRAP_EXPECT=3"})
	o = s.opts
	if !slices.Equal(o.Join, []string{"10.0.0.1:2381"}) || o.GossipAddr != "10.0.0.2:2381" || string(o.GossipKey) != "0123456789abcdef0123456789abcdef" ||
		o.BootstrapExpect != 0 || o.NodeName != "g1" {
		t.Errorf("join %q gossip %q key %q expect %d name %q", o.Join, o.GossipAddr, o.GossipKey, o.BootstrapExpect, o.NodeName)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool {
		return strings.Contains(w, "ETCD_BOOTSTRAP_EXPECT is not read") && strings.Contains(w, "ACCORD_BOOTSTRAP_EXPECT")
	}) {
		t.Errorf("no warning for ETCD_BOOTSTRAP_EXPECT: %q", warnings)
	}
}

// A flag wins over its variable, with a warning when they differ; ${VAR}
// references in variables are expanded first, so the systemd unit that
// passes --name=${ETCD_NAME} (and bash expanding ${LOCAL_IP} in it) raises
// no warning.
func TestConfigFlagsWinOverEnv(t *testing.T) {
	env := []string{
		"LOCAL_IP=10.0.0.7",
		"ETCD_NAME=fromenv",
		"ETCD_LISTEN_PEER_URLS=http://${LOCAL_IP}:2380",
		"ETCD_INITIAL_CLUSTER_TOKEN=same",
		"ETCD_DATA_DIR=/from/env",
		"ETCD_FOO=1",
	}
	args := []string{"--name=fromflag", "--listen-peer-urls=http://10.0.0.7:2380", "--initial-cluster-token=same", "--data-dir=/from/flag"}
	c, warnings, err := parseConfig(args, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "fromflag" || c.dataDir != "/from/flag" || c.listenPeerURLs != "http://10.0.0.7:2380" {
		t.Errorf("name %q data-dir %q peer %q: flags should win", c.name, c.dataDir, c.listenPeerURLs)
	}
	want := []string{
		"--data-dir=/from/flag shadows ETCD_DATA_DIR=/from/env; using the flag",
		"--name=fromflag shadows ETCD_NAME=fromenv; using the flag",
		"unrecognized environment variable ETCD_FOO",
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings:\n got %q\nwant %q", warnings, want)
	}
	// Without the flag, the variable is used, expanded.
	c, _, err = parseConfig(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "fromenv" || c.listenPeerURLs != "http://10.0.0.7:2380" {
		t.Errorf("name %q peer %q from env", c.name, c.listenPeerURLs)
	}
}

// The shipped accordd.conf (the seed's etcd.conf names), filled in, is a
// valid single-member configuration.
func TestConfigShippedEnvFile(t *testing.T) {
	b, err := os.ReadFile("accordd.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), `LOCAL_IP="CHANGE_THIS"`, `LOCAL_IP="10.1.2.3"`, 1)
	text = strings.Replace(text, `ETCD_NAME="CHANGE_THIS"`, `ETCD_NAME="etcd0"`, 1)
	s, warnings := settingsFor(t, nil, readEnvFile(t, text))
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if s.name != "etcd0" || urlStrings(s.listenClient) != "http://10.1.2.3:2379,http://127.0.0.1:2379" || s.dataDir != "/var/lib/accordd/data" ||
		len(s.opts.InitialCluster) != 1 || s.opts.InitialCluster[0].PeerAddr != "10.1.2.3:2380" || s.opts.AdvertisePeerAddr != "10.1.2.3:2380" {
		t.Errorf("name %q client %s dir %q initial cluster %+v", s.name, urlStrings(s.listenClient), s.dataDir, s.opts.InitialCluster)
	}
}

// Every flag accordd.service passes exists, with the variable of its name.
func TestServiceFileFlags(t *testing.T) {
	b, err := os.ReadFile("accordd.service")
	if err != nil {
		t.Fatal(err)
	}
	var c config
	fs := newFlagSet(&c)
	matches := regexp.MustCompile(`--([a-z-]+)=\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(b), -1)
	if len(matches) < 9 {
		t.Fatalf("found %d flags in accordd.service", len(matches))
	}
	for _, m := range matches {
		if fs.Lookup(m[1]) == nil {
			t.Errorf("accordd.service passes unknown flag --%s", m[1])
		}
		if envName(m[1]) != m[2] {
			t.Errorf("accordd.service passes --%s=${%s}; its variable is %s", m[1], m[2], envName(m[1]))
		}
	}
	for _, want := range []string{"Type=notify", "EnvironmentFile=/etc/accordd/accordd.conf", "Restart=on-failure"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("accordd.service lacks %q", want)
		}
	}
}

// Each bad configuration fails with exit code 1 and one line on stderr
// that names the problem, before anything starts.
func TestConfigErrors(t *testing.T) {
	badKey := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(badKey, []byte("tooshort"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unparsable client URL", []string{"--listen-client-urls=127.0.0.1:2379"}, nil, `--listen-client-urls: "127.0.0.1:2379" is not a URL`},
		{"URL without port", []string{"--listen-peer-urls=http://10.0.0.1"}, nil, "needs a port"},
		{"unparsable env URL", nil, []string{"ETCD_ADVERTISE_CLIENT_URLS=http//x"}, "--advertise-client-urls"},
		{"unexpanded variable", nil, []string{"ETCD_LISTEN_PEER_URLS=http://${LOCAL_IP}:2380"}, "${LOCAL_IP}"},
		{"name not in initial cluster", []string{"--name=c", "--initial-cluster=a=http://127.0.0.1:2380,b=http://127.0.0.2:2380"}, nil, `has no member named "c" (--name)`},
		{"initial cluster not a list", []string{"--initial-cluster=http://127.0.0.1:2380"}, nil, "is not name=URL"},
		{"advertise differs from initial cluster", []string{"--initial-cluster=default=http://127.0.0.1:2390"}, nil, "gives default the peer URL http://127.0.0.1:2390, but --initial-advertise-peer-urls is http://127.0.0.1:2380"},
		{"bad state", []string{"--initial-cluster-state=maybe"}, nil, "want new or existing"},
		{"existing alone", []string{"--initial-cluster-state=existing"}, nil, "names no other member"},
		{"bad token", []string{"--initial-cluster-token=my cluster"}, nil, "--initial-cluster-token"},
		{"two peer URLs", []string{"--listen-peer-urls=http://127.0.0.1:2380,http://127.0.0.2:2380"}, nil, "accord listens on one peer URL"},
		{"every interface, no advertise", []string{"--listen-client-urls=http://0.0.0.0:2379"}, nil, "--advertise-client-urls is required"},
		{"https without cert", []string{"--listen-client-urls=https://127.0.0.1:2379"}, nil, "need --cert-file and --key-file"},
		{"https peer without CA", []string{"--listen-peer-urls=https://127.0.0.1:2380"}, nil, "--peer-trusted-ca-file"},
		{"missing cert file", []string{"--listen-client-urls=https://127.0.0.1:2379", "--cert-file=/nonexistent.crt", "--key-file=/nonexistent.key"}, nil, "--cert-file/--key-file"},
		{"election timeout", []string{"--election-timeout=5"}, nil, "--election-timeout 5"},
		{"env not a number", nil, []string{"ETCD_ELECTION_TIMEOUT=1s"}, `ETCD_ELECTION_TIMEOUT="1s"`},
		{"log level", []string{"--log-level=loud"}, nil, "--log-level"},
		{"snapshot interval", []string{"--snapshot-interval=0s"}, nil, "--snapshot-interval 0s: must be positive"},
		{"unknown flag", []string{"--no-such-flag=1"}, nil, "flag provided but not defined: -no-such-flag"},
		{"stray argument", []string{"start"}, nil, `unexpected argument "start"`},
		{"gossip and initial cluster", []string{"--join=127.0.0.1:2381", "--initial-cluster=default=http://127.0.0.1:2380"}, nil, "exclude each other"},
		{"bad join", []string{"--join=nohost"}, nil, `--join: "nohost" is not host:port`},
		{"bad gossip key", []string{"--listen-gossip-url=127.0.0.1:2381", "--gossip-key-file=" + badKey}, nil, "want 16, 24 or 32 bytes"},
		{"bad compaction", []string{"--auto-compaction-retention=forever"}, nil, "--auto-compaction-retention"},
		{"unknown feature gate", []string{"--feature-gates=NoSuchGate=true"}, nil, "--feature-gates: unrecognized feature gate: NoSuchGate"},
		{"feature gate without a value", nil, []string{"ETCD_FEATURE_GATES=StopGRPCServiceOnDefrag"}, "missing bool value for StopGRPCServiceOnDefrag"},
		{"feature gate not a bool", []string{"--feature-gates=StopGRPCServiceOnDefrag=yes"}, nil, "invalid value of StopGRPCServiceOnDefrag=yes"},
		{"peer auto TLS with gossip", []string{"--listen-peer-urls=https://127.0.0.1:2380", "--peer-auto-tls", "--join=127.0.0.1:2381"}, nil, "--peer-auto-tls cannot be combined with gossip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, tc.env, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "accordd: ") {
				t.Errorf("stderr is not one line starting with \"accordd: \": %q", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("stderr %q does not say %q", out, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--version: exit code %d, stderr %q", code, stderr.String())
	}
	want := "accordd Version: " + accord.ReleaseVersion + "\nGit SHA: " + gitSHA() + "\nGo Version: " + runtime.Version() +
		"\nGo OS/Arch: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if stdout.String() != want {
		t.Errorf("--version printed\n%s\nwant\n%s", stdout.String(), want)
	}
	stdout.Reset()
	if code := run([]string{"--help"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit code %d", code)
	}
	for _, want := range []string{"--initial-cluster-token 'etcd-cluster' [ETCD_INITIAL_CLUSTER_TOKEN]", "--join [ACCORD_JOIN]", "snapshot restore"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help does not show %q", want)
		}
	}
}

// TestConfigEtcdToolingFlags: the flags etcd's own test tooling passes
// (issue 17): --strict-reconfig-check (etcd's default true; false turns the
// check off), --feature-gates (checked as etcd does, changing nothing),
// and --peer-auto-tls (a generated certificate with https peer URLs; no
// effect otherwise, or when certificate files are given).
func TestConfigEtcdToolingFlags(t *testing.T) {
	s, _ := settingsFor(t, nil, nil)
	if s.opts.NoStrictReconfigCheck {
		t.Error("the strict reconfiguration check is off by default")
	}
	s, warnings := settingsFor(t, []string{"--strict-reconfig-check=false", "--feature-gates=StopGRPCServiceOnDefrag=true,AllAlpha=false"}, nil)
	if !s.opts.NoStrictReconfigCheck {
		t.Error("--strict-reconfig-check=false left the check on")
	}
	if !slices.ContainsFunc(warnings, func(w string) bool {
		return strings.Contains(w, "--feature-gates StopGRPCServiceOnDefrag=true,AllAlpha=false")
	}) {
		t.Errorf("warnings %q do not mention the feature gates", warnings)
	}
	s, _ = settingsFor(t, nil, []string{"ETCD_STRICT_RECONFIG_CHECK=false"})
	if !s.opts.NoStrictReconfigCheck {
		t.Error("ETCD_STRICT_RECONFIG_CHECK=false left the check on")
	}

	https := []string{"--listen-peer-urls=https://127.0.0.1:2380", "--peer-auto-tls"}
	s, _ = settingsFor(t, https, nil)
	if !s.peerAutoTLS || s.opts.PeerTLS != nil || s.certValidity != 365*24*time.Hour {
		t.Errorf("https peer URLs with --peer-auto-tls: auto %v, PeerTLS %v, validity %v", s.peerAutoTLS, s.opts.PeerTLS, s.certValidity)
	}
	if !slices.ContainsFunc(s.warnings, func(w string) bool { return strings.Contains(w, "do not authenticate each other") }) {
		t.Errorf("no warning that auto TLS does not authenticate peers: %q", s.warnings)
	}
	if s, _ = settingsFor(t, []string{"--peer-auto-tls"}, nil); s.peerAutoTLS || len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "no effect with http peer URLs") {
		t.Errorf("http peer URLs with --peer-auto-tls: auto %v, warnings %q", s.peerAutoTLS, s.warnings)
	}

	// The certificate it generates names the peer host, and is kept.
	dir := t.TempDir()
	conf, err := selfSignedPeerTLS(dir, []string{"127.0.0.1", "node1.example"}, time.Hour*48)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.VerifyHostname("127.0.0.1") != nil || leaf.VerifyHostname("node1.example") != nil || !conf.InsecureSkipVerify {
		t.Errorf("generated certificate: IPs %v, names %v, InsecureSkipVerify %v", leaf.IPAddresses, leaf.DNSNames, conf.InsecureSkipVerify)
	}
	if fi, err := os.Stat(filepath.Join(autoTLSDir(dir), "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	again, err := selfSignedPeerTLS(dir, []string{"127.0.0.1"}, time.Hour*48)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificates[0].Certificate[0], leaf.Raw) {
		t.Error("a second start generated a new certificate although the stored one is valid")
	}
	// Another host (the member moved): a new certificate.
	moved, err := selfSignedPeerTLS(dir, []string{"127.0.0.2"}, time.Hour*48)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(moved.Certificates[0].Certificate[0], leaf.Raw) {
		t.Error("the stored certificate was kept for a host it does not name")
	}
}
