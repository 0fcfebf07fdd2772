package accord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/accordkv/accord/internal/logbridge"
	"github.com/accordkv/accord/internal/wire"
)

// Membership. The raft configuration is the membership: a member is a
// raft server, its ID the node's permanent ID, a learner a raft non-voter.
// Only the leader changes it. This file has the explicit operations etcd
// operators know (add a member by peer address before it starts, remove,
// promote a learner, transfer leadership, leave); gossip-driven membership
// builds on the same operations.

// ReleaseVersion is the accord version this build advertises to its cluster.
const ReleaseVersion = "0.3.0"

// Features gated on the cluster version: the first release whose members
// all understand them. A member uses a gated feature only while every
// member of the raft configuration is known to run that release or later
// (clusterAtLeast), as etcd gates features on its cluster version.
const (
	// versionMemberAttrs: members publish their name and client URLs
	// through the log (wire.CmdMemberAttrs), which 0.1.0 cannot apply.
	versionMemberAttrs = "0.2.0"
	// versionAlarms: alarms go through the log (wire.CmdAlarm), which
	// 0.2.0 cannot apply. Below it a write past the quota is still refused
	// on the member it reached, but no alarm is raised.
	versionAlarms = "0.3.0"
)

// Member is one member of the cluster.
type Member struct {
	ID string // permanent node ID (the raft server ID)
	// Name is the member's human name (Options.NodeName), as the member
	// published it or gossip reports it; "" for a member that has not
	// started yet (or is unknown).
	Name       string
	PeerAddr   string   // where members reach it
	ClientURLs []string // Options.ClientURLs as the member published them
	IsLearner  bool     // a non-voting member that receives the log
	IsLeader   bool
}

// Status describes this member and what it knows of the cluster.
type Status struct {
	ID              string // this member's ID
	Name            string // this member's human name (Options.NodeName)
	Leader          string // the leader's ID, "" when unknown
	LeaderAddr      string
	IsLearner       bool
	Term            uint64 // raft term
	CommitIndex     uint64 // raft commit index
	AppliedIndex    uint64 // last log index applied to this member's state
	Revision        int64  // current revision of this member's state
	CompactRevision int64
	DBSize          int64 // size of this member's kv.db (etcd's dbSize)
	// DBSizeInUse is the part of kv.db that holds data; the rest is free
	// pages that Defragment gives back (etcd's dbSizeInUse).
	DBSizeInUse int64
	QuotaBytes  int64   // Options.QuotaBytes (etcd's dbSizeQuota)
	Alarms      []Alarm // the cluster's active alarms, as this member applied them
	Version     string  // this member's version
	// ClusterVersion is the lowest version among the members: with gossip,
	// those gossip shows alive; without, those that answered.
	ClusterVersion string
}

// Members lists the members of the cluster, as of a linearizable point
// (it waits, within ctx, for a leader to confirm). With WithSerializable it
// answers at once from this member's own view, which may lag a change
// committed elsewhere; use that when the cluster may have no quorum.
func (s *Store) Members(ctx context.Context, opts ...OpOption) ([]Member, error) {
	if op := newOp(opGet, "", nil, opts); !op.serializable {
		if err := s.readIndex(ctx); err != nil {
			return nil, fmt.Errorf("accord: members: %w", err)
		}
	}
	conf, err := s.configuration()
	if err != nil {
		return nil, fmt.Errorf("accord: members: %w", err)
	}
	_, leader := s.leader()
	out := make([]Member, 0, len(conf.Servers))
	for _, srv := range conf.Servers {
		var name string
		var urls []string
		if a, ok := s.fsm.memberAttrs(string(srv.ID)); ok {
			name, urls = a.name, slices.Clone(a.clientURLs)
		}
		switch {
		case string(srv.ID) == s.id:
			name, urls = s.opts.NodeName, slices.Clone(s.opts.ClientURLs)
		case name == "" && s.gossip != nil:
			name = s.gossip.name(string(srv.ID))
		}
		out = append(out, Member{
			ID:         string(srv.ID),
			Name:       name,
			PeerAddr:   string(srv.Address),
			ClientURLs: urls,
			IsLearner:  srv.Suffrage != raft.Voter,
			IsLeader:   string(srv.ID) == leader,
		})
	}
	return out, nil
}

func (s *Store) configuration() (raft.Configuration, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, s.raftError(err)
	}
	return f.Configuration(), nil
}

// memberByAddr returns the ID of the member with the given peer address.
func (s *Store) memberByAddr(addr string) (string, error) {
	conf, err := s.configuration()
	if err != nil {
		return "", err
	}
	for _, srv := range conf.Servers {
		if string(srv.Address) == addr {
			return string(srv.ID), nil
		}
	}
	return "", fmt.Errorf("%w: no member has peer address %s", ErrMemberNotFound, addr)
}

// AddMember adds a member that will be reached at peerAddr, before it
// starts (etcd's member add). It returns the new member with the ID
// chosen for it; start the node with Options.JoinExisting and
// Options.Peers naming current members, and it takes that ID. A learner
// (asLearner) receives the log but does not vote until PromoteMember.
// Runs on the leader (forwarded from a follower). Errors: ErrMemberExists
// for a peer address already in use; for a voter, ErrNotEnoughStartedMembers
// or ErrUnhealthy from the strict reconfiguration check
// (Options.NoStrictReconfigCheck). If the outcome is unknown
// (ErrUnknownOutcome), Members tells whether the member was added.
func (s *Store) AddMember(ctx context.Context, peerAddr string, asLearner bool) (*Member, error) {
	if peerAddr == "" {
		return nil, fmt.Errorf("accord: add member: %w: empty peer address", ErrInvalidArgument)
	}
	resp, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCMemberAdd, Addr: peerAddr, Learner: asLearner})
	if err != nil {
		return nil, fmt.Errorf("accord: add member %s: %w", peerAddr, err)
	}
	return &Member{ID: resp.MemberID, PeerAddr: peerAddr, IsLearner: asLearner}, nil
}

func (s *Store) addMemberLocal(ctx context.Context, peerAddr string, asLearner bool) (string, error) {
	conf, err := s.configuration()
	if err != nil {
		return "", err
	}
	for _, srv := range conf.Servers {
		if string(srv.Address) == peerAddr {
			return "", fmt.Errorf("%w: %s is member %s", ErrMemberExists, peerAddr, srv.ID)
		}
	}
	id := newNodeID()
	var f raft.IndexFuture
	if asLearner {
		f = s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(peerAddr), 0, timeoutOf(ctx))
	} else {
		f = s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(peerAddr), 0, timeoutOf(ctx))
	}
	return id, s.waitConfChange(ctx, f)
}

// RemoveMember removes a member from the cluster; the removed node stops
// taking part. Runs on the leader (forwarded from a follower); a leader
// removing itself steps down. Errors: ErrMemberNotFound;
// ErrNotEnoughStartedMembers for the last voter; for a voter,
// ErrNotEnoughStartedMembers or ErrUnhealthy from the strict
// reconfiguration check (Options.NoStrictReconfigCheck).
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if _, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCMemberRemove, MemberID: id}); err != nil {
		return fmt.Errorf("accord: remove member %s: %w", id, err)
	}
	return nil
}

func (s *Store) removeMemberLocal(ctx context.Context, id string) error {
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	srv, ok := serverOf(conf, id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrMemberNotFound, id)
	}
	if srv.Suffrage == raft.Voter && voterCount(conf) == 1 {
		// raft refuses too ("need at least one voter"), in words no
		// client recognises.
		return fmt.Errorf("%w: %s is the only voter", ErrNotEnoughStartedMembers, id)
	}
	return s.waitConfChange(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)))
}

// ---- the strict reconfiguration check ----

// The explicit member changes (AddMember, RemoveMember, PromoteMember) are
// checked by the leader before it proposes them, with etcd's rules
// (server.go: mayAddMember, mayRemoveMember, mayPromoteMember), unless
// Options.NoStrictReconfigCheck. A voter is started if it is this node,
// has published its attributes through the log (it ran at least once), or
// answers a status request now; it is connected if it is this node or
// answers one now. etcd counts a peer connected when its stream has been
// up for 5 s; accord asks at the time of the change instead (member
// changes are rare, and the answer is current rather than 5 s old).

// voterHealth is what the leader knows of the voters of a configuration.
type voterHealth struct {
	started, connected map[string]bool
}

// probeVoters asks every other voter of conf for its status, concurrently,
// within one request timeout (and ctx).
func (s *Store) probeVoters(ctx context.Context, conf raft.Configuration) voterHealth {
	h := voterHealth{started: map[string]bool{}, connected: map[string]bool{}}
	ctx, cancel := context.WithTimeout(ctx, max(2*s.opts.ElectionTimeout, 500*time.Millisecond))
	defer cancel()
	answered := make(chan string, len(conf.Servers))
	var wg sync.WaitGroup
	for _, srv := range conf.Servers {
		id := string(srv.ID)
		if srv.Suffrage != raft.Voter {
			continue
		}
		if id == s.id {
			h.started[id], h.connected[id] = true, true
			continue
		}
		if a, ok := s.fsm.memberAttrs(id); ok && a.name != "" {
			h.started[id] = true
		}
		if s.peer == nil {
			continue
		}
		wg.Go(func() {
			// A status request is safe to repeat: one that failed after it
			// was sent most likely went out on a pooled connection that the
			// peer closed (it restarted, or was cut off and healed), and the
			// next one dials afresh. A peer that refuses the dial is down.
			for attempt := 0; attempt < 3; attempt++ {
				resp, err := s.peer.call(ctx, string(srv.Address), &wire.Request{Type: wire.RPCStatus, From: s.id})
				if err == nil {
					if resp.Status != nil && resp.Status.NodeID == id {
						answered <- id
					}
					return
				}
				if errors.Is(err, errNotSent) || ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	close(answered)
	for id := range answered {
		h.started[id], h.connected[id] = true, true
	}
	return h
}

func quorum(n int) int { return n/2 + 1 }

func voterCount(conf raft.Configuration) int {
	n := 0
	for _, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

func serverOf(conf raft.Configuration, id string) (raft.Server, bool) {
	for _, srv := range conf.Servers {
		if string(srv.ID) == id {
			return srv, true
		}
	}
	return raft.Server{}, false
}

// mayAddVoter checks the addition of one voter (etcd's mayAddMember).
func (s *Store) mayAddVoter(ctx context.Context) error {
	if s.opts.NoStrictReconfigCheck {
		return nil
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	voters := voterCount(conf)
	h := s.probeVoters(ctx, conf)
	// Adding a second voter to a one-member cluster is how a cluster
	// grows from one (or is rebuilt from a backup): allowed although the
	// new voter has not started.
	if !(len(h.started) == 1 && voters == 1) && len(h.started) < quorum(voters+1) {
		return fmt.Errorf("%w: %d of %d voters started; %d voters need %d", ErrNotEnoughStartedMembers, len(h.started), voters, voters+1, quorum(voters+1))
	}
	// The new voter does not count until it runs.
	if voters > 1 && len(h.connected) < quorum(voters+1) {
		return fmt.Errorf("%w: the leader reaches %d of %d voters; %d voters need %d", ErrUnhealthy, len(h.connected), voters, voters+1, quorum(voters+1))
	}
	return nil
}

// mayRemoveMember checks the removal of member id (etcd's
// mayRemoveMember). Removing a learner is always safe.
func (s *Store) mayRemoveMember(ctx context.Context, id string) error {
	if s.opts.NoStrictReconfigCheck {
		return nil
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	srv, ok := serverOf(conf, id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrMemberNotFound, id)
	}
	if srv.Suffrage != raft.Voter {
		return nil
	}
	voters := voterCount(conf)
	h := s.probeVoters(ctx, conf)
	started := len(h.started)
	if h.started[id] {
		started--
	}
	if started < quorum(voters-1) {
		return fmt.Errorf("%w: %d other voters started; %d voters need %d", ErrNotEnoughStartedMembers, started, voters-1, quorum(voters-1))
	}
	// A voter that is down is no part of the working quorum: removing it
	// takes nothing away.
	if id != s.id && !h.connected[id] {
		return nil
	}
	if len(h.connected)-1 < quorum(voters-1) {
		return fmt.Errorf("%w: the leader reaches %d of %d voters; without %s, %d voters need %d", ErrUnhealthy, len(h.connected), voters, id, voters-1, quorum(voters-1))
	}
	return nil
}

// mayPromote checks the promotion of learner id (etcd's
// mayPromoteMember): the learner counts as started.
func (s *Store) mayPromote(ctx context.Context, id string) error {
	if s.opts.NoStrictReconfigCheck {
		return nil
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	if srv, ok := serverOf(conf, id); !ok || srv.Suffrage == raft.Voter {
		return nil // promoteMemberLocal says what is wrong
	}
	voters := voterCount(conf)
	h := s.probeVoters(ctx, conf)
	if len(h.started)+1 < quorum(voters+1) {
		return fmt.Errorf("%w: %d of %d voters started; with %s, %d voters need %d", ErrNotEnoughStartedMembers, len(h.started), voters, id, voters+1, quorum(voters+1))
	}
	return nil
}

// PromoteMember makes a learner a voter. Runs on the leader (forwarded
// from a follower). Errors: ErrMemberNotFound; ErrNotEnoughStartedMembers
// from the strict reconfiguration check (Options.NoStrictReconfigCheck).
func (s *Store) PromoteMember(ctx context.Context, id string) error {
	if _, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCMemberPromote, MemberID: id}); err != nil {
		return fmt.Errorf("accord: promote member %s: %w", id, err)
	}
	return nil
}

func (s *Store) promoteMemberLocal(ctx context.Context, id string) error {
	srv, err := s.findMember(id)
	if err != nil {
		return err
	}
	if srv.Suffrage == raft.Voter {
		return fmt.Errorf("%w: %s is already a voter", ErrInvalidArgument, id)
	}
	return s.waitConfChange(ctx, s.raft.AddVoter(srv.ID, srv.Address, 0, timeoutOf(ctx)))
}

// UpdateMember records a new peer address for a member (etcd's member
// update). Runs on the leader (forwarded from a follower). A member that
// restarts on a new address does this by itself.
func (s *Store) UpdateMember(ctx context.Context, id, peerAddr string) error {
	if peerAddr == "" {
		return fmt.Errorf("accord: update member %s: %w: empty peer address", id, ErrInvalidArgument)
	}
	if _, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCMemberUpdate, MemberID: id, Addr: peerAddr}); err != nil {
		return fmt.Errorf("accord: update member %s: %w", id, err)
	}
	return nil
}

func (s *Store) updateMemberLocal(ctx context.Context, id, peerAddr string) error {
	srv, err := s.findMember(id)
	if err != nil {
		return err
	}
	if string(srv.Address) == peerAddr {
		return nil
	}
	var f raft.IndexFuture
	if srv.Suffrage == raft.Voter {
		f = s.raft.AddVoter(srv.ID, raft.ServerAddress(peerAddr), 0, timeoutOf(ctx))
	} else {
		f = s.raft.AddNonvoter(srv.ID, raft.ServerAddress(peerAddr), 0, timeoutOf(ctx))
	}
	return s.waitConfChange(ctx, f)
}

// announceAddress runs when this node restarted on a peer address that
// differs from the one in its configuration: the leader would keep dialing
// the old one, so this node tells the members it knows, until the leader
// records the new address.
func (s *Store) announceAddress(peers []string) {
	req := &wire.Request{Type: wire.RPCMemberUpdate, MemberID: s.id, Addr: s.addr, From: s.id}
	for attempt := 0; ; attempt++ {
		if _, err := s.findMember(s.id); err == nil && s.hasOwnAddress() {
			return
		}
		for _, p := range peers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*s.opts.ElectionTimeout)
			resp, err := s.peer.call(ctx, p, req)
			if err == nil && resp.ErrCode == wire.ErrCodeNotLeader && resp.LeaderAddr != "" {
				resp, err = s.peer.call(ctx, resp.LeaderAddr, req)
			}
			cancel()
			if err == nil && resp.ErrCode == wire.ErrCodeNone {
				s.log.Info("announced new peer address to the leader", "addr", s.addr)
				return
			}
		}
		select {
		case <-s.stop:
			return
		case <-time.After(min(50*time.Millisecond<<min(attempt, 5), 2*time.Second)):
		}
	}
}

func (s *Store) hasOwnAddress() bool {
	srv, err := s.findMember(s.id)
	return err == nil && string(srv.Address) == s.addr
}

// TransferLeadership hands leadership to the voter id (or, with an empty
// id, to the most up-to-date voter). Must run on the leader.
func (s *Store) TransferLeadership(ctx context.Context, id string) error {
	if err := s.leaderOnly(ctx); err != nil {
		return fmt.Errorf("accord: transfer leadership: %w", err)
	}
	var f raft.Future
	if id == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		srv, err := s.findMember(id)
		if err != nil {
			return fmt.Errorf("accord: transfer leadership to %s: %w", id, err)
		}
		f = s.raft.LeadershipTransferToServer(srv.ID, srv.Address)
	}
	if err := s.waitFuture(ctx, f); err != nil {
		return fmt.Errorf("accord: transfer leadership: %w", s.raftError(err))
	}
	return nil
}

func (s *Store) findMember(id string) (raft.Server, error) {
	conf, err := s.configuration()
	if err != nil {
		return raft.Server{}, err
	}
	for _, srv := range conf.Servers {
		if string(srv.ID) == id {
			return srv, nil
		}
	}
	return raft.Server{}, fmt.Errorf("%w: %s", ErrMemberNotFound, id)
}

// leaderOnly waits (within ctx, briefly) for this node to be the ready
// leader, and fails with a *NotLeaderError naming the leader otherwise.
func (s *Store) leaderOnly(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	if s.isReady() {
		return nil
	}
	if addr, id := s.leader(); id != "" && id != s.id {
		return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	}
	return s.waitLeaderReady(ctx)
}

func (s *Store) waitConfChange(ctx context.Context, f raft.Future) error {
	if err := s.waitFuture(ctx, f); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ErrUnknownOutcome, ctx.Err())
		}
		if errors.Is(err, raft.ErrLeadershipLost) {
			// The change may still commit. Not ErrNotLeader: the caller
			// would retry it, and a retried AddMember failed with
			// ErrMemberExists for the member it had just added.
			return ErrUnknownOutcome
		}
		return s.raftError(err)
	}
	return nil
}

// timeoutOf is the time left in ctx, for raft calls that take a timeout
// (0: none).
func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// Status reports this member's view. ClusterVersion is the lowest version
// among the members: with gossip, the alive ones in gossip (no waiting);
// without, those that answered a status request within ctx.
func (s *Store) Status(ctx context.Context) (*Status, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("accord: status: %w", ErrClosed)
	}
	ws := s.localStatus()
	st := statusFromWire(&ws)
	_, st.DBSizeInUse = s.ks.Sizes()
	st.QuotaBytes = s.opts.QuotaBytes
	st.Alarms = s.fsm.alarmList()
	if addr, id := s.leader(); id == st.Leader {
		st.LeaderAddr = addr // not on the wire: only this member's view has it
	}
	st.ClusterVersion = st.Version
	if s.gossip != nil {
		st.ClusterVersion = s.gossip.clusterVersion(st.Version)
		return st, nil
	}
	if s.peer == nil {
		return st, nil
	}
	conf, err := s.configuration()
	if err != nil {
		return st, nil
	}
	for _, srv := range conf.Servers {
		if string(srv.ID) == s.id {
			continue
		}
		resp, err := s.peer.call(ctx, string(srv.Address), &wire.Request{Type: wire.RPCStatus, From: s.id})
		if err != nil || resp.Status == nil {
			continue
		}
		if compareVersions(resp.Status.Version, st.ClusterVersion) < 0 {
			st.ClusterVersion = resp.Status.Version
		}
	}
	return st, nil
}

func (s *Store) localStatus() wire.Status {
	_, leader := s.leader()
	rev, compacted := s.ks.Revs()
	learner := false
	if conf, err := s.configuration(); err == nil {
		for _, srv := range conf.Servers {
			if string(srv.ID) == s.id {
				learner = srv.Suffrage != raft.Voter
			}
		}
	}
	return wire.Status{
		NodeID:          s.id,
		Name:            s.opts.NodeName,
		Leader:          leader,
		Term:            s.raft.CurrentTerm(),
		CommitIndex:     s.raft.CommitIndex(),
		AppliedIndex:    s.fsm.applied.load(),
		Revision:        rev,
		CompactRevision: compacted,
		DBSize:          dbSize(s.ks),
		Version:         s.opts.Version,
		IsLearner:       learner,
	}
}

func statusFromWire(w *wire.Status) *Status {
	return &Status{
		ID: w.NodeID, Name: w.Name, Leader: w.Leader, IsLearner: w.IsLearner, Term: w.Term,
		CommitIndex: w.CommitIndex, AppliedIndex: w.AppliedIndex, Revision: w.Revision,
		CompactRevision: w.CompactRevision, DBSize: w.DBSize, Version: w.Version,
	}
}

// clusterAtLeast reports whether every member of the raft configuration,
// this one included, is known to run version v or later: its own version,
// a live member's gossip tag, or else its answer to a status request
// within ctx. An unknown version counts as too old, so a gated feature
// stays off while any member is unreachable.
func (s *Store) clusterAtLeast(ctx context.Context, v string) (bool, string) {
	conf, err := s.configuration()
	if err != nil {
		return false, ""
	}
	var gm map[string]member
	if s.gossip != nil {
		gm = s.gossip.members()
	}
	lowest, self := "", false
	for _, srv := range conf.Servers {
		var ver string
		if m, ok := gm[string(srv.ID)]; ok && m.Status == serf.StatusAlive {
			ver = m.tags.version
		}
		switch {
		case string(srv.ID) == s.id:
			ver, self = s.opts.Version, true
		case ver == "" && s.peer != nil:
			resp, err := s.peer.call(ctx, string(srv.Address), &wire.Request{Type: wire.RPCStatus, From: s.id})
			if err == nil && resp.Status != nil {
				ver = resp.Status.Version
			}
		}
		if ver == "" {
			return false, lowest
		}
		if lowest == "" || compareVersions(ver, lowest) < 0 {
			lowest = ver
		}
	}
	return self && compareVersions(lowest, v) >= 0, lowest
}

// publishLoop publishes this member's attributes (NodeName, ClientURLs)
// through the log once the cluster version allows it, and then ends. It
// checks with a growing interval, so a rolling upgrade that brings the
// last member to 0.2.0 turns publishing on within a few election
// timeouts.
func (s *Store) publishLoop() {
	ctx, cancel := s.stopContext()
	defer cancel()
	want := &wire.MemberAttrs{ID: s.id, Name: s.opts.NodeName, ClientURLs: s.opts.ClientURLs}
	wait := s.opts.ElectionTimeout / 4
	loggedBelow := ""
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait = min(wait*2, 5*s.opts.ElectionTimeout)
		t.Reset(wait)
		if a, ok := s.fsm.memberAttrs(s.id); ok && a.name == want.Name && slices.Equal(a.clientURLs, want.ClientURLs) {
			return
		}
		if _, id := s.leader(); id == "" {
			continue
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*s.opts.ElectionTimeout)
		ok, lowest := s.clusterAtLeast(cctx, versionMemberAttrs)
		if !ok {
			ccancel()
			if lowest != "" && lowest != loggedBelow {
				loggedBelow = lowest
				s.log.Info("cluster version is below "+versionMemberAttrs+": member attributes stay unpublished until every member is upgraded",
					"node", s.id, "cluster_version", lowest)
			}
			continue
		}
		res, err := s.propose(cctx, &wire.Command{Type: wire.CmdMemberAttrs, Member: want})
		ccancel()
		if err == nil && res != nil {
			err = res.err
		}
		if err != nil {
			s.log.Debug("publishing member attributes failed; will retry", "node", s.id, "err", err)
		}
	}
}

// Removed returns a channel that is closed when this member learns that
// the cluster removed it (RemoveMember, etcd's member remove): the store
// then closes itself, as a removed etcd member stops, and every call
// returns ErrClosed. A removed member's data directory cannot rejoin; add
// the node again as a new member with an empty directory. Detection runs
// for members without gossip (with gossip, Leave is the way out, and the
// leader re-adds a live gossiping node). It takes a few election timeouts
// after the removal: the member notices it hears from no leader, or that
// its configuration lacks it, and asks the other members; only the
// leader's word counts.
func (s *Store) Removed() <-chan struct{} { return s.removed }

// removedLoop watches for this member's removal; see Removed.
func (s *Store) removedLoop() {
	ctx, cancel := s.stopContext()
	defer cancel()
	t := time.NewTicker(max(2*s.opts.ElectionTimeout, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conf, err := s.configuration()
		if err != nil {
			continue
		}
		// Without gossip a node is a member from its first start (added
		// before it starts, or bootstrapped); a joining node that has not
		// received the configuration yet has nobody to ask.
		in := slices.ContainsFunc(conf.Servers, func(srv raft.Server) bool { return string(srv.ID) == s.id })
		if _, leader := s.leader(); in && leader != "" {
			continue
		}
		cctx, ccancel := context.WithTimeout(ctx, s.opts.ElectionTimeout)
		gone := s.leaderSaysRemoved(cctx, conf)
		ccancel()
		if gone {
			s.removedOnce.Do(func() { close(s.removed) })
			s.log.Error("this member was removed from the cluster; it stops (its data directory cannot rejoin)", "node", s.id)
			go s.Close() // not tracked: Close waits for this loop
			return
		}
	}
}

// leaderSaysRemoved asks the members of conf, and the leader they name,
// whether this member is still in the configuration; only a leader's "no"
// counts.
func (s *Store) leaderSaysRemoved(ctx context.Context, conf raft.Configuration) bool {
	ask := func(addr string) (leaderAddr string, removed bool) {
		resp, err := s.peer.call(ctx, addr, &wire.Request{Type: wire.RPCMemberCheck, MemberID: s.id, From: s.id})
		if err != nil || errFromWire(resp) != nil {
			return "", false
		}
		if resp.LeaderAddr == addr && resp.MemberID == "" {
			return addr, true
		}
		return resp.LeaderAddr, false
	}
	for _, srv := range conf.Servers {
		if string(srv.ID) == s.id {
			continue
		}
		leaderAddr, removed := ask(string(srv.Address))
		if removed {
			return true
		}
		if leaderAddr != "" && leaderAddr != string(srv.Address) && leaderAddr != s.addr {
			_, removed := ask(leaderAddr)
			return removed
		}
	}
	return false
}

// compareVersions compares dotted numeric versions ("0.1.0"); a part that
// does not parse compares as 0.
func compareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			return cmpInt(int64(x), int64(y))
		}
	}
	return 0
}

func versionParts(v string) []int {
	var parts []int
	n := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '.' || v[i] == '-' || v[i] == '+' {
			parts = append(parts, n)
			n = 0
			if i < len(v) && v[i] != '.' {
				break
			}
			continue
		}
		if c := v[i]; c >= '0' && c <= '9' && n < 1<<20 {
			n = n*10 + int(c-'0')
		}
	}
	return parts
}

// Leave decommissions this member: if it is the leader it hands leadership
// to another voter, then has itself removed from the configuration, waits
// until it is, leaves gossip gracefully (with gossip on), and closes the
// store. Unlike Close, the node is no longer a member afterwards; without
// gossip its data directory cannot rejoin without AddMember, with gossip
// it is added back (as a new non-voter) if it is opened again.
func (s *Store) Leave(ctx context.Context) (err error) {
	if s.isClosed() {
		return ErrClosed
	}
	conf, err := s.configuration()
	if err != nil {
		return fmt.Errorf("accord: leave: %w", err)
	}
	others := slices.ContainsFunc(conf.Servers, func(srv raft.Server) bool { return string(srv.ID) != s.id })
	if !others {
		return fmt.Errorf("accord: leave: %w: the only member cannot leave its cluster; Close it instead", ErrInvalidArgument)
	}
	if s.gossip != nil {
		// From here on this node refuses status checks, so that the leader's
		// gossip reconciliation does not add it back once it is removed.
		s.gossip.leaving.Store(true)
		defer func() {
			if err != nil {
				s.gossip.leaving.Store(false)
			}
		}()
	}
	if s.isReady() {
		// Hand leadership over first so the cluster does not wait out an
		// election. If the transfer fails (no follower caught up in time),
		// removing itself still works: raft's leader commits its own
		// removal and then steps down.
		if err := s.TransferLeadership(ctx, ""); err != nil && !errors.Is(err, ErrNotLeader) {
			s.log.Warn("leave: leadership transfer failed; removing self as leader", "err", err)
		}
	}
	if err := s.RemoveMember(ctx, s.id); err != nil && !errors.Is(err, ErrMemberNotFound) {
		return fmt.Errorf("accord: leave: %w", err)
	}
	// RemoveMember returned once the leader committed the removal. Do not
	// wait to see it here: raft sends a removed server the entry that
	// removes it once, best effort, so it may never arrive (Leave then hung
	// until ctx ended).
	if s.gossip != nil {
		s.leaveGossip(ctx)
	}
	return s.Close()
}

// ---- gossip ----
//
// With Options.GossipAddr set, every node runs a serf agent (over
// memberlist) named by its node ID and tagged with what the others need:
// its raft address, role, version and cluster. Gossip only ever informs;
// the raft configuration stays the membership, and only the leader changes
// it:
//
//   - On becoming a ready leader (its no-op committed, which is the
//     barrier), then on every gossip event, then every reconcileInterval,
//     the leader reconciles gossip against the configuration: an alive
//     member that is not in it is checked (an RPCStatus over the peer
//     transport, which with PeerTLS needs a certificate from the cluster
//     CA) and added as a non-voter; a member whose raft tag moved gets its
//     new address; a member that left gracefully is removed at once; a
//     failed member is left alone until serf reaps it after ReapTimeout,
//     and is then removed only if the live voters (alive in gossip and
//     answering a status request) other than it form a quorum of the
//     current configuration (so at most a minority of failed voters is
//     ever removed, and two voters never become one). The leader never
//     removes itself, and
//     servers gossip has never shown this node (explicit AddMember) are
//     left alone.
//   - Promotion is our own, not raft-autopilot: a non-voter whose role tag
//     is voter becomes a voter once it has been alive for
//     serverStabilization, its applied index is within promoteMaxLag of
//     the leader's commit index, and there are fewer than MaxVoters voters.
//     That rule is a few dozen lines on state we hold anyway; autopilot
//     would bring its own goroutines and lifecycle, a delegate interface
//     and a dead-server cleanup that would have to be switched off in
//     favor of the reap and quorum rule above.
//   - BootstrapExpect > 1: see bootstrapLoop.
//   - raft dials servers by ID through gossip (ServerAddr), so a member
//     that restarted on a new peer address is reached before the
//     configuration catches up.
//
// serf delivers events on a channel that must be drained; eventLoop does
// only bookkeeping and non-blocking kicks of coalescing channels (cap 1)
// that reconcileLoop and bootstrapLoop wait on, so serf never blocks on us.

// Serf tag keys and role values. Tags travel in every alive message;
// together they must encode to at most memberlist.MetaMaxSize bytes.
const (
	tagID      = "id"
	tagName    = "name"
	tagRaft    = "raft"
	tagRole    = "role"
	tagVersion = "ver"
	tagCluster = "cluster"

	roleVoter    = "voter"
	roleNonvoter = "nonvoter"

	// gossipLabelPrefix + ClusterName is memberlist's label: nodes of other
	// clusters cannot even exchange packets with this one.
	gossipLabelPrefix = "accord/"

	// promoteMaxLag is how far (in log entries) a non-voter's applied
	// index may trail the leader's commit index to be promoted (Consul's
	// autopilot MaxTrailingLogs is 250).
	promoteMaxLag = 250
)

// errLeaving answers RPCStatus while this node leaves its cluster, so that
// the leader does not add it back between its removal and its gossip leave.
var errLeaving = fmt.Errorf("%w: node is leaving its cluster", ErrClosed)

// serverStabilization is how long a non-voter must have been alive in
// gossip, without failing, before it is promoted.
func serverStabilization(electionTimeout time.Duration) time.Duration {
	return max(3*electionTimeout, 500*time.Millisecond)
}

// reconcileInterval is how often the leader reconciles without an event.
func reconcileInterval(electionTimeout time.Duration) time.Duration {
	return min(30*time.Second, 60*electionTimeout)
}

// gossipRPCTimeout bounds one RPCStatus to a member during reconciliation
// or bootstrap.
func gossipRPCTimeout(electionTimeout time.Duration) time.Duration {
	return max(2*electionTimeout, time.Second)
}

// gossip is this node's serf agent and what its events taught it.
//
// Lock order: gossip.mu is a leaf; nothing is called while holding it.
type gossip struct {
	s       *Store // set by startGossip, before any of the loops run
	serf    *serf.Serf
	log     *slog.Logger
	cluster string
	addr    string // advertised gossip address (the port resolved)

	events        chan serf.Event
	reconcileKick chan struct{} // cap 1: the leader should reconcile
	bootstrapKick chan struct{} // cap 1: membership changed; retry bootstrap

	leaving    atomic.Bool               // Leave is removing this node
	bootstraps atomic.Int32              // how often this node bootstrapped raft (tests)
	raft       atomic.Pointer[raft.Raft] // for ServerAddr's fallback; nil during Open

	mu    sync.RWMutex         // guards the maps below
	addrs map[string]string    // alive member ID -> its raft tag
	since map[string]time.Time // alive member ID -> when it last became alive here
	names map[string]string    // member ID -> its name tag, while gossip knows it
	seen  map[string]bool      // IDs gossip has ever shown this node; kept after reap
	bad   map[string]string    // member name -> the tag error logged for it; until reap

	// Owned by the reconcile goroutine.
	joinRetry map[string]retryState // member ID -> failed checks (join, address move)
	quorumLog map[string]bool       // reaped members already logged as kept for quorum
}

type retryState struct {
	failures int
	next     time.Time
}

// gossipTags are the tags this node advertises.
func gossipTags(o *Options, id, raftAddr string) map[string]string {
	role := roleVoter
	if o.NonVoter {
		role = roleNonvoter
	}
	return memberTags{id: id, name: o.NodeName, raft: raftAddr, role: role, version: o.Version, cluster: o.ClusterName}.encode()
}

// memberTags are a member's gossip tags, checked by parseMemberTags.
type memberTags struct {
	id      string // the member's ID: equal to its serf name
	name    string // Options.NodeName: printable UTF-8, may be empty
	raft    string // advertised peer (raft) address: host:port, port 1-65535
	role    string // roleVoter, roleNonvoter or "" (a non-voter)
	version string // dotted numeric version, as compareVersions reads it
	cluster string // Options.ClusterName
}

// encode returns the tags as serf carries them. An empty tag is left out
// (a missing tag reads as empty), so tags that parsed never encode longer
// than they came, and stay within serf's limit.
func (t memberTags) encode() map[string]string {
	tags := map[string]string{
		tagID:      t.id,
		tagRaft:    t.raft,
		tagVersion: t.version,
		tagCluster: t.cluster,
	}
	if t.name != "" {
		tags[tagName] = t.name
	}
	if t.role != "" {
		tags[tagRole] = t.role
	}
	return tags
}

func (t memberTags) voter() bool { return t.role == roleVoter }

// parseMemberTags checks the tags of the serf member called name. Tags come
// from other nodes, unauthenticated without GossipKey, and every value
// ends up in a raft configuration, a dial, a version comparison or a log
// line, so a member whose tags fail here is not taken for a member of this
// cluster. Unknown tags are ignored (a newer version may add some), but
// count toward the size limit.
func parseMemberTags(name string, tags map[string]string) (memberTags, error) {
	size := 0
	for k, v := range tags {
		size += len(k) + len(v)
	}
	// The encoding is at least as long as the keys and values; encoding
	// only when that fits bounds the work a huge map costs.
	if size > memberlist.MetaMaxSize || encodedTagsLen(tags) > memberlist.MetaMaxSize {
		return memberTags{}, fmt.Errorf("tags exceed serf's limit of %d bytes", memberlist.MetaMaxSize)
	}
	t := memberTags{
		id:      tags[tagID],
		name:    tags[tagName],
		raft:    tags[tagRaft],
		role:    tags[tagRole],
		version: tags[tagVersion],
		cluster: tags[tagCluster],
	}
	switch {
	case name == "" || t.id != name:
		return memberTags{}, fmt.Errorf("id tag %q is not the member's name %q", t.id, name)
	case !validName(t.cluster):
		return memberTags{}, fmt.Errorf("cluster tag %q: not a cluster name", t.cluster)
	case len(t.name) > 128 || !utf8.ValidString(t.name) || strings.ContainsFunc(t.name, unicode.IsControl):
		return memberTags{}, fmt.Errorf("name tag %q: not at most 128 bytes of printable UTF-8", t.name)
	case t.role != roleVoter && t.role != roleNonvoter && t.role != "":
		return memberTags{}, fmt.Errorf("role tag %q: neither %q nor %q", t.role, roleVoter, roleNonvoter)
	case !validVersion(t.version):
		return memberTags{}, fmt.Errorf("version tag %q: not a dotted numeric version", t.version)
	}
	if err := checkPeerAddr(t.raft); err != nil {
		return memberTags{}, fmt.Errorf("raft tag %q: %w", t.raft, err)
	}
	return t, nil
}

// checkPeerAddr checks an advertised peer address: host:port in the form
// net.JoinHostPort writes it, the host a specific IP address (as
// listenPeers requires) or a host name, the port decimal 1-65535.
func checkPeerAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return errors.New("port is not a number from 1 to 65535")
	}
	if net.JoinHostPort(host, port) != addr {
		return errors.New("not in host:port form")
	}
	notName := func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() || strings.ContainsFunc(ip.Zone(), notName) {
			return errors.New("host is not a specific IP address")
		}
		return nil
	}
	if len(host) == 0 || len(host) > 253 || strings.ContainsFunc(host, notName) {
		return errors.New("host is neither an IP address nor a host name")
	}
	return nil
}

// validVersion reports whether v is a version compareVersions reads
// exactly: numbers of 1-6 digits (versionParts stops accumulating at
// 1<<20) separated by dots, optionally followed by '-' or '+' and a suffix
// of [0-9A-Za-z.+-] that comparisons ignore ("0.3.0-rc.1").
func validVersion(v string) bool {
	digits := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			if digits++; digits > 6 {
				return false
			}
		case c == '.' && digits > 0:
			digits = 0
		case (c == '-' || c == '+') && digits > 0:
			suffix := v[i+1:]
			return suffix != "" && !strings.ContainsFunc(suffix, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+')
			})
		default:
			return false
		}
	}
	return digits > 0
}

// encodedTagsLen is the size serf gives tags on the wire (a magic byte and
// msgpack, as serf's encodeTags does), checked against its limit.
func encodedTagsLen(tags map[string]string) int {
	var b []byte
	if err := codec.NewEncoderBytes(&b, &codec.MsgpackHandle{}).Encode(tags); err != nil {
		return math.MaxInt
	}
	return 1 + len(b)
}

// newGossip starts this node's serf agent (binding the gossip port) for
// node id whose raft address is raftAddr. o is the filled Options; Open
// calls it before the Store exists, and startGossip starts the loops.
func newGossip(o *Options, id, raftAddr string) (*gossip, error) {
	tags := gossipTags(o, id, raftAddr)
	if n := encodedTagsLen(tags); n > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("accord: open: gossip tags take %d bytes, more than serf's limit of %d: shorten NodeName (%d bytes), Version, ClusterName or the advertised peer address", n, memberlist.MetaMaxSize, len(o.NodeName))
	}
	// The others would ignore this node (and so would its own bootstrap).
	if _, err := parseMemberTags(id, tags); err != nil {
		return nil, fmt.Errorf("accord: open: other members would reject this node's gossip tags: %w", err)
	}
	log := o.Logger.With("node", id)
	g := &gossip{
		log:           log,
		cluster:       o.ClusterName,
		events:        make(chan serf.Event, 256),
		reconcileKick: make(chan struct{}, 1),
		bootstrapKick: make(chan struct{}, 1),
		addrs:         make(map[string]string),
		since:         make(map[string]time.Time),
		names:         make(map[string]string),
		seen:          make(map[string]bool),
		bad:           make(map[string]string),
		joinRetry:     make(map[string]retryState),
		quorumLog:     make(map[string]bool),
	}

	et := o.ElectionTimeout
	probe := min(max(2*et, 200*time.Millisecond), time.Second)
	ml := memberlist.DefaultLANConfig()
	ml.Name = id
	host, port, _ := net.SplitHostPort(o.GossipAddr) // validated
	if host == "" {
		host = "0.0.0.0"
	}
	ml.BindAddr = host
	ml.BindPort, _ = strconv.Atoi(port)
	ml.AdvertiseAddr, ml.AdvertisePort = "", ml.BindPort
	if o.AdvertiseGossipAddr != "" {
		h, p, _ := net.SplitHostPort(o.AdvertiseGossipAddr) // validated
		ml.AdvertiseAddr = h
		ml.AdvertisePort, _ = strconv.Atoi(p)
	}
	ml.Label = gossipLabelPrefix + o.ClusterName
	if o.GossipKey != nil {
		ml.SecretKey = o.GossipKey
	}
	// Failure detection scales with ElectionTimeout up to memberlist's LAN
	// defaults (reached at the default 1s).
	ml.ProbeInterval = probe
	ml.ProbeTimeout = probe / 2
	ml.GossipInterval = min(200*time.Millisecond, probe/4)
	ml.PushPullInterval = min(30*probe, 30*time.Second)
	ml.GossipToTheDeadTime = ml.PushPullInterval
	// Bounds a join attempt to an unreachable address, and so how long
	// Close may wait for one.
	ml.TCPTimeout = min(max(5*et, time.Second), 10*time.Second)
	// A node that restarts on another gossip address reclaims its name
	// once its old address is declared dead.
	ml.DeadNodeReclaimTime = probe
	ml.Logger = gossipLogger(log, "memberlist")

	sc := &serf.Config{
		NodeName:            id,
		Tags:                tags,
		EventCh:             g.events,
		ProtocolVersion:     4,
		BroadcastTimeout:    min(max(10*probe, time.Second), 5*time.Second),
		LeavePropagateDelay: min(5*ml.GossipInterval, time.Second),
		EventBuffer:         512,
		QueryBuffer:         512,
		// Failed members are reaped (EventMemberReap) after ReapTimeout;
		// left ones are forgotten after as long.
		ReapInterval:           min(max(o.ReapTimeout/8, 100*time.Millisecond), 15*time.Second),
		ReconnectInterval:      min(max(30*et, time.Second), 30*time.Second),
		ReconnectTimeout:       o.ReapTimeout,
		TombstoneTimeout:       o.ReapTimeout,
		RecentIntentTimeout:    5 * time.Minute,
		FlapTimeout:            60 * time.Second,
		QueueCheckInterval:     30 * time.Second,
		QueueDepthWarning:      128,
		MaxQueueDepth:          4096,
		QueryTimeoutMult:       16,
		QueryResponseSizeLimit: 1024,
		QuerySizeLimit:         1024,
		UserEventSizeLimit:     512,
		MemberlistConfig:       ml,
		Logger:                 gossipLogger(log, "serf"),
		// Node names are permanent node IDs: a "conflict" is a node that
		// restarted on another address, settled by DeadNodeReclaimTime.
		// Serf's resolution would instead shut the newcomer's agent down.
		EnableNameConflictResolution: false,
		DisableCoordinates:           true,
	}
	sf, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("accord: open: gossip on %s: %w", o.GossipAddr, err)
	}
	g.serf = sf
	local := sf.Memberlist().LocalNode()
	g.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	return g, nil
}

// gossipLogger is a *log.Logger for serf or memberlist that writes to log.
// It drops serf's warning about a shutdown without a leave: Close is a
// restart, and the others are meant to see a failure.
func gossipLogger(log *slog.Logger, component string) *stdlog.Logger {
	w := logbridge.HCLog(log, component).StandardWriter(nil)
	return stdlog.New(dropLines{w: w, drop: "Shutdown without a Leave"}, "", 0)
}

type dropLines struct {
	w    io.Writer
	drop string
}

func (d dropLines) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(d.drop)) {
		return len(p), nil
	}
	return d.w.Write(p)
}

// addrProvider is what raft's transport dials servers through: nil (no
// provider) without gossip.
func (g *gossip) addrProvider() raft.ServerAddressProvider {
	if g == nil {
		return nil
	}
	return g
}

// ServerAddr implements raft.ServerAddressProvider: the raft tag of the
// live member id, else its address in the latest configuration. Called by
// raft's transport for every connection and concurrently with everything.
func (g *gossip) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	g.mu.RLock()
	a := g.addrs[string(id)]
	g.mu.RUnlock()
	if a != "" {
		return raft.ServerAddress(a), nil
	}
	if r := g.raft.Load(); r != nil {
		for _, srv := range r.GetConfiguration().Configuration().Servers {
			if srv.ID == id {
				return srv.Address, nil
			}
		}
	}
	return "", fmt.Errorf("accord: no address known for server %s", id)
}

// shutdown stops the agent without leaving (Open's error path).
func (g *gossip) shutdown() {
	if err := g.serf.Shutdown(); err != nil {
		g.log.Warn("gossip shutdown failed", "err", err)
	}
}

// startGossip starts the gossip loops of a store that Open has set up.
func (s *Store) startGossip() {
	g := s.gossip
	g.s = s
	g.raft.Store(s.raft)
	s.wg.Go(g.eventLoop)
	s.wg.Go(g.reconcileLoop)
	if len(s.opts.Join) > 0 {
		s.wg.Go(g.joinLoop)
	}
	if s.opts.BootstrapExpect > 1 && !s.hasRaftState() {
		s.wg.Go(g.bootstrapLoop)
	}
}

// GossipAddr returns the address other nodes gossip with this node at
// (with the port resolved when Options.GossipAddr asked for port 0), or ""
// with gossip off. Safe for concurrent use.
func (s *Store) GossipAddr() string {
	if s.gossip == nil {
		return ""
	}
	return s.gossip.addr
}

// stopContext returns a context that ends when the store stops (or
// cancel is called).
func (s *Store) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	if !s.goTracked(func() {
		select {
		case <-s.stop:
		case <-ctx.Done():
		}
		cancel()
	}) {
		cancel()
	}
	return ctx, cancel
}

func (s *Store) hasRaftState() bool {
	return s.raft.LastIndex() > 0 || s.raft.CurrentTerm() > 0
}

// isLeaving reports whether Leave is taking this node out of its cluster.
func (s *Store) isLeaving() bool { return s.gossip != nil && s.gossip.leaving.Load() }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// eventLoop drains serf's events until the store stops, then shuts serf
// down (without a leave: Close is a restart; Leave has left already) and
// drains what serf still had queued, so that none of serf's goroutines
// stays blocked on the channel.
func (g *gossip) eventLoop() {
	for {
		select {
		case e := <-g.events:
			g.handleEvent(e)
		case <-g.s.stop:
			g.shutdown()
			for {
				select {
				case <-g.events:
				default:
					return
				}
			}
		}
	}
}

// handleEvent records a member event; it never blocks.
func (g *gossip) handleEvent(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		return // user events and queries: not used
	}
	now := time.Now()
	ours := make([]member, 0, len(me.Members))
	for _, m := range me.Members {
		if t, ok := g.ours(m); ok { // outside g.mu: ours takes it
			ours = append(ours, member{m, t})
		}
	}
	g.mu.Lock()
	for _, m := range ours {
		id := m.Name
		switch me.Type {
		case serf.EventMemberJoin, serf.EventMemberUpdate:
			if m.Status != serf.StatusAlive {
				continue
			}
			if _, alive := g.since[id]; !alive || me.Type == serf.EventMemberJoin {
				g.since[id] = now
			}
			g.addrs[id] = m.tags.raft
			g.names[id] = m.tags.name
			g.seen[id] = true
		case serf.EventMemberFailed, serf.EventMemberLeave:
			delete(g.addrs, id)
			delete(g.since, id)
		case serf.EventMemberReap:
			delete(g.addrs, id)
			delete(g.since, id)
			delete(g.names, id)
		}
	}
	if me.Type == serf.EventMemberReap {
		for _, m := range me.Members {
			delete(g.bad, m.Name)
		}
	}
	g.mu.Unlock()
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, m := range me.Members {
			g.log.Debug("gossip event", "event", me.Type.String(), "peer", m.Name, "status", m.Status.String())
		}
	}
	kick(g.reconcileKick)
	kick(g.bootstrapKick)
}

// member is a serf member of this cluster with its parsed tags; code reads
// tags only from there, never from Member.Tags.
type member struct {
	serf.Member
	tags memberTags
}

// ours reports whether a serf member belongs to this cluster and has
// well-formed tags (parseMemberTags), and returns them. memberlist's label
// keeps other clusters out already; this also covers a misconfigured
// label. A member of this cluster with bad tags is logged once per error
// until gossip reaps it. It takes g.mu.
func (g *gossip) ours(m serf.Member) (memberTags, bool) {
	if m.Tags[tagCluster] != g.cluster {
		return memberTags{}, false
	}
	t, err := parseMemberTags(m.Name, m.Tags)
	if err == nil {
		return t, true
	}
	msg := err.Error()
	g.mu.Lock()
	logged := g.bad[m.Name] == msg
	g.bad[m.Name] = msg
	g.mu.Unlock()
	if !logged {
		g.log.Warn("gossip: ignoring a member with malformed tags", "peer", m.Name, "gossip_addr", net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), "err", err)
	}
	return memberTags{}, false
}

// members returns the serf members of this cluster by ID (alive, failed
// and left; reaped ones are gone).
func (g *gossip) members() map[string]member {
	out := make(map[string]member)
	for _, m := range g.serf.Members() {
		if t, ok := g.ours(m); ok {
			out[m.Name] = member{m, t}
		}
	}
	return out
}

func (g *gossip) aliveSince(id string) (time.Time, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	t, ok := g.since[id]
	return t, ok
}

func (g *gossip) wasSeen(id string) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.seen[id]
}

func (g *gossip) name(id string) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.names[id]
}

// clusterVersion is the lowest version among the alive members.
func (g *gossip) clusterVersion(own string) string {
	v := own
	for _, m := range g.members() {
		if m.Status == serf.StatusAlive && compareVersions(m.tags.version, v) < 0 {
			v = m.tags.version
		}
	}
	return v
}

// joinLoop joins the gossip of Options.Join, retrying with backoff until
// one address answers or the store stops.
func (g *gossip) joinLoop() {
	s := g.s
	for attempt := 0; ; attempt++ {
		n, err := g.serf.Join(s.opts.Join, true)
		if n > 0 {
			g.log.Info("joined gossip", "contacted", n, "of", len(s.opts.Join))
			return
		}
		d := min(50*time.Millisecond<<min(attempt, 10), 30*time.Second)
		g.log.Warn("gossip join failed; retrying", "addrs", strings.Join(s.opts.Join, ","), "retry_in", d, "err", err)
		d = d/2 + rand.N(d/2+1)
		select {
		case <-s.stop:
			return
		case <-time.After(d):
		}
	}
}

// status asks the member at raftAddr for its status over the peer
// transport, and checks that it is the node id.
func (g *gossip) status(ctx context.Context, id, raftAddr string) (*wire.Status, error) {
	s := g.s
	ctx, cancel := context.WithTimeout(ctx, gossipRPCTimeout(s.opts.ElectionTimeout))
	defer cancel()
	resp, err := s.peer.call(ctx, raftAddr, &wire.Request{Type: wire.RPCStatus, From: s.id})
	if err != nil {
		return nil, err
	}
	if err := errFromWire(resp); err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("empty status")
	}
	if resp.Status.NodeID != id {
		return nil, fmt.Errorf("%s answers as node %q, not %q", raftAddr, resp.Status.NodeID, id)
	}
	return resp.Status, nil
}

// bootstrapLoop runs on a node that started with BootstrapExpect N > 1 and
// no raft state. It waits until gossip shows N alive voter candidates of
// this cluster, asks every alive member whether it has raft state (if one
// does, a cluster exists and this node waits to be added), and otherwise
// bootstraps raft with the N smallest candidate IDs, which every candidate
// computes alike. A node outside those N waits to be added. It ends once
// this node has raft state or has decided, or when the store stops.
func (g *gossip) bootstrapLoop() {
	s := g.s
	expect := s.opts.BootstrapExpect
	retry := max(s.opts.ElectionTimeout, 100*time.Millisecond)
	t := time.NewTicker(retry)
	defer t.Stop()
	ctx, cancel := s.stopContext()
	defer cancel()
	for {
		if s.hasRaftState() || g.tryBootstrap(ctx, expect) {
			return
		}
		select {
		case <-s.stop:
			return
		case <-g.bootstrapKick:
		case <-t.C:
		}
	}
}

// tryBootstrap makes one bootstrap attempt and reports whether this node
// is done with bootstrapping (bootstrapped, or decided not to).
func (g *gossip) tryBootstrap(ctx context.Context, expect int) bool {
	s := g.s
	var voters []member
	var alive []member
	for _, m := range g.members() {
		if m.Status != serf.StatusAlive {
			continue
		}
		alive = append(alive, m)
		if m.tags.voter() {
			voters = append(voters, m)
		}
	}
	if len(voters) < expect {
		return false
	}
	for _, m := range alive {
		if m.Name == s.id {
			continue
		}
		st, err := g.status(ctx, m.Name, m.tags.raft)
		if err != nil {
			g.log.Debug("bootstrap: cannot ask a candidate for its state yet", "peer", m.Name, "err", err)
			return false
		}
		if st.Term > 0 || st.CommitIndex > 0 {
			g.log.Info("bootstrap: found a node with raft state; waiting to be added to its cluster", "peer", m.Name, "term", st.Term)
			return true
		}
	}
	slices.SortFunc(voters, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	voters = voters[:expect]
	conf := raft.Configuration{}
	self := false
	for _, m := range voters {
		self = self || m.Name == s.id
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.tags.raft)})
	}
	if !self {
		g.log.Info("bootstrap: not among the first candidates; waiting to be added", "expect", expect)
		return true
	}
	if s.hasRaftState() {
		return true
	}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return true
		}
		g.log.Warn("bootstrap failed; retrying", "err", err)
		return false
	}
	g.bootstraps.Add(1)
	ids := make([]string, len(conf.Servers))
	for i, srv := range conf.Servers {
		ids[i] = string(srv.ID)
	}
	g.log.Info("bootstrapped the cluster", "voters", strings.Join(ids, ","))
	return true
}

// reconcileLoop reconciles gossip against the raft configuration while
// this node is the ready leader.
func (g *gossip) reconcileLoop() {
	s := g.s
	for {
		s.readyMu.Lock()
		ch := s.readyCh
		s.readyMu.Unlock()
		if s.isReady() {
			g.lead(ch)
		} else {
			select {
			case <-s.stop:
				return
			case <-ch:
			}
		}
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

// lead reconciles on every event, periodically and when a promotion may be
// due, until readiness changes (ch closes) or the store stops.
func (g *gossip) lead(ch <-chan struct{}) {
	s := g.s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	if !s.goTracked(func() {
		select {
		case <-ch:
		case <-s.stop:
		case <-done:
		}
		cancel()
	}) {
		return
	}
	tick := time.NewTicker(reconcileInterval(s.opts.ElectionTimeout))
	defer tick.Stop()
	clear(g.quorumLog)
	recheck := time.NewTimer(time.Hour)
	defer recheck.Stop()
	for {
		recheck.Stop()
		if next := g.reconcile(ctx); next > 0 {
			recheck.Reset(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-g.reconcileKick:
		case <-tick.C:
		case <-recheck.C:
		}
	}
}

// reconcile brings the raft configuration in line with gossip once, and
// returns when it wants to run again (0: on the next event or tick).
func (g *gossip) reconcile(ctx context.Context) time.Duration {
	s := g.s
	if g.serf.State() != serf.SerfAlive {
		return 0 // leaving or shut down: the member list is frozen, not news
	}
	conf, err := s.configuration()
	if err != nil || !s.isReady() {
		return 0
	}
	members := g.members()
	inConf := make(map[string]raft.Server, len(conf.Servers))
	for _, srv := range conf.Servers {
		inConf[string(srv.ID)] = srv
	}
	var next time.Duration
	soonest := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	for id := range g.joinRetry {
		if m, ok := members[id]; !ok || m.Status != serf.StatusAlive {
			delete(g.joinRetry, id)
		}
	}
	ids := slices.Sorted(maps.Keys(members))
	for _, id := range ids {
		if ctx.Err() != nil {
			return 0
		}
		m := members[id]
		if id == s.id {
			continue
		}
		srv, ok := inConf[id]
		raftAddr := m.tags.raft
		switch {
		case m.Status == serf.StatusAlive && !ok:
			soonest(g.addFromGossip(ctx, conf, m, members))
		case m.Status == serf.StatusAlive && string(srv.Address) != raftAddr:
			if wait, ok := g.retryWait(id); !ok {
				soonest(wait)
			} else if _, err := g.status(ctx, id, raftAddr); err != nil {
				soonest(g.retryLater(id, "gossip: member moved, but its new peer address does not answer as it", raftAddr, err))
			} else {
				delete(g.joinRetry, id)
				g.result(s.updateMemberLocal(ctx, id, raftAddr), "gossip: member moved; updated its peer address", id, "from", string(srv.Address), "to", raftAddr)
			}
		case m.Status == serf.StatusLeft && ok:
			g.result(s.removeMemberLocal(ctx, id), "gossip: member left; removed it", id)
		}
	}
	// Servers that gossip knew and has reaped (failed for ReapTimeout).
	for _, srv := range conf.Servers {
		id := string(srv.ID)
		if _, known := members[id]; known || id == s.id || !g.wasSeen(id) || ctx.Err() != nil {
			continue
		}
		if conf, err = s.configuration(); err != nil {
			return 0
		}
		if !g.quorumWithout(ctx, conf, id, members, true) {
			if !g.quorumLog[id] {
				g.quorumLog[id] = true
				g.log.Warn("gossip: reaped member kept: without it the live voters would not form a quorum", "peer", id)
			}
			continue
		}
		g.result(s.removeMemberLocal(ctx, id), "gossip: failed member reaped; removed it", id)
	}
	soonest(g.promote(ctx, members))
	return next
}

// result logs the outcome of a configuration change for member id.
func (g *gossip) result(err error, msg, id string, args ...any) {
	if err != nil {
		g.log.Warn(msg+": failed", append([]any{"peer", id, "err", err}, args...)...)
		return
	}
	g.log.Info(msg, append([]any{"peer", id}, args...)...)
}

// retryWait reports whether a check of member id may run now, and if not,
// how long until it may.
func (g *gossip) retryWait(id string) (time.Duration, bool) {
	if r, ok := g.joinRetry[id]; ok && time.Now().Before(r.next) {
		return time.Until(r.next), false
	}
	return 0, true
}

// retryLater records a failed check of member id, logs it, and returns
// the backoff before the next one: from an ElectionTimeout, doubling, up
// to reconcileInterval.
func (g *gossip) retryLater(id, msg, raftAddr string, err error) time.Duration {
	et := g.s.opts.ElectionTimeout
	r := g.joinRetry[id]
	r.failures++
	d := min(et<<min(r.failures, 16), reconcileInterval(et))
	r.next = time.Now().Add(d)
	g.joinRetry[id] = r
	g.log.Warn(msg, "peer", id, "addr", raftAddr, "retry_in", d, "err", err)
	return d
}

// quorumWithout reports whether the live voters of conf other than server
// id form a quorum: of conf without id, or with ofCurrent, of conf as it
// is. Live means this node, or alive in gossip and answering a status
// request now: gossip notices a crash only after its failure detection, and
// a removal must not count a voter that is already gone.
//
// Reaping asks for a quorum of the current configuration (raft-autopilot's
// rule: fewer failed voters than a majority), so two voters never shrink to
// one on gossip's word alone, and three whose two others look failed stay
// three even when gossip reaps them one at a time.
func (g *gossip) quorumWithout(ctx context.Context, conf raft.Configuration, id string, members map[string]member, ofCurrent bool) bool {
	var others []string
	voters, live := 0, 0
	for _, srv := range conf.Servers {
		sid := string(srv.ID)
		if srv.Suffrage != raft.Voter {
			continue
		}
		if sid == id {
			if ofCurrent {
				voters++
			}
			continue
		}
		voters++
		if sid == g.s.id {
			live++
		} else if m, ok := members[sid]; ok && m.Status == serf.StatusAlive {
			others = append(others, sid)
		}
	}
	for _, sid := range others {
		if live >= voters/2+1 {
			break
		}
		if _, err := g.status(ctx, sid, members[sid].tags.raft); err == nil {
			live++
		}
	}
	return live >= voters/2+1
}

// addFromGossip adds an alive member that is not in the configuration, as
// a non-voter, after checking that it is reachable on the peer transport
// (with PeerTLS: that it has a certificate from the cluster CA), that it
// is the node it claims to be, and that it does not follow another
// leader. A server of the configuration that had its peer address (a node
// whose data directory was replaced) is removed first if gossip knew it,
// it is not alive in gossip, and quorum allows. It returns when to retry after a failed
// check.
func (g *gossip) addFromGossip(ctx context.Context, conf raft.Configuration, m member, members map[string]member) time.Duration {
	s := g.s
	id, raftAddr := m.Name, m.tags.raft
	if wait, ok := g.retryWait(id); !ok {
		return wait
	}
	fail := func(msg string, err error) time.Duration { return g.retryLater(id, msg, raftAddr, err) }
	st, err := g.status(ctx, id, raftAddr)
	if err != nil {
		return fail("gossip: not adding member: status check over the peer transport failed", err)
	}
	if st.Leader != "" && st.Leader != s.id {
		return fail("gossip: not adding member: it follows another leader", fmt.Errorf("its leader is %s", st.Leader))
	}
	for _, srv := range conf.Servers {
		if string(srv.Address) != raftAddr {
			continue
		}
		// id answered at that address, so srv is not there any more.
		old := string(srv.ID)
		if o, ok := members[old]; ok && o.Status == serf.StatusAlive || old == s.id {
			return fail("gossip: not adding member: a live member has its peer address", fmt.Errorf("member %s has %s", old, raftAddr))
		}
		if !g.wasSeen(old) {
			return fail("gossip: not adding member: a member added explicitly has its peer address; remove it with RemoveMember", fmt.Errorf("member %s has %s", old, raftAddr))
		}
		if !g.quorumWithout(ctx, conf, old, members, false) {
			return fail("gossip: not adding member: replacing the member at its address would lose quorum", fmt.Errorf("member %s has %s", old, raftAddr))
		}
		if err := s.removeMemberLocal(ctx, old); err != nil {
			return fail("gossip: not adding member: removing the old member at its address failed", err)
		}
		g.log.Info("gossip: removed a member whose peer address a new node took", "peer", old, "addr", raftAddr, "new", id)
	}
	f := s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, s.confChangeTimeout())
	if err := s.waitConfChange(ctx, f); err != nil {
		return fail("gossip: adding member failed", err)
	}
	delete(g.joinRetry, id)
	g.log.Info("gossip: added member as a non-voter", "peer", id, "addr", raftAddr)
	return 0
}

func (s *Store) confChangeTimeout() time.Duration {
	return max(10*s.opts.ElectionTimeout, 5*time.Second)
}

// promote promotes stable, caught-up non-voters with the voter role while
// there are fewer than MaxVoters voters. It returns when a candidate that
// is not ready yet should be looked at again.
func (g *gossip) promote(ctx context.Context, members map[string]member) time.Duration {
	s := g.s
	conf, err := s.configuration()
	if err != nil {
		return 0
	}
	voters := 0
	var candidates []raft.Server
	for _, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter {
			voters++
			continue
		}
		if m, ok := members[string(srv.ID)]; ok && m.Status == serf.StatusAlive && m.tags.voter() {
			candidates = append(candidates, srv)
		}
	}
	slices.SortFunc(candidates, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	stable := serverStabilization(s.opts.ElectionTimeout)
	var next time.Duration
	for _, srv := range candidates {
		if voters >= s.opts.MaxVoters || ctx.Err() != nil {
			break
		}
		id := string(srv.ID)
		since, ok := g.aliveSince(id)
		if !ok {
			continue
		}
		if wait := stable - time.Since(since); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		st, err := g.status(ctx, id, members[id].tags.raft)
		if err != nil {
			g.log.Debug("gossip: cannot check a promotion candidate", "peer", id, "err", err)
			next = s.opts.ElectionTimeout
			continue
		}
		if commit := s.raft.CommitIndex(); st.AppliedIndex+promoteMaxLag < commit {
			g.log.Debug("gossip: promotion candidate still catching up", "peer", id, "index", st.AppliedIndex, "commit", commit)
			next = s.opts.ElectionTimeout
			continue
		}
		f := s.raft.AddVoter(srv.ID, srv.Address, 0, s.confChangeTimeout())
		if err := s.waitConfChange(ctx, f); err != nil {
			g.log.Warn("gossip: promotion failed", "peer", id, "err", err)
			next = s.opts.ElectionTimeout
			continue
		}
		voters++
		g.log.Info("gossip: promoted member to voter", "peer", id, "voters", voters)
	}
	return next
}

// leaveGossip leaves gossip gracefully (after the raft removal), within
// ctx; Close then shuts the agent down.
func (s *Store) leaveGossip(ctx context.Context) {
	g := s.gossip
	done := make(chan error, 1)
	if !s.goTracked(func() { done <- g.serf.Leave() }) {
		return
	}
	select {
	case err := <-done:
		if err != nil {
			s.log.Warn("gossip leave failed", "err", err)
		}
	case <-ctx.Done():
		s.log.Warn("gossip leave cut short", "err", ctx.Err())
	}
}
