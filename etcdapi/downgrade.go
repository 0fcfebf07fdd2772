package etcdapi

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/internal/schema"
)

// Downgrade answers `etcdctl downgrade validate|enable|cancel` for
// accord's own versions: the target is an accord release ("0.2" or
// "0.2.0"; the patch is dropped, as etcd drops it), and the cluster
// version in the answer is accord's (Status().ClusterVersion, as
// major.minor), which is the lowest version among the members.
//
// The checks are etcd's (Manager.DowngradeValidate), in its order and
// with its errors: a target that is not a version is "wrong downgrade
// target version format" (InvalidArgument); a target other than one minor
// version below the cluster's is "invalid downgrade target version"
// (InvalidArgument). Then accord's own: the target must read the data
// directory format the cluster's members write (accord.DataFormat), which
// only accord.FormatReadBy(DataFormat) and later do; otherwise the answer
// is "invalid downgrade target version" too (InvalidArgument), followed by
// a message that names the format and that release (etcdctl prints it
// with its gRPC code, since the text is not etcd's). For 0.3 that refuses every downgrade:
// 0.2 cannot read format 3 (its keyspace in kv.db).
//
// A validated target is not enabled: accord has no replicated downgrade
// state that would hold the cluster at the target version while members
// are replaced, so ENABLE answers Unimplemented after validating. No
// downgrade is ever in progress: CANCEL succeeds with nothing to cancel,
// as etcd answers a cancel with none in flight.
func (m *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	switch r.Action {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
	case pb.DowngradeRequest_CANCEL:
		cv, err := m.clusterVersion(ctx)
		if err != nil {
			return nil, err
		}
		return &pb.DowngradeResponse{Header: m.srv.currentHeader(), Version: majorMinor(cv)}, nil
	default:
		return nil, status.Error(codes.Unknown, "etcdserver: unknown method") // etcd's ErrUnknownMethod
	}
	target, err := parseDowngradeTarget(r.Version)
	if err != nil {
		return nil, err
	}
	cv, err := m.clusterVersion(ctx)
	if err != nil {
		return nil, err
	}
	if cv.Minor == 0 || target.Major != cv.Major || target.Minor != cv.Minor-1 {
		return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
	}
	oldest, err := schema.ParseVersion([]byte(accord.FormatReadBy(accord.DataFormat)))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "etcdserver: no release is known to read data directory format %d", accord.DataFormat)
	}
	if target.Major < oldest.Major || target.Major == oldest.Major && target.Minor < oldest.Minor {
		return nil, status.Errorf(codes.InvalidArgument, "%s: accord %s cannot read data directory format %d, which this cluster's members write; the oldest release that reads it is %s (restore a backup taken with the older release instead)",
			rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidDowngradeTargetVersion), majorMinor(target), accord.DataFormat, oldest)
	}
	if r.Action == pb.DowngradeRequest_ENABLE {
		return nil, status.Errorf(codes.Unimplemented, "etcdserver: downgrade to %s validated, but accord cannot yet hold a cluster at a lower version while its members are replaced", majorMinor(target))
	}
	return &pb.DowngradeResponse{Header: m.srv.currentHeader(), Version: majorMinor(cv)}, nil
}

// parseDowngradeTarget parses a downgrade target as etcd does
// (convertToClusterVersion): a semantic version, or major.minor; only
// major and minor count.
func parseDowngradeTarget(v string) (schema.Version, error) {
	t, err := schema.ParseVersion([]byte(v))
	if err != nil {
		if t, err = schema.ParseVersion([]byte(v + ".0")); err != nil {
			return schema.Version{}, rpctypes.ErrGRPCWrongDowngradeVersionFormat
		}
	}
	return schema.Version{Major: t.Major, Minor: t.Minor}, nil
}

// clusterVersion is accord's cluster version after a linearizable read
// (etcd's downgrade checks read after the leader's commit index).
func (m *maintenanceServer) clusterVersion(ctx context.Context) (schema.Version, error) {
	if _, err := m.srv.store.Get(ctx, "\x00"); err != nil {
		return schema.Version{}, toGRPC(err)
	}
	st, err := m.srv.store.Status(ctx)
	if err != nil {
		return schema.Version{}, toGRPC(err)
	}
	cv, err := schema.ParseVersion([]byte(st.ClusterVersion))
	if err != nil {
		return schema.Version{}, rpctypes.ErrGRPCClusterVersionUnavailable
	}
	return cv, nil
}

// majorMinor prints v as etcd prints a cluster version in a downgrade
// answer: "0.3".
func majorMinor(v schema.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }
