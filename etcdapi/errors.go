package etcdapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accordkv/accord"
)

// toGRPC translates an accord error into etcd's gRPC error with the same
// meaning, code and message text (clientv3 matches errors by text).
// Errors without an etcd counterpart keep their text with a fitting code.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range errMap {
		if errors.Is(err, m.err) {
			return m.grpc
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	}
	return status.Error(codes.Unknown, err.Error())
}

// errMap is checked in order: the first sentinel err matches wins.
var errMap = []struct {
	err  error
	grpc error
}{
	{accord.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{accord.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{accord.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{accord.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{accord.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{accord.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{accord.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{accord.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{accord.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{accord.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{accord.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{accord.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{accord.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{accord.ErrMemberExists, rpctypes.ErrGRPCPeerURLExist},
	{accord.ErrNotEnoughStartedMembers, rpctypes.ErrGRPCMemberNotEnoughStarted},
	{accord.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{accord.ErrClosed, rpctypes.ErrGRPCStopped},
	// Before ErrUnknownOutcome: a forwarded write that the leader did not
	// answer in time matches both, and etcd says "request timed out".
	{accord.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{accord.ErrUnknownOutcome, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{accord.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{accord.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{accord.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{accord.ErrUnsupported, rpctypes.ErrGRPCNotCapable},
	{accord.ErrInvalidArgument, status.Error(codes.InvalidArgument, "etcdserver: invalid argument")},
	// Not etcd's ErrGRPCNoSpace ("database space exceeded", a quota alarm):
	// accord refuses writes because the disk itself is nearly full.
	{accord.ErrNoSpace, status.Error(codes.ResourceExhausted, "etcdserver: disk full: no space left for the raft log")},
	{accord.ErrSpaceExceeded, rpctypes.ErrGRPCNoSpace},
}
