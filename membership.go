package accord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accordkv/accord/internal/wire"
)

// Membership. The raft configuration is the membership: a member is a
// raft server, its ID the node's permanent ID, a learner a raft non-voter.
// Only the leader changes it. This file has the explicit operations etcd
// operators know (add a member by peer address before it starts, remove,
// promote a learner, transfer leadership, leave); gossip-driven membership
// builds on the same operations.

// ReleaseVersion is the accord version this build advertises to its cluster.
const ReleaseVersion = "0.1.0"

// Member is one member of the cluster.
type Member struct {
	ID        string // permanent node ID (the raft server ID)
	PeerAddr  string // where members reach it
	IsLearner bool   // a non-voting member that receives the log
	IsLeader  bool
}

// Status describes this member and what it knows of the cluster.
type Status struct {
	ID              string // this member's ID
	Leader          string // the leader's ID, "" when unknown
	LeaderAddr      string
	IsLearner       bool
	Term            uint64 // raft term
	CommitIndex     uint64 // raft commit index
	AppliedIndex    uint64 // last log index applied to this member's state
	Revision        int64  // current revision of this member's state
	CompactRevision int64
	DBSize          int64  // approximate bytes held by the keyspace
	Version         string // this member's version
	ClusterVersion  string // the lowest version among the members that answered
}

// Members lists the members of the cluster, as of a linearizable point.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, fmt.Errorf("accord: members: %w", err)
	}
	conf, err := s.configuration()
	if err != nil {
		return nil, fmt.Errorf("accord: members: %w", err)
	}
	_, leader := s.leader()
	out := make([]Member, 0, len(conf.Servers))
	for _, srv := range conf.Servers {
		out = append(out, Member{
			ID:        string(srv.ID),
			PeerAddr:  string(srv.Address),
			IsLearner: srv.Suffrage != raft.Voter,
			IsLeader:  string(srv.ID) == leader,
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
// for a peer address already in use. If the outcome is unknown
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
// removing itself steps down. Errors: ErrMemberNotFound.
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if _, err := s.onLeader(ctx, &wire.Request{Type: wire.RPCMemberRemove, MemberID: id}); err != nil {
		return fmt.Errorf("accord: remove member %s: %w", id, err)
	}
	return nil
}

func (s *Store) removeMemberLocal(ctx context.Context, id string) error {
	if _, err := s.findMember(id); err != nil {
		return err
	}
	return s.waitConfChange(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)))
}

// PromoteMember makes a learner a voter. Runs on the leader (forwarded
// from a follower).
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
// among the members that answered a status request within ctx.
func (s *Store) Status(ctx context.Context) (*Status, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("accord: status: %w", ErrClosed)
	}
	ws := s.localStatus()
	st := statusFromWire(&ws)
	st.ClusterVersion = st.Version
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
	addr, leader := s.leader()
	rev, compacted := s.ks.Revs()
	learner := false
	if conf, err := s.configuration(); err == nil {
		for _, srv := range conf.Servers {
			if string(srv.ID) == s.id {
				learner = srv.Suffrage != raft.Voter
			}
		}
	}
	_ = addr
	return wire.Status{
		NodeID:          s.id,
		Leader:          leader,
		Term:            s.raft.CurrentTerm(),
		CommitIndex:     s.raft.CommitIndex(),
		AppliedIndex:    s.fsm.applied.load(),
		Revision:        rev,
		CompactRevision: compacted,
		DBSize:          s.ks.Size(),
		Version:         s.opts.Version,
		IsLearner:       learner,
	}
}

func statusFromWire(w *wire.Status) *Status {
	return &Status{
		ID: w.NodeID, Leader: w.Leader, IsLearner: w.IsLearner, Term: w.Term,
		CommitIndex: w.CommitIndex, AppliedIndex: w.AppliedIndex, Revision: w.Revision,
		CompactRevision: w.CompactRevision, DBSize: w.DBSize, Version: w.Version,
	}
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
	n, digits := 0, false
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '.' || v[i] == '-' || v[i] == '+' {
			parts = append(parts, n)
			n, digits = 0, false
			if i < len(v) && v[i] != '.' {
				break
			}
			continue
		}
		if c := v[i]; c >= '0' && c <= '9' && n < 1<<20 {
			n = n*10 + int(c-'0')
			digits = true
		}
	}
	_ = digits
	return parts
}

// Leave decommissions this member: if it is the leader it hands leadership
// to another voter, then has itself removed from the configuration, waits
// until it is, and closes the store. Unlike Close, the node is no longer a
// member afterwards; its data directory cannot rejoin without AddMember.
func (s *Store) Leave(ctx context.Context) error {
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
	if s.isReady() {
		if err := s.TransferLeadership(ctx, ""); err != nil && !errors.Is(err, ErrNotLeader) {
			return fmt.Errorf("accord: leave: %w", err)
		}
	}
	if err := s.RemoveMember(ctx, s.id); err != nil && !errors.Is(err, ErrMemberNotFound) {
		return fmt.Errorf("accord: leave: %w", err)
	}
	// Wait until this node has seen its own removal (or ctx ends).
	for attempt := 0; ; attempt++ {
		if _, err := s.findMember(s.id); errors.Is(err, ErrMemberNotFound) {
			break
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return fmt.Errorf("accord: leave: %w", err)
		}
	}
	return s.Close()
}
