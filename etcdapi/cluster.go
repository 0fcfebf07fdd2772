package etcdapi

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/accordkv/accord"
)

// clusterServer implements etcd's Cluster service.
//
// An accord member has one peer address (host:port); the etcd API shows it
// as one peer URL with Options.PeerURLScheme. Member IDs are MemberID of
// the accord node ID. A member added with MemberAdd has no name until it
// starts and publishes one (etcdctl lists it as "unstarted").
type clusterServer struct {
	pb.UnimplementedClusterServer
	srv *Server
}

// memberListTimeout bounds the member list that follows a successful
// change (add, remove, update, promote): the change is done by then, so a
// slow list must not turn it into an error.
const memberListTimeout = 2 * time.Second

// MemberList lists the members: linearizable if the request asks for it
// (etcdctl does by default), otherwise this member's own view.
func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	var opts []accord.OpOption
	if !r.Linearizable {
		opts = append(opts, accord.WithSerializable())
	}
	ms, err := c.srv.store.Members(ctx, opts...)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberListResponse{Header: c.srv.currentHeader(), Members: c.pbMembers(ms)}, nil
}

// MemberAdd adds a member, as a learner with IsLearner. It takes exactly
// one peer URL: http or https (whatever Options.PeerURLScheme is; accord
// peers speak TLS according to their own configuration), host and port,
// no path.
func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	addr, err := peerAddrOf(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	m, err := c.srv.store.AddMember(ctx, addr, r.IsLearner)
	if errors.Is(err, accord.ErrUnknownOutcome) {
		// The change may have committed: the member list tells.
		m, err = c.findAdded(ctx, addr, r.IsLearner, err)
	}
	if err != nil {
		return nil, toGRPC(err)
	}
	newMember := c.pbMember(*m)
	newMember.Name = "" // not started yet, whatever the store knows
	resp := &pb.MemberAddResponse{Header: c.srv.currentHeader(), Member: newMember}
	// etcdctl builds ETCD_INITIAL_CLUSTER from this list, so it must hold
	// every member and the new one. Adding a member to a one-member cluster
	// doubles the quorum, and until the new member starts no linearizable
	// read can succeed: etcd answers from its own view, and so do we then.
	// This member's view, if it already shows the new member, is at least
	// as new as the change.
	ms, err := c.srv.store.Members(ctx, accord.WithSerializable())
	if err != nil || !slices.ContainsFunc(ms, func(x accord.Member) bool { return x.ID == m.ID }) {
		if lin, lerr := c.listAfterChange(ctx); lerr == nil {
			ms, err = lin, nil
		}
	}
	if err != nil {
		c.srv.log.Warn("member list after member add failed", "err", err)
	}
	resp.Members = c.pbMembers(ms)
	found := false
	for i, pm := range resp.Members {
		if pm.ID == newMember.ID {
			resp.Members[i], found = newMember, true
		}
	}
	if !found {
		resp.Members = append(resp.Members, newMember)
	}
	return resp, nil
}

// findAdded looks for a member with peer address addr after an add with an
// unknown outcome; it returns addErr if there is none (or the list fails).
func (c *clusterServer) findAdded(ctx context.Context, addr string, learner bool, addErr error) (*accord.Member, error) {
	ms, err := c.srv.store.Members(ctx)
	if err != nil {
		return nil, addErr
	}
	for _, m := range ms {
		if m.PeerAddr == addr && m.IsLearner == learner {
			return &m, nil
		}
	}
	return nil, addErr
}

// MemberRemove removes a member. The response lists the remaining members
// when the list can be read promptly (a member that removed itself no
// longer can).
func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	m, err := c.member(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.srv.store.RemoveMember(ctx, m.ID); err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.MemberRemoveResponse{Header: c.srv.currentHeader()}
	if ms, err := c.listAfterChange(ctx); err == nil {
		resp.Members = c.pbMembers(ms)
	}
	return resp, nil
}

// MemberUpdate sets a member's peer address (one peer URL, as MemberAdd).
func (c *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	addr, err := peerAddrOf(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	m, err := c.member(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.srv.store.UpdateMember(ctx, m.ID, addr); err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.MemberUpdateResponse{Header: c.srv.currentHeader()}
	if ms, err := c.listAfterChange(ctx); err == nil {
		resp.Members = c.pbMembers(ms)
	}
	return resp, nil
}

// MemberPromote makes a learner a voter. Promoting a voter fails with
// etcd's "can only promote a learner member". accord does not refuse to
// promote a learner that lags (raft then counts it in the quorum at once),
// so etcd's "learner not ready" error is never returned.
func (c *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	m, err := c.member(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if !m.IsLearner {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	if err := c.srv.store.PromoteMember(ctx, m.ID); err != nil {
		// Promoted by someone else meanwhile.
		if errors.Is(err, accord.ErrInvalidArgument) && strings.Contains(err.Error(), "already a voter") {
			return nil, rpctypes.ErrGRPCMemberNotLearner
		}
		return nil, toGRPC(err)
	}
	resp := &pb.MemberPromoteResponse{Header: c.srv.currentHeader()}
	if ms, err := c.listAfterChange(ctx); err == nil {
		resp.Members = c.pbMembers(ms)
	}
	return resp, nil
}

// member finds the member with the etcd member ID id.
func (c *clusterServer) member(ctx context.Context, id uint64) (*accord.Member, error) {
	ms, err := c.srv.store.Members(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	for _, m := range ms {
		if MemberID(m.ID) == id {
			return &m, nil
		}
	}
	return nil, rpctypes.ErrGRPCMemberNotFound
}

func (c *clusterServer) listAfterChange(ctx context.Context) ([]accord.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, memberListTimeout)
	defer cancel()
	return c.srv.store.Members(ctx)
}

// peerAddrOf turns the peer URLs of a member add or update into an accord
// peer address: exactly one http or https URL with a host and a port and
// nothing else, or etcd's "given member URLs are invalid".
func peerAddrOf(urls []string) (string, error) {
	if len(urls) != 1 {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	u, err := url.Parse(urls[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	return u.Host, nil
}

// pbMember converts an accord member to etcd's.
func (c *clusterServer) pbMember(m accord.Member) *pb.Member {
	out := &pb.Member{
		ID:        MemberID(m.ID),
		Name:      m.Name,
		IsLearner: m.IsLearner,
	}
	if m.PeerAddr != "" {
		out.PeerURLs = []string{c.srv.opts.PeerURLScheme + "://" + m.PeerAddr}
	}
	if len(m.ClientURLs) > 0 {
		out.ClientURLs = append([]string(nil), m.ClientURLs...)
	}
	return out
}

func (c *clusterServer) pbMembers(ms []accord.Member) []*pb.Member {
	out := make([]*pb.Member, len(ms))
	for i := range ms {
		out[i] = c.pbMember(ms[i])
	}
	return out
}
