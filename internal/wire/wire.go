// Package wire defines accord's replicated log commands and their binary
// encoding. Everything that crosses the raft log (and, later, the peer
// transport) is described here, so that the encoding is versioned in one
// place and fuzzed in one place.
//
// The types mirror etcd's etcdserverpb requests closely, because accord
// implements the same semantics; they are internal so that the public API can
// evolve independently.
package wire

// CodecVersion is the first byte of every encoded command. A decoder refuses
// a version it does not know with ErrUnknownVersion instead of guessing.
const CodecVersion byte = 1

// CmdType says which command an encoded entry holds. New types are only ever
// appended; a node that meets a type it does not know reports
// ErrUnknownCommand (see the version gate in the root package).
type CmdType uint8

// Command types. The numeric values are part of the on-disk format.
const (
	CmdInvalid     CmdType = 0
	CmdTxn         CmdType = 1 // a write transaction (also used for single Put/Delete)
	CmdCompact     CmdType = 2 // compact history up to Compact.Revision
	CmdLeaseGrant  CmdType = 3
	CmdLeaseRevoke CmdType = 4 // explicit revoke by a client
	CmdLeaseExpire CmdType = 5 // leader decided the lease expired; same effect as revoke
	CmdNoop        CmdType = 6 // barrier/no-op; changes nothing
	// CmdMemberAttrs publishes a member's attributes (name, client URLs),
	// as etcd publishes its own. Added in accord 0.2.0: a member proposes
	// it only once every member runs 0.2.0 or later (the root package's
	// cluster-version gate), because 0.1.0 cannot apply it.
	CmdMemberAttrs CmdType = 7
	// CmdAlarm raises or clears an alarm of a member (etcd's
	// AlarmRequest). Added in accord 0.3.0, behind its version gate.
	CmdAlarm CmdType = 8

	// cmdMax is one past the last known type.
	cmdMax CmdType = 9
)

// Known reports whether t is a command type this version understands.
func (t CmdType) Known() bool { return t > CmdInvalid && t < cmdMax }

// String returns the lower-case name of t, such as "txn", or "unknown" for a
// type this version does not know.
func (t CmdType) String() string {
	switch t {
	case CmdTxn:
		return "txn"
	case CmdCompact:
		return "compact"
	case CmdLeaseGrant:
		return "lease-grant"
	case CmdLeaseRevoke:
		return "lease-revoke"
	case CmdLeaseExpire:
		return "lease-expire"
	case CmdNoop:
		return "noop"
	case CmdMemberAttrs:
		return "member-attrs"
	case CmdAlarm:
		return "alarm"
	}
	return "unknown"
}

// Command is one raft log entry. Exactly one of the payload fields matching
// Type is set.
type Command struct {
	Type CmdType

	Txn     *TxnRequest // CmdTxn
	Compact int64       // CmdCompact: the revision to compact up to
	LeaseID int64       // CmdLeaseGrant, CmdLeaseRevoke, CmdLeaseExpire
	// LeaseTTLMillis is the granted TTL in milliseconds (CmdLeaseGrant).
	LeaseTTLMillis int64
	Member         *MemberAttrs // CmdMemberAttrs
	Alarm          *AlarmChange // CmdAlarm
}

// Alarm actions (AlarmChange.Action), as etcd numbers AlarmRequest's.
const (
	AlarmActivate   uint8 = 1
	AlarmDeactivate uint8 = 2
)

// AlarmChange raises or clears one alarm of one member.
type AlarmChange struct {
	Action uint8  // AlarmActivate or AlarmDeactivate
	Type   int32  // etcd's AlarmType: 1 NOSPACE, 2 CORRUPT
	NodeID string // the member the alarm is for; never empty
}

// MemberAttrs are the attributes a member publishes about itself through
// the log: they reach every member, with or without gossip.
type MemberAttrs struct {
	ID         string // the member's node ID; never empty
	Name       string
	ClientURLs []string
}

// Sort orders and targets, as etcd numbers them.
const (
	SortNone    uint8 = 0
	SortAscend  uint8 = 1
	SortDescend uint8 = 2

	SortByKey     uint8 = 0
	SortByVersion uint8 = 1
	SortByCreate  uint8 = 2
	SortByMod     uint8 = 3
	SortByValue   uint8 = 4
)

// RangeRequest reads keys. Semantics are etcd's RangeRequest: an empty
// RangeEnd means the single key Key; RangeEnd "\x00" means every key >= Key.
type RangeRequest struct {
	Key          string
	RangeEnd     string
	Limit        int64
	Revision     int64 // 0 = current
	SortOrder    uint8
	SortTarget   uint8
	Serializable bool
	KeysOnly     bool
	CountOnly    bool
	MinModRev    int64
	MaxModRev    int64
	MinCreateRev int64
	MaxCreateRev int64
}

// PutRequest writes one key.
type PutRequest struct {
	Key         string
	Value       []byte
	Lease       int64
	PrevKV      bool
	IgnoreValue bool
	IgnoreLease bool
}

// DeleteRangeRequest deletes a key or a range (same range rules as
// RangeRequest).
type DeleteRangeRequest struct {
	Key      string
	RangeEnd string
	PrevKV   bool
}

// Compare results and targets, as etcd numbers them.
const (
	CmpEqual    uint8 = 0
	CmpGreater  uint8 = 1
	CmpLess     uint8 = 2
	CmpNotEqual uint8 = 3

	CmpVersion uint8 = 0
	CmpCreate  uint8 = 1
	CmpMod     uint8 = 2
	CmpValue   uint8 = 3
	CmpLease   uint8 = 4
)

// Compare is one condition of a transaction. Int holds the operand for the
// VERSION, CREATE, MOD and LEASE targets; Value for the VALUE target.
type Compare struct {
	Result   uint8
	Target   uint8
	Key      string
	RangeEnd string
	Int      int64
	Value    []byte
}

// RequestOp is one operation of a transaction; exactly one field is set.
type RequestOp struct {
	Range       *RangeRequest
	Put         *PutRequest
	DeleteRange *DeleteRangeRequest
	Txn         *TxnRequest
}

// TxnRequest is etcd's Txn: if every Compare holds, Success runs, otherwise
// Failure.
type TxnRequest struct {
	Compare []Compare
	Success []RequestOp
	Failure []RequestOp
}
