package accord

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error an accord call returns either is one of these,
// wraps one of them (test with errors.Is), or is the caller's context error.
// The texts follow etcd's where etcd has the same error, so that operators
// recognise them.
var (
	// ErrClosed is returned by every call made after Close or Leave.
	ErrClosed = errors.New("accord: store closed")

	// ErrEmptyKey is returned when a request names no key (etcd: "key is not provided").
	ErrEmptyKey = errors.New("accord: key is not provided")

	// ErrKeyNotFound is returned by a Put with WithIgnoreValue or
	// WithIgnoreLease on a key that does not exist (etcd: "key not found").
	ErrKeyNotFound = errors.New("accord: key not found")

	// ErrValueProvided is returned by a Put that sets WithIgnoreValue and
	// also carries a value.
	ErrValueProvided = errors.New("accord: value is provided")

	// ErrLeaseProvided is returned by a Put that sets WithIgnoreLease and
	// also WithLease.
	ErrLeaseProvided = errors.New("accord: lease is provided")

	// ErrTooManyOps is returned by a Txn whose If, Then or Else holds more
	// operations than Options.MaxTxnOps (nested transactions counted).
	ErrTooManyOps = errors.New("accord: too many operations in txn request")

	// ErrDuplicateKey is returned by a Txn branch that writes the same key
	// twice (two puts, or a put and a delete covering it).
	ErrDuplicateKey = errors.New("accord: duplicate key given in txn request")

	// ErrRequestTooLarge is returned when an encoded request exceeds
	// Options.MaxRequestBytes.
	ErrRequestTooLarge = errors.New("accord: request is too large")

	// ErrCompacted is returned by a read or watch at a revision that has been
	// compacted away, and by Compact at or below the compacted revision.
	ErrCompacted = errors.New("accord: mvcc: required revision has been compacted")

	// ErrFutureRev is returned by a read or Compact at a revision beyond the
	// current one.
	ErrFutureRev = errors.New("accord: mvcc: required revision is a future revision")

	// ErrLeaseNotFound is returned for an operation on a lease that does not
	// exist (never granted, revoked or expired).
	ErrLeaseNotFound = errors.New("accord: requested lease not found")

	// ErrLeaseExists is returned by Grant with WithLeaseID for an ID in use.
	ErrLeaseExists = errors.New("accord: lease already exists")

	// ErrLeaseTTLTooLarge is returned by Grant with a TTL above MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("accord: too large lease TTL")

	// ErrNotLeader is returned (wrapped in a *NotLeaderError) when a request
	// needs the leader and this node is not it and cannot forward.
	ErrNotLeader = errors.New("accord: not leader")

	// ErrNoLeader is returned when the cluster has no leader and ctx ended
	// while waiting for one.
	ErrNoLeader = errors.New("accord: no leader")

	// ErrUnknownOutcome is returned by a write whose fate is unknown: it was
	// handed to raft, but leadership was lost (or the node shut down) before
	// the result was known. The write may or may not have been applied;
	// read before retrying a non-idempotent write.
	ErrUnknownOutcome = errors.New("accord: write outcome unknown (leadership lost)")

	// ErrTimeout is returned when a request to another member (a write or
	// read forwarded to the leader) got no answer within the request
	// timeout, 5 s plus two ElectionTimeouts (etcd's), although the
	// caller's ctx allowed more: the network may have lost the request or
	// its answer. A write that times out also matches ErrUnknownOutcome.
	// Reads are retried on a new connection instead.
	ErrTimeout = errors.New("accord: request timed out")

	// ErrUnsupported is returned for a request or a log command this version
	// of accord does not understand, or that the cluster version does not
	// allow yet.
	ErrUnsupported = errors.New("accord: unsupported by this version")

	// ErrInvalidArgument is returned for a malformed request, e.g. a
	// negative limit, an unknown sort order or a compare with a bad operand.
	ErrInvalidArgument = errors.New("accord: invalid argument")

	// ErrCorrupt is returned (wrapped in a *CorruptError) by Open and Restore
	// when the data directory or a backup is damaged. Nothing was changed.
	ErrCorrupt = errors.New("accord: data corrupt")

	// ErrForeignDir is returned by Open for a data directory that belongs to
	// another node or cluster, or was written by a newer format version.
	ErrForeignDir = errors.New("accord: data directory belongs to another node, cluster or version")

	// ErrMemberNotFound is returned for a member ID (or peer address) that
	// is not in the cluster.
	ErrMemberNotFound = errors.New("accord: member not found")

	// ErrMemberExists is returned by AddMember for a peer address that a
	// member already has.
	ErrMemberExists = errors.New("accord: member already exists")

	// ErrNotEnoughStartedMembers is returned by a member change that would
	// leave fewer started voters (members that have run and published
	// themselves, or answer now) than a quorum of the new configuration:
	// removing the last voter, always; otherwise only with the strict
	// reconfiguration check (Options.NoStrictReconfigCheck). etcd's
	// "re-configuration failed due to not enough started members".
	ErrNotEnoughStartedMembers = errors.New("accord: re-configuration failed due to not enough started members")

	// ErrUnhealthy is returned by a member change that the strict
	// reconfiguration check refuses because the leader cannot reach enough
	// voters now for the new configuration to keep a working quorum.
	// etcd's "unhealthy cluster".
	ErrUnhealthy = errors.New("accord: unhealthy cluster")

	// ErrInUse is returned by Open and Restore for a data directory that
	// another Store holds open. Only one Store may open a directory.
	ErrInUse = errors.New("accord: data directory in use")

	// ErrNoSpace is returned by writes while the disk holding the data
	// directory (of this member, or of the leader it forwards to) has less
	// free space than Options.MinFreeDiskBytes. Nothing was written; retry
	// once space is freed.
	ErrNoSpace = errors.New("accord: disk full: no space left for the raft log")

	// ErrSpaceExceeded is returned by writes that add data (Put, a Txn
	// with a put, Grant) while a member has a NOSPACE alarm: its kv.db
	// passed Options.QuotaBytes. Nothing was written. Compact and
	// Defragment to get space back, then DisarmAlarm (etcd's "mvcc:
	// database space exceeded").
	ErrSpaceExceeded = errors.New("accord: database space exceeded")

	// ErrConflict is returned by Var.CompareAndSet when the key (or prefix)
	// changed after the given revision: nothing was written. Read the Var
	// again and retry.
	ErrConflict = errors.New("accord: compare-and-set conflict: changed since the given revision")
)

// NotLeaderError says which node is the leader, when it is known. It matches
// ErrNotLeader with errors.Is.
type NotLeaderError struct {
	LeaderID   string // empty when unknown
	LeaderAddr string // empty when unknown
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return ErrNotLeader.Error() + " (leader unknown)"
	}
	return fmt.Sprintf("%s (leader is %s at %s)", ErrNotLeader, e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// CorruptError says which file of a data directory or backup is damaged and
// how. It matches ErrCorrupt with errors.Is.
type CorruptError struct {
	Path   string // the damaged file or directory
	Reason string // what is wrong with it
	Err    error  // the underlying error, if any
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("accord: data corrupt: %s: %s", e.Path, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the underlying error.
func (e *CorruptError) Unwrap() error { return e.Err }
