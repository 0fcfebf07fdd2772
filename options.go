package accord

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/accordkv/accord/internal/raftlog"
)

// Options configures a Store. The zero value (or a nil *Options) runs a
// single node with the defaults documented on each field. Open copies the
// Options, so changing them afterwards has no effect.
type Options struct {
	// Logger receives background events (leadership changes, snapshots,
	// lease expiry, failures that no caller sees as an error). Default nil:
	// the store logs nothing. Attribute keys are stable: node, index, term,
	// lease, err.
	Logger *slog.Logger

	// NodeID is this node's permanent identity: the raft server ID (and,
	// in a cluster, the gossip name). Default "": generated once and kept in
	// the data directory. A NodeID that differs from the one stored in an
	// existing data directory makes Open fail with ErrForeignDir.
	NodeID string

	// ClusterName names the cluster; stored in the data directory, and Open
	// refuses a directory of another cluster. Default "accord".
	ClusterName string

	// ElectionTimeout is how long a follower waits without hearing from a
	// leader before it starts an election; the leader steps down after half
	// of it without a quorum. Default 1s (etcd's default). Minimum 10ms.
	ElectionTimeout time.Duration

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one. Default 8192.
	SnapshotThreshold uint64

	// SnapshotInterval is how often the store checks whether a snapshot is
	// due. A snapshot is cheap (the state is kv.db: it costs one commit of
	// it), and it bounds the raft log a restart reads. Default 2s.
	SnapshotInterval time.Duration

	// TrailingLogs is how many log entries are kept after a snapshot, so
	// that a slightly lagging follower catches up from the log instead of a
	// full snapshot. Default 10240.
	TrailingLogs uint64

	// SnapshotRetain is how many snapshots are kept on disk. Default 2.
	SnapshotRetain int

	// MaxRequestBytes caps the encoded size of one write. Default 1.5 MiB
	// (etcd's --max-request-bytes).
	MaxRequestBytes int

	// MinFreeDiskBytes is the free space the file system holding the data
	// directory must keep: below it, writes (Put, Delete, Txn, Grant) fail
	// at once with ErrNoSpace instead of reaching the raft log, where a
	// failed append makes a leader step down and re-elect over and over.
	// Reads, Revoke and Compact keep working, and writes resume by
	// themselves once space is back. Default 64 MiB; -1 turns the check
	// off. With the check on, the data directory also holds a 4 MiB
	// preallocated file, disk.reserve (Linux), freed the moment a raft
	// append fails for lack of space, so that a disk filled faster than the
	// check notices costs one election rather than one per append.
	MinFreeDiskBytes int64

	// MaxTxnOps caps the compares and the operations of each branch of a
	// transaction; a nested transaction gets what its parent level leaves
	// (MaxTxnOps minus the parent's count), as in etcd. Default 128 (etcd's
	// --max-txn-ops).
	MaxTxnOps int

	// WatchProgressNotifyInterval is how often a watch created with
	// WithProgressNotify receives a progress notification while idle.
	// Default 10m (etcd's default).
	WatchProgressNotifyInterval time.Duration

	// PeerAddr is the host:port the peer listener binds: raft and accord's
	// internal RPCs (forwarded writes, reads and lease renewals) share it.
	// Port 0 picks a free port (Store.PeerAddr reports it). Default "": no
	// listener, and the store can only ever be a single node.
	PeerAddr string

	// AdvertisePeerAddr is the address other members dial to reach this
	// node. Default: the address the listener bound; required when
	// PeerAddr binds every interface (0.0.0.0 or [::]).
	AdvertisePeerAddr string

	// PeerTLS turns on mutual TLS for the peer port. It must hold this
	// node's certificate (Certificates), and the cluster CA as both RootCAs
	// (to check the members it dials) and ClientCAs (to check the members
	// that dial it). Peer certificates must name the peer's address (an IP
	// SAN for an IP address). A host without a certificate from that CA can
	// neither speak raft to a member nor call its RPCs. With
	// InsecureSkipVerify set (and no CA needed), peer traffic is encrypted
	// but peers are not authenticated: any host that reaches the peer port
	// with some certificate is accepted, as with etcd's --peer-auto-tls
	// (self-signed certificates); that excludes gossip. Default nil:
	// plaintext.
	PeerTLS *tls.Config

	// JoinExisting makes a node whose data directory is empty join a running
	// cluster in which it was added with AddMember (etcd's
	// --initial-cluster-state=existing) instead of starting a new one. It
	// asks the members at Peers which ID it was added under (by its
	// advertised peer address). Ignored once the directory has state.
	// Default false.
	JoinExisting bool

	// Peers lists peer addresses of current members, for JoinExisting.
	Peers []string

	// JoinTimeout bounds how long Open waits for a member at Peers to
	// confirm this node's ID (JoinExisting). Default 30s.
	JoinTimeout time.Duration

	// NodeName is a human name for this node, shown in Status, Members and
	// gossip; unlike NodeID it may change between restarts. Default: the
	// NodeID.
	NodeName string

	// ClientURLs are the URLs at which clients reach this member (etcd's
	// --advertise-client-urls), for a server such as etcdapi that exposes
	// the store. The member publishes them, with NodeName, through the
	// log, so every member's Members reports them, with or without gossip.
	// Publishing waits until every member runs accord 0.2.0 or later (the
	// cluster-version gate). At most 16 URLs of at most 256 bytes each.
	// Default nil.
	ClientURLs []string

	// GossipAddr is the host:port the gossip agent (serf over memberlist)
	// binds, on both TCP and UDP. The host must be an IP address (empty
	// binds every interface); port 0 picks a free port (Store.GossipAddr
	// reports it). Gossip lets nodes find each other (Join), bootstrap
	// together (BootstrapExpect), and lets the leader add, promote and
	// remove members as they come and go. Requires PeerAddr. Default "":
	// gossip off, membership is explicit only.
	GossipAddr string

	// AdvertiseGossipAddr is the ip:port other nodes gossip with. Default:
	// the address GossipAddr bound (a private IP of this host when it binds
	// every interface).
	AdvertiseGossipAddr string

	// Join lists gossip addresses (host:port) of nodes to join. After Open,
	// the store keeps trying, with backoff, until one of them answers;
	// failures are logged, not returned. A node that joins is added by the
	// leader as a non-voter, and promoted to voter once caught up and
	// stable (see NonVoter, MaxVoters). Default nil.
	Join []string

	// InitialCluster lists every voter of a new cluster by node ID and peer
	// address, as etcd's --initial-cluster with
	// --initial-cluster-state=new does: a node whose data directory is empty
	// bootstraps exactly this configuration. Give every initial member the
	// same list (raft accepts identical bootstraps); NodeID must be set and
	// be in the list, with this node's advertised peer address. A node with
	// raft state never bootstraps again, so the list is then ignored.
	// Excludes JoinExisting and BootstrapExpect > 1. Default nil.
	InitialCluster []InitialMember

	// BootstrapExpect is how many voters form a new cluster. 1: this node
	// bootstraps a cluster of its own when its data directory is empty (and
	// others can Join it). N > 1: on an empty data directory, the node waits
	// until it sees N live voter candidates of this ClusterName in gossip,
	// checks that none of the nodes it sees has raft state (otherwise it
	// waits to be added), and then every candidate bootstraps the same
	// configuration: the N smallest node IDs. Start exactly N such nodes;
	// others should only Join. A node with raft state never bootstraps
	// again. Open does not wait for an N > 1 bootstrap. Default: 1 when
	// Join is empty (and NonVoter is false), otherwise 0: never bootstrap,
	// wait to be added by the leader.
	BootstrapExpect int

	// GossipKey encrypts and authenticates gossip (AES-GCM; 16, 24 or 32
	// bytes); nodes with another key or none cannot join. It protects
	// gossip only: use PeerTLS for raft and RPC. Default nil: plaintext
	// gossip.
	GossipKey []byte

	// NonVoter makes this node a member that never votes (a learner): it
	// receives the log and serves reads but never counts toward quorum.
	// Requires GossipAddr. Default false: promoted to voter when there is
	// room (MaxVoters).
	NonVoter bool

	// MaxVoters caps how many voters the leader's gossip-driven promotion
	// makes; further members stay non-voters. It does not limit explicit
	// AddMember or PromoteMember. Default 5.
	MaxVoters int

	// ReapTimeout is how long a member that failed (rather than left
	// gracefully) may stay unreachable in gossip before the leader removes
	// it from the configuration, and then only if the remaining live voters
	// still form a quorum of the new configuration. A member that leaves
	// gracefully is removed at once. Default 72h (Consul's reconnect
	// timeout).
	ReapTimeout time.Duration

	// NoStrictReconfigCheck turns off the quorum checks of AddMember,
	// RemoveMember and PromoteMember (etcd's --strict-reconfig-check=false).
	// With the checks on (the default, as in etcd), the leader refuses a
	// change after which fewer started voters than a quorum would be left
	// (ErrNotEnoughStartedMembers), and one that would need more voters
	// than it can reach now to keep a working quorum (ErrUnhealthy). Adding
	// or removing a learner is never refused, nor is adding the second
	// voter to a one-member cluster. Removing the last voter is refused
	// with ErrNotEnoughStartedMembers either way. Default false: checks on.
	NoStrictReconfigCheck bool

	// Version is the version this member advertises; the cluster runs at the
	// lowest version among its members. Default: ReleaseVersion.
	// Tests set it to rehearse mixed-version clusters.
	Version string

	// UnsafeNoFsync skips fsync on every raft log and kv.db write. A
	// crash of the machine (not just the process) can then lose
	// acknowledged writes. Only for tests and benchmarks. Default false.
	UnsafeNoFsync bool

	// QuotaBytes is the space quota of kv.db (etcd's
	// --quota-backend-bytes). A write that would take the file past it
	// raises a NOSPACE alarm through the log; while any member has one,
	// writes that add data (Put, a Txn with a put, Grant) fail with
	// ErrSpaceExceeded on every member, and reads, deletes, Compact,
	// Defragment and DisarmAlarm keep working. Compact plus Defragment give
	// the space back; DisarmAlarm then lifts the alarm. A quota below the
	// file's size at Open raises the alarm at once. Default 0: 2 GiB, as
	// in etcd; above 8 GiB Open logs a warning (etcd's recommended
	// maximum); negative, or more than 1 TiB, is refused.
	QuotaBytes int64

	// AutoCompaction compacts history on its own (etcd's
	// --auto-compaction-*). Default zero: off, as in etcd.
	AutoCompaction AutoCompaction

	// logSegmentSize is the size of new raft log segment files
	// (internal/raftlog); 0 is raftlog's default. Tests make it small.
	logSegmentSize int64

	// onLogSync receives the duration of every raft log fdatasync
	// (Metrics.WALFsync); set by Open on its own copy.
	onLogSync func(time.Duration)
}

// backendOptions are the options of kv.db.
func (o *Options) backendOptions(log *slog.Logger) *backendOptions {
	if log == nil {
		log = o.Logger
	}
	return &backendOptions{noSync: o.UnsafeNoFsync, clusterName: o.ClusterName, nodeID: o.NodeID, quota: o.QuotaBytes, log: log}
}

// raftLogOptions are the options of the raft log in raft-log/.
func (o *Options) raftLogOptions() raftlog.Options {
	return raftlog.Options{SegmentSize: o.logSegmentSize, NoSync: o.UnsafeNoFsync, OnSync: o.onLogSync}
}

// Defaults, as documented on Options.
const (
	defaultClusterName       = "accord"
	defaultElectionTimeout   = time.Second
	defaultSnapshotThreshold = 8192
	defaultSnapshotInterval  = 2 * time.Second
	defaultTrailingLogs      = 10240
	defaultSnapshotRetain    = 2
	defaultMaxRequestBytes   = 3 << 19 // 1.5 MiB
	defaultMinFreeDisk       = 64 << 20
	defaultMaxTxnOps         = 128
	defaultProgressInterval  = 10 * time.Minute
	defaultMaxVoters         = 5
	defaultReapTimeout       = 72 * time.Hour
	defaultQuotaBytes        = 2 << 30
	warnQuotaBytes           = 8 << 30
	maxQuotaBytes            = 1 << 40

	// MaxLeaseTTL is the largest TTL Grant accepts (etcd's limit, 9e9 s).
	MaxLeaseTTL = 9_000_000_000 * time.Second
)

// withDefaults returns a filled copy of o (which may be nil) and every
// problem found, joined.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.ClusterName == "" {
		c.ClusterName = defaultClusterName
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = defaultElectionTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = defaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = defaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = defaultSnapshotRetain
	}
	if c.MinFreeDiskBytes == 0 {
		c.MinFreeDiskBytes = defaultMinFreeDisk
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = defaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = defaultMaxTxnOps
	}
	if c.WatchProgressNotifyInterval == 0 {
		c.WatchProgressNotifyInterval = defaultProgressInterval
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = 30 * time.Second
	}
	if c.Version == "" {
		c.Version = ReleaseVersion
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 && !c.NonVoter && len(c.InitialCluster) == 0 {
		c.BootstrapExpect = 1
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = defaultMaxVoters
	}
	if c.ReapTimeout == 0 {
		c.ReapTimeout = defaultReapTimeout
	}
	if c.QuotaBytes == 0 {
		c.QuotaBytes = defaultQuotaBytes
	}
	c.Join = append([]string(nil), c.Join...)
	c.GossipKey = append([]byte(nil), c.GossipKey...)
	if len(c.GossipKey) == 0 {
		c.GossipKey = nil
	}
	c.Peers = append([]string(nil), c.Peers...)
	c.ClientURLs = append([]string(nil), c.ClientURLs...)
	c.InitialCluster = append([]InitialMember(nil), c.InitialCluster...)

	if c.PeerTLS != nil {
		c.PeerTLS = c.PeerTLS.Clone()
	}

	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("accord: options: "+format, args...))
	}
	if c.NodeID != "" && !validName(c.NodeID) {
		bad("NodeID %q: use 1-128 characters from [A-Za-z0-9._-]", c.NodeID)
	}
	if !validName(c.ClusterName) {
		bad("ClusterName %q: use 1-128 characters from [A-Za-z0-9._-]", c.ClusterName)
	}
	if c.ElectionTimeout < 10*time.Millisecond {
		bad("ElectionTimeout %v is below the minimum 10ms", c.ElectionTimeout)
	}
	if c.SnapshotInterval < 0 {
		bad("SnapshotInterval %v is negative", c.SnapshotInterval)
	}
	if c.SnapshotRetain < 0 {
		bad("SnapshotRetain %d is negative", c.SnapshotRetain)
	}
	if c.QuotaBytes < 0 || c.QuotaBytes > maxQuotaBytes {
		bad("QuotaBytes %d: use 0 (2 GiB) up to 1 TiB", c.QuotaBytes)
	}
	switch ac := c.AutoCompaction; {
	case ac.Period != 0 && ac.Revisions != 0:
		bad("AutoCompaction: set Period or Revisions, not both")
	case ac.Period < 0 || ac.Period > 0 && ac.Period < time.Second:
		bad("AutoCompaction.Period %v: at least 1s (0 is off)", ac.Period)
	case ac.Revisions < 0:
		bad("AutoCompaction.Revisions %d is negative", ac.Revisions)
	}
	if c.MaxRequestBytes < 0 {
		bad("MaxRequestBytes %d is negative", c.MaxRequestBytes)
	}
	if c.MaxTxnOps < 0 {
		bad("MaxTxnOps %d is negative", c.MaxTxnOps)
	}
	if c.WatchProgressNotifyInterval < 0 {
		bad("WatchProgressNotifyInterval %v is negative", c.WatchProgressNotifyInterval)
	}
	for _, a := range append([]string{c.PeerAddr, c.AdvertisePeerAddr}, c.Peers...) {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("peer address %q: %v", a, err)
		}
	}
	if c.AdvertisePeerAddr != "" && c.PeerAddr == "" {
		bad("AdvertisePeerAddr is set but PeerAddr is not")
	}
	if len(c.InitialCluster) > 0 {
		ids, addrs := map[string]bool{}, map[string]bool{}
		for _, m := range c.InitialCluster {
			if m.ID == "" || m.PeerAddr == "" {
				bad("InitialCluster entry %+v: both ID and PeerAddr are required", m)
			}
			if ids[m.ID] || addrs[m.PeerAddr] {
				bad("InitialCluster lists %q / %q twice", m.ID, m.PeerAddr)
			}
			ids[m.ID], addrs[m.PeerAddr] = true, true
		}
		switch {
		case c.PeerAddr == "":
			bad("InitialCluster needs PeerAddr")
		case c.NodeID == "":
			bad("InitialCluster needs NodeID: this node's ID in the list")
		case !ids[c.NodeID]:
			bad("InitialCluster does not list this node's NodeID %q", c.NodeID)
		case c.JoinExisting:
			bad("InitialCluster and JoinExisting exclude each other: a new cluster or an existing one")
		case c.BootstrapExpect > 1:
			bad("InitialCluster and BootstrapExpect %d exclude each other", c.BootstrapExpect)
		}
	}
	if c.JoinExisting && (c.PeerAddr == "" || len(c.Peers) == 0) {
		bad("JoinExisting needs PeerAddr and Peers")
	}
	if c.PeerTLS != nil && len(c.PeerTLS.Certificates) == 0 && c.PeerTLS.GetCertificate == nil {
		bad("PeerTLS has no certificate")
	}
	switch {
	case c.PeerTLS != nil && c.PeerTLS.InsecureSkipVerify:
		if c.GossipAddr != "" {
			bad("PeerTLS with InsecureSkipVerify cannot be combined with gossip (GossipAddr): gossip admits a node as a member by its certificate from the cluster CA")
		}
	case c.PeerTLS != nil && (c.PeerTLS.RootCAs == nil || c.PeerTLS.ClientCAs == nil):
		bad("PeerTLS needs the cluster CA in both RootCAs and ClientCAs")
	}
	if c.JoinTimeout < 0 {
		bad("JoinTimeout %v is negative", c.JoinTimeout)
	}
	errs = append(errs, c.gossipProblems()...)
	return c, errors.Join(errs...)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// requestTimeout bounds one round trip to another member: etcd's request
// timeout (its ReqTimeout), 5 s plus two election timeouts, long enough for
// a leader to commit through an election and short enough that a request
// lost on a connection that stays open does not hold its caller forever.
func (o *Options) requestTimeout() time.Duration { return 5*time.Second + 2*o.ElectionTimeout }

// minLeaseTTL is the shortest TTL Grant gives: 1.5 election timeouts, so
// that a lease survives a leader change (etcd's rule).
func (o *Options) minLeaseTTL() time.Duration { return o.ElectionTimeout * 3 / 2 }

// gossipProblems checks the gossip options of a filled Options.
func (c *Options) gossipProblems() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("accord: options: "+format, args...))
	}
	if len(c.NodeName) > 128 || !utf8.ValidString(c.NodeName) || strings.ContainsFunc(c.NodeName, unicode.IsControl) {
		bad("NodeName %q: use at most 128 bytes of printable UTF-8", c.NodeName)
	}
	if len(c.ClientURLs) > 16 {
		bad("ClientURLs: %d URLs, at most 16", len(c.ClientURLs))
	}
	for _, u := range c.ClientURLs {
		if u == "" || len(u) > 256 || !utf8.ValidString(u) || strings.ContainsFunc(u, unicode.IsControl) {
			bad("ClientURLs: %q: use 1 to 256 bytes of printable UTF-8", u)
		}
	}
	if c.GossipAddr != "" {
		if c.PeerAddr == "" {
			bad("GossipAddr is set but PeerAddr is not: gossip only finds members, raft needs the peer listener")
		}
		if host, port, err := net.SplitHostPort(c.GossipAddr); err != nil {
			bad("GossipAddr %q: %v", c.GossipAddr, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("GossipAddr %q: bad port", c.GossipAddr)
		} else if host != "" && net.ParseIP(host) == nil {
			bad("GossipAddr %q: the host must be an IP address", c.GossipAddr)
		}
	}
	if c.AdvertiseGossipAddr != "" {
		if c.GossipAddr == "" {
			bad("AdvertiseGossipAddr is set but GossipAddr is not")
		}
		if host, port, err := net.SplitHostPort(c.AdvertiseGossipAddr); err != nil {
			bad("AdvertiseGossipAddr %q: %v", c.AdvertiseGossipAddr, err)
		} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			bad("AdvertiseGossipAddr %q: bad port", c.AdvertiseGossipAddr)
		} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			bad("AdvertiseGossipAddr %q: the host must be a specific IP address", c.AdvertiseGossipAddr)
		}
	}
	if len(c.Join) > 0 && c.GossipAddr == "" {
		bad("Join is set but GossipAddr is not")
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("Join address %q: %v", a, err)
		}
	}
	switch {
	case c.BootstrapExpect < 0:
		bad("BootstrapExpect %d is negative", c.BootstrapExpect)
	case c.BootstrapExpect > 1 && c.GossipAddr == "":
		bad("BootstrapExpect %d needs GossipAddr to find the other nodes", c.BootstrapExpect)
	case c.BootstrapExpect > 1 && c.JoinExisting:
		bad("BootstrapExpect %d and JoinExisting exclude each other", c.BootstrapExpect)
	case c.BootstrapExpect > 0 && c.NonVoter:
		bad("NonVoter with BootstrapExpect %d: a non-voter never bootstraps a cluster", c.BootstrapExpect)
	case c.MaxVoters > 0 && c.BootstrapExpect > c.MaxVoters:
		bad("BootstrapExpect %d exceeds MaxVoters %d", c.BootstrapExpect, c.MaxVoters)
	}
	if c.NonVoter && c.GossipAddr == "" {
		bad("NonVoter needs GossipAddr (explicit members choose with AddMember's asLearner)")
	}
	if n := len(c.GossipKey); n != 0 && n != 16 && n != 24 && n != 32 {
		bad("GossipKey has %d bytes; use 16, 24 or 32 (AES-128, -192 or -256)", n)
	}
	if c.MaxVoters < 0 {
		bad("MaxVoters %d is negative", c.MaxVoters)
	}
	if c.ReapTimeout < 0 {
		bad("ReapTimeout %v is negative", c.ReapTimeout)
	}
	return errs
}

// InitialMember is one voter of a new cluster (Options.InitialCluster).
type InitialMember struct {
	ID       string // the member's NodeID
	PeerAddr string // its advertised peer address, host:port
}
