package etcdapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/accordkv/accord"
)

// leaseServer implements etcd's Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	srv *Server
}

// maxLeaseTTLSeconds is etcd's largest lease TTL (accord.MaxLeaseTTL).
const maxLeaseTTLSeconds = int64(accord.MaxLeaseTTL / time.Second)

// ttlSeconds converts a TTL to whole seconds, rounded up, so that a lease
// never looks closer to expiry than it is.
func ttlSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// LeaseGrant grants a lease. The store raises a TTL below its minimum
// (1.5 election timeouts, as etcd's lessor does); the response carries the
// TTL actually granted, in seconds rounded up.
func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > maxLeaseTTLSeconds {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	var rev int64 // the revision at which the grant was applied, as etcd's header has it
	opts := []accord.OpOption{accord.WithAppliedRevision(&rev)}
	if r.ID != 0 {
		opts = append(opts, accord.WithLeaseID(accord.LeaseID(r.ID)))
	}
	ttl := time.Duration(max(r.TTL, 0)) * time.Second
	id, err := l.srv.store.Grant(ctx, ttl, opts...)
	if err != nil {
		return nil, toGRPC(err)
	}
	granted := ttlSeconds(ttl)
	// The store may have raised the TTL; ask what it granted (a read on
	// the leader, not a log entry). Should that fail, the lease exists
	// anyway: report the TTL that was asked for (at least 1 s).
	if st, err := l.srv.store.TimeToLive(ctx, id); err == nil {
		granted = ttlSeconds(st.GrantedTTL)
	}
	return &pb.LeaseGrantResponse{Header: l.srv.header(rev), ID: int64(id), TTL: max(granted, 1)}, nil
}

// LeaseRevoke revokes a lease. The header carries the revision of the
// revoke itself (the one that deleted the lease's keys), as etcd's does, not
// the revision current when the answer is sent: a client that resumes a
// watch from it must not skip the writes in between.
func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	var rev int64
	if err := l.srv.store.Revoke(ctx, accord.LeaseID(r.ID), accord.WithAppliedRevision(&rev)); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.LeaseRevokeResponse{Header: l.srv.header(rev)}, nil
}

// LeaseTimeToLive reports a lease's remaining and granted TTL in seconds
// (rounded up). An unknown lease answers TTL -1 without an error, as etcd
// does.
func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	var opts []accord.OpOption
	if r.Keys {
		opts = append(opts, accord.WithAttachedKeys())
	}
	st, err := l.srv.store.TimeToLive(ctx, accord.LeaseID(r.ID), opts...)
	if errors.Is(err, accord.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: l.srv.currentHeader(), ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPC(err)
	}
	out := &pb.LeaseTimeToLiveResponse{
		Header:     l.srv.currentHeader(),
		ID:         r.ID,
		TTL:        ttlSeconds(st.TTL),
		GrantedTTL: ttlSeconds(st.GrantedTTL),
	}
	if len(st.Keys) > 0 {
		out.Keys = make([][]byte, len(st.Keys))
		for i, k := range st.Keys {
			out.Keys[i] = []byte(k)
		}
	}
	return out, nil
}

func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids, err := l.srv.store.Leases(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	out := &pb.LeaseLeasesResponse{Header: l.srv.currentHeader(), Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		out.Leases[i] = &pb.LeaseStatus{ID: int64(id)}
	}
	return out, nil
}

// Keep-alive stream limits.
const (
	// keepAliveParallel is how many renewals of one stream may be in
	// flight at once (each is a round trip to the leader from a
	// follower); clientv3 sends the renewals of all its leases together.
	keepAliveParallel = 16

	// keepAliveLeaderWait bounds how long one renewal on a stream that
	// requires a leader ("hasleader" metadata, which clientv3 always sets
	// on its keep-alive stream) waits for the cluster to have one before
	// the stream fails with etcd's no-leader error. clientv3 then opens a
	// new stream, possibly on another member.
	keepAliveLeaderWait = 5 * time.Second
)

// LeaseKeepAlive serves a keep-alive stream: every request renews its
// lease once (KeepAliveOnce, on the leader) and is answered with the
// lease's full TTL in seconds; a lease that does not exist (never granted,
// revoked or expired) is answered with TTL 0, as etcd does, not with a
// stream error. Renewals run concurrently (up to keepAliveParallel), so
// answers may come in another order than the requests; this goroutine is
// the stream's only sender.
func (l *leaseServer) LeaseKeepAlive(stream grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	requireLeader := l.requiresLeader(ctx)

	out := make(chan *pb.LeaseKeepAliveResponse, keepAliveParallel)
	fatal := make(chan error, 1) // the first renewal error, which ends the stream
	var recvErr error            // written by the receiver before it closes out

	// The receiver reads requests and starts a renewal for each. When the
	// client half-closes (or the stream breaks) it waits for the renewals
	// in flight and closes out, so that their answers are still sent.
	// Should the handler return first, gRPC ends the stream, which
	// unblocks Recv.
	go func() {
		var wg sync.WaitGroup
		defer func() {
			wg.Wait()
			close(out)
		}()
		sem := make(chan struct{}, keepAliveParallel)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr = err
					cancel()
				}
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				resp, err := l.renew(ctx, req.ID, requireLeader)
				if err != nil {
					select {
					case fatal <- err:
					default:
					}
					cancel()
					return
				}
				select {
				case out <- resp:
				case <-ctx.Done():
				}
			})
		}
	}()

	for {
		select {
		case resp, ok := <-out:
			if !ok {
				select {
				case err := <-fatal:
					return err
				default:
				}
				return recvErr // nil after a half-close
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-ctx.Done():
			select {
			case err := <-fatal:
				return err
			default:
			}
			return toGRPC(ctx.Err())
		}
	}
}

// renew renews one lease for the keep-alive stream. The header is taken
// before the renewal, as etcd does, so that its revision is not later than
// the renewal.
func (l *leaseServer) renew(ctx context.Context, id int64, requireLeader bool) (*pb.LeaseKeepAliveResponse, error) {
	resp := &pb.LeaseKeepAliveResponse{Header: l.srv.currentHeader(), ID: id}
	rctx := ctx
	if requireLeader {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, keepAliveLeaderWait)
		defer cancel()
	}
	st, err := l.srv.store.KeepAliveOnce(rctx, accord.LeaseID(id))
	switch {
	case err == nil:
		resp.TTL = max(ttlSeconds(st.TTL), 1)
		return resp, nil
	case errors.Is(err, accord.ErrLeaseNotFound):
		return resp, nil // TTL 0: the client drops the lease
	case ctx.Err() != nil:
		return nil, toGRPC(ctx.Err())
	case requireLeader && (errors.Is(err, accord.ErrNoLeader) || errors.Is(err, context.DeadlineExceeded)):
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return nil, toGRPC(err)
}

// requiresLeader reports whether the client asked (with etcd's "hasleader"
// metadata) that the call fail when the cluster has no leader.
func (l *leaseServer) requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	vs := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader
}
