package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Peer RPC encoding (RPCVersion 1)
//
// Followers forward requests to the leader over a stream of frames, one
// Request or Response per frame. The primitives and their canonical-encoding
// rules are those of the command codec (see codec.go): minimal varints,
// length-prefixed strings, bools that are 0 or 1, no trailing bytes. Decoding
// is strict, so that decode(b) followed by encode reproduces b byte for byte.
//
//	frame       = length:uvarint payload      ; payload is length bytes
//
//	request     = version:byte type:byte from:string timeout:varint payload
//	payload     = command:bytes               ; RPCForward
//	            |                             ; RPCReadIndex, RPCStatus: empty
//	            | lease:varint                ; RPCLeaseKeepAlive
//	            | lease:varint keys:bool      ; RPCLeaseTimeToLive
//	            | addr:string                 ; RPCMemberLookup
//	            | member_id:string            ; RPCMemberRemove, RPCMemberPromote, RPCMemberCheck
//	            | member_id:string addr:string ; RPCMemberUpdate
//	            | addr:string learner:bool    ; RPCMemberAdd
//
//	response    = version:byte fields:uvarint field*
//	              ; fields is a bit set: bit i is set iff field i is
//	              ; non-zero, and the set fields follow in bit order
//	field       = err_code:uvarint            ; bit 0, 1..65535
//	            | err_msg:string              ; bit 1
//	            | leader_id:string            ; bit 2
//	            | leader_addr:string          ; bit 3
//	            | txn_resp                    ; bit 4, Txn != nil
//	            | revision:varint             ; bit 5
//	            | index:uvarint               ; bit 6
//	            | ttl:varint                  ; bit 7
//	            | granted_ttl:varint          ; bit 8
//	            | nkeys:uvarint key:string*nkeys ; bit 9, nkeys >= 1
//	            | status                      ; bit 10, Status != nil
//	            | member_id:string            ; bit 11
//	txn_resp    = revision:varint succeeded:bool nresp:uvarint resp_op*nresp
//	resp_op     = 1 range_resp | 2 put_resp | 3 delete_resp | 4 txn_resp
//	range_resp  = revision:varint nkvs:uvarint kv*nkvs count:varint more:bool
//	put_resp    = revision:varint has_prev_kv:bool kv? ; kv iff has_prev_kv
//	delete_resp = revision:varint deleted:varint nprev:uvarint kv*nprev
//	kv          = key:string value:bytes create_revision:varint
//	              mod_revision:varint version:varint lease:varint
//	status      = node_id:string name:string leader:string term:uvarint
//	              commit_index:uvarint applied_index:uvarint revision:varint
//	              compact_revision:varint db_size:varint version:string
//	              is_learner:bool
//
// A response field whose bit is set but whose value is zero (an empty
// string, a 0 integer, an empty key list) is ErrCorrupt, as is a bit beyond
// bit 11: every Response has exactly one encoding. Unlike RPC types, error
// codes are not checked against the known list: a code this version does not
// know decodes as is (see ErrCode.Known), so that a newer peer's error is an
// error, not a protocol failure. Response.Txn is at transaction depth 1, as a
// Command's TxnRequest is, and nesting is bounded by MaxTxnDepth.
//
// Adding a field to Request or Response, or an RPC type whose request has a
// payload older peers cannot parse, needs a new RPCVersion or RPCType. A
// request's type byte comes before anything else, so an old peer answers a
// new type with ErrUnknownRPC (see DecodeRequest).

// RPCVersion is the first byte of every encoded Request and Response. A
// decoder refuses a version it does not know with an error wrapping
// ErrUnknownVersion.
const RPCVersion byte = 1

// RPC errors. Decoding errors wrap one of these or one of the codec's
// sentinels (ErrTruncated, ErrCorrupt, ErrUnknownVersion) with detail, so
// test them with errors.Is.
var (
	// ErrUnknownRPC reports a request whose RPC type this version does not
	// know, typically from a newer peer; the receiver should answer with
	// ErrCodeUnsupported. The concrete error is an *UnknownRPCError.
	ErrUnknownRPC = errors.New("wire: unknown rpc type")

	// ErrInvalidRPC reports a Request or Response that cannot be encoded:
	// nil, a request field that does not belong to the request's Type, a
	// ResponseOp with zero or several fields set, or transaction responses
	// nested deeper than MaxTxnDepth.
	ErrInvalidRPC = errors.New("wire: invalid rpc message")

	// ErrFrameTooLarge reports a frame whose length prefix exceeds the
	// reader's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
)

// UnknownRPCError is returned for a request whose type this version does not
// know. errors.Is(err, ErrUnknownRPC) holds for it.
type UnknownRPCError struct {
	Type RPCType
}

// Error implements error.
func (e *UnknownRPCError) Error() string {
	return fmt.Sprintf("wire: unknown rpc type %d", uint8(e.Type))
}

// Unwrap returns ErrUnknownRPC.
func (e *UnknownRPCError) Unwrap() error { return ErrUnknownRPC }

// RPCType names a peer RPC. New types are only ever appended.
type RPCType uint8

// RPC types. The numeric values are part of the protocol.
const (
	RPCInvalid RPCType = 0

	// RPCForward proposes Request.Command, an encoded Command, on the
	// leader. The answer carries Response.Revision, and Response.Txn for a
	// CmdTxn command.
	RPCForward RPCType = 1

	// RPCReadIndex asks the leader for a read index (Response.Index).
	RPCReadIndex RPCType = 2

	// RPCLeaseKeepAlive renews lease Request.LeaseID; the answer carries
	// the remaining TTL in Response.TTLMillis.
	RPCLeaseKeepAlive RPCType = 3

	// RPCLeaseTimeToLive asks about lease Request.LeaseID: Response.TTLMillis
	// and Response.GrantedTTLMillis, and, if Request.Keys is set, the
	// attached keys in Response.Keys.
	RPCLeaseTimeToLive RPCType = 4

	// RPCStatus asks a member for its Response.Status.
	RPCStatus RPCType = 5

	// RPCMemberLookup asks for the raft ID (Response.MemberID) that the
	// peer address Request.Addr was added under.
	RPCMemberLookup RPCType = 6

	// RPCMemberRemove asks the leader to remove the member whose raft ID is
	// Request.MemberID from the configuration.
	RPCMemberRemove RPCType = 7

	// RPCMemberUpdate asks the leader to record Request.Addr as the peer
	// address of member Request.MemberID (a member that restarted on a new
	// address, or etcd's member update).
	RPCMemberUpdate RPCType = 8

	// RPCMemberAdd asks the leader to add a member at peer address
	// Request.Addr, as a learner if Request.Learner; the answer carries the
	// new member's ID in Response.MemberID.
	RPCMemberAdd RPCType = 9

	// RPCMemberPromote asks the leader to make learner Request.MemberID a
	// voter.
	RPCMemberPromote RPCType = 10

	// RPCMemberCheck asks whether Request.MemberID is in the responder's
	// latest configuration: Response.MemberID echoes it if so and is empty
	// if not; Response.LeaderID is the leader as the responder knows it.
	// Added in 0.2.0; an older member answers ErrCodeUnsupported.
	RPCMemberCheck RPCType = 11

	// rpcMax is one past the last known type.
	rpcMax RPCType = 12
)

// Known reports whether t is an RPC type this version understands.
func (t RPCType) Known() bool { return t > RPCInvalid && t < rpcMax }

// String returns the lower-case name of t, such as "forward", or "unknown"
// for a type this version does not know.
func (t RPCType) String() string {
	switch t {
	case RPCForward:
		return "forward"
	case RPCReadIndex:
		return "read-index"
	case RPCLeaseKeepAlive:
		return "lease-keepalive"
	case RPCLeaseTimeToLive:
		return "lease-timetolive"
	case RPCStatus:
		return "status"
	case RPCMemberLookup:
		return "member-lookup"
	case RPCMemberRemove:
		return "member-remove"
	case RPCMemberUpdate:
		return "member-update"
	case RPCMemberAdd:
		return "member-add"
	case RPCMemberPromote:
		return "member-promote"
	case RPCMemberCheck:
		return "member-check"
	}
	return "unknown"
}

// Request is one peer RPC request. Only the payload fields that belong to
// Type may be set; From and TimeoutMillis belong to every type.
type Request struct {
	Type RPCType

	// Command is the encoded Command to propose (RPCForward), as
	// EncodeCommand produces it. It is carried opaque: the receiver decodes
	// it.
	Command []byte
	// LeaseID is the lease asked about (RPCLeaseKeepAlive,
	// RPCLeaseTimeToLive).
	LeaseID int64
	// Keys asks for the lease's attached keys (RPCLeaseTimeToLive).
	Keys bool
	// Addr is the peer address to look up (RPCMemberLookup).
	Addr string
	// MemberID is the raft ID of the member to remove, update or promote
	// (RPCMemberRemove, RPCMemberUpdate, RPCMemberPromote).
	MemberID string
	// Learner asks for a non-voting member (RPCMemberAdd).
	Learner bool

	// From is the sender's node ID, for logs.
	From string
	// TimeoutMillis is how long the sender will wait for the answer, in
	// milliseconds; 0 means no limit. Other values, negative ones included,
	// are carried as they are.
	TimeoutMillis int64
}

// ErrCode is a transportable error identity. The values are part of the
// protocol; new codes are only ever appended. A receiver maps a code it does
// not know (Known reports false) to a generic error.
type ErrCode uint16

// Error codes.
const (
	ErrCodeNone ErrCode = iota // success
	ErrCodeUnknown
	ErrCodeNotLeader // Response.LeaderID and LeaderAddr say where to go
	ErrCodeNoLeader
	ErrCodeUnknownOutcome
	ErrCodeClosed
	ErrCodeEmptyKey
	ErrCodeKeyNotFound
	ErrCodeValueProvided
	ErrCodeLeaseProvided
	ErrCodeTooManyOps
	ErrCodeDuplicateKey
	ErrCodeRequestTooLarge
	ErrCodeCompacted
	ErrCodeFutureRev
	ErrCodeLeaseNotFound
	ErrCodeLeaseExists
	ErrCodeLeaseTTLTooLarge
	ErrCodeUnsupported
	ErrCodeInvalidArgument
	ErrCodeCorrupt
	ErrCodeTimeout
	ErrCodeNotFound
	ErrCodeExists
	ErrCodeNoSpace
	// Added in 0.3.0: an older member reports these as unknown.
	ErrCodeSpaceExceeded
	ErrCodeNotEnoughStarted // a member change would leave too few started voters
	ErrCodeUnhealthy        // a member change the leader cannot keep a quorum through

	// errCodeMax is one past the last known code.
	errCodeMax
)

var errCodeNames = [...]string{
	ErrCodeNone:             "none",
	ErrCodeUnknown:          "unknown",
	ErrCodeNotLeader:        "not-leader",
	ErrCodeNoLeader:         "no-leader",
	ErrCodeUnknownOutcome:   "unknown-outcome",
	ErrCodeClosed:           "closed",
	ErrCodeEmptyKey:         "empty-key",
	ErrCodeKeyNotFound:      "key-not-found",
	ErrCodeValueProvided:    "value-provided",
	ErrCodeLeaseProvided:    "lease-provided",
	ErrCodeTooManyOps:       "too-many-ops",
	ErrCodeDuplicateKey:     "duplicate-key",
	ErrCodeRequestTooLarge:  "request-too-large",
	ErrCodeCompacted:        "compacted",
	ErrCodeFutureRev:        "future-rev",
	ErrCodeLeaseNotFound:    "lease-not-found",
	ErrCodeLeaseExists:      "lease-exists",
	ErrCodeLeaseTTLTooLarge: "lease-ttl-too-large",
	ErrCodeUnsupported:      "unsupported",
	ErrCodeInvalidArgument:  "invalid-argument",
	ErrCodeCorrupt:          "corrupt",
	ErrCodeTimeout:          "timeout",
	ErrCodeNotFound:         "not-found",
	ErrCodeExists:           "exists",
	ErrCodeNoSpace:          "no-space",
	ErrCodeSpaceExceeded:    "space-exceeded",
	ErrCodeNotEnoughStarted: "not-enough-started",
	ErrCodeUnhealthy:        "unhealthy",
}

// Known reports whether c is an error code this version understands
// (ErrCodeNone included).
func (c ErrCode) Known() bool { return c < errCodeMax }

// String returns the lower-case name of c, such as "not-leader", or
// "code-N" for a code this version does not know.
func (c ErrCode) String() string {
	if c.Known() {
		return errCodeNames[c]
	}
	return "code-" + strconv.Itoa(int(c))
}

// KeyValue mirrors the root package's KeyValue.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

// RangeResponse is the result of a RangeRequest.
type RangeResponse struct {
	Revision int64
	KVs      []KeyValue
	Count    int64
	More     bool
}

// PutResponse is the result of a PutRequest. PrevKV is set if the request
// asked for it and the key existed.
type PutResponse struct {
	Revision int64
	PrevKV   *KeyValue
}

// DeleteRangeResponse is the result of a DeleteRangeRequest.
type DeleteRangeResponse struct {
	Revision int64
	Deleted  int64
	PrevKVs  []KeyValue
}

// ResponseOp is the result of one RequestOp; exactly one field is set.
type ResponseOp struct {
	Range       *RangeResponse
	Put         *PutResponse
	DeleteRange *DeleteRangeResponse
	Txn         *TxnResponse
}

// TxnResponse is the result of a TxnRequest: whether its compares held, and
// the result of each op of the branch that ran.
type TxnResponse struct {
	Revision  int64
	Succeeded bool
	Responses []ResponseOp
}

// Status is a member's view of itself, for RPCStatus.
type Status struct {
	NodeID          string
	Name            string
	Leader          string // the leader's node ID, "" if none is known
	Term            uint64
	CommitIndex     uint64
	AppliedIndex    uint64
	Revision        int64
	CompactRevision int64
	DBSize          int64
	Version         string
	IsLearner       bool
}

// Response is the answer to a Request. Which fields are set depends on the
// request's type (see the RPCType constants) and on ErrCode.
type Response struct {
	// ErrCode identifies the error, ErrCodeNone on success.
	ErrCode ErrCode
	// ErrMsg is human text for the error; the root package maps ErrCode
	// back to its sentinel.
	ErrMsg string
	// LeaderID and LeaderAddr say where to go instead, with
	// ErrCodeNotLeader.
	LeaderID   string
	LeaderAddr string

	// Txn is the result of an RPCForward of a CmdTxn command.
	Txn *TxnResponse
	// Revision is the store revision after an RPCForward command.
	Revision int64
	// Index is the read index (RPCReadIndex).
	Index uint64
	// TTLMillis is the lease's remaining TTL (RPCLeaseKeepAlive,
	// RPCLeaseTimeToLive).
	TTLMillis int64
	// GrantedTTLMillis is the lease's granted TTL (RPCLeaseTimeToLive).
	GrantedTTLMillis int64
	// Keys are the lease's attached keys (RPCLeaseTimeToLive with
	// Request.Keys).
	Keys []string
	// Status is the member's status (RPCStatus).
	Status *Status
	// MemberID is the raft ID an address was added under
	// (RPCMemberLookup).
	MemberID string
}

// Response field bits, in encoding order.
const (
	respErrCode uint64 = 1 << iota
	respErrMsg
	respLeaderID
	respLeaderAddr
	respTxn
	respRevision
	respIndex
	respTTL
	respGrantedTTL
	respKeys
	respStatus
	respMemberID

	respFieldsMask = 1<<iota - 1
)

// Smallest encodings, used to bound element counts.
const (
	// key, value, four varints.
	minKeyValueSize = 6
	// tag, revision, has_prev_kv (put); the other ops are larger.
	minResponseOpSize = 3
)

// AppendRequest appends the encoding of r to dst and returns the extended
// slice. It returns an *UnknownRPCError for a type that is not Known and an
// error wrapping ErrInvalidRPC for a nil request or one with a payload field
// that does not belong to its type; on error dst is returned unchanged in
// length.
func AppendRequest(dst []byte, r *Request) ([]byte, error) {
	start := len(dst)
	e := Encoder{buf: dst}
	if err := encodeRequest(&e, r); err != nil {
		return dst[:start], err
	}
	return e.buf, nil
}

func encodeRequest(e *Encoder, r *Request) error {
	if r == nil {
		return fmt.Errorf("%w: nil request", ErrInvalidRPC)
	}
	if !r.Type.Known() {
		return &UnknownRPCError{Type: r.Type}
	}
	isLease := r.Type == RPCLeaseKeepAlive || r.Type == RPCLeaseTimeToLive
	switch {
	case len(r.Command) != 0 && r.Type != RPCForward:
		return strayRequestField(r.Type, "Command")
	case r.LeaseID != 0 && !isLease:
		return strayRequestField(r.Type, "LeaseID")
	case r.Keys && r.Type != RPCLeaseTimeToLive:
		return strayRequestField(r.Type, "Keys")
	case r.Addr != "" && r.Type != RPCMemberLookup && r.Type != RPCMemberUpdate && r.Type != RPCMemberAdd:
		return strayRequestField(r.Type, "Addr")
	case r.MemberID != "" && r.Type != RPCMemberRemove && r.Type != RPCMemberUpdate && r.Type != RPCMemberPromote && r.Type != RPCMemberCheck:
		return strayRequestField(r.Type, "MemberID")
	case r.Learner && r.Type != RPCMemberAdd:
		return strayRequestField(r.Type, "Learner")
	}
	e.Byte(RPCVersion)
	e.Byte(byte(r.Type))
	e.String(r.From)
	e.Varint(r.TimeoutMillis)
	switch r.Type {
	case RPCForward:
		e.Bytes(r.Command)
	case RPCLeaseKeepAlive:
		e.Varint(r.LeaseID)
	case RPCLeaseTimeToLive:
		e.Varint(r.LeaseID)
		e.Bool(r.Keys)
	case RPCMemberLookup:
		e.String(r.Addr)
	case RPCMemberRemove, RPCMemberPromote, RPCMemberCheck:
		e.String(r.MemberID)
	case RPCMemberUpdate:
		e.String(r.MemberID)
		e.String(r.Addr)
	case RPCMemberAdd:
		e.String(r.Addr)
		e.Bool(r.Learner)
	case RPCReadIndex, RPCStatus:
	}
	return nil
}

func strayRequestField(t RPCType, field string) error {
	return fmt.Errorf("%w: %s request has %s set", ErrInvalidRPC, t, field)
}

// DecodeRequest decodes one request encoded by AppendRequest. It is strict:
// it returns an error wrapping ErrUnknownVersion if the first byte is not
// RPCVersion, an *UnknownRPCError (errors.Is ErrUnknownRPC) for a type this
// version does not know, without looking at the rest of the input (a type
// byte of 0, RPCInvalid, is ErrCorrupt instead, since no version uses it),
// and an error wrapping ErrTruncated or ErrCorrupt for any other malformed
// input, including bytes left over after the payload. It never panics.
//
// The result shares no memory with b. An empty Command decodes as nil.
// Memory allocated is linear in len(b).
func DecodeRequest(b []byte) (*Request, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty rpc request", ErrTruncated)
	}
	if b[0] != RPCVersion {
		return nil, fmt.Errorf("%w %d in rpc request (this build speaks rpc version %d)", ErrUnknownVersion, b[0], RPCVersion)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: rpc type at offset 1", ErrTruncated)
	}
	t := RPCType(b[1])
	if t == RPCInvalid {
		return nil, fmt.Errorf("%w: rpc type 0 at offset 1", ErrCorrupt)
	}
	if !t.Known() {
		return nil, &UnknownRPCError{Type: t}
	}
	d := Decoder{buf: b, off: 2}
	r := &Request{Type: t}
	r.From = d.String()
	r.TimeoutMillis = d.Varint()
	switch t {
	case RPCForward:
		r.Command = d.Bytes()
	case RPCLeaseKeepAlive:
		r.LeaseID = d.Varint()
	case RPCLeaseTimeToLive:
		r.LeaseID = d.Varint()
		r.Keys = d.Bool()
	case RPCMemberLookup:
		r.Addr = d.String()
	case RPCMemberRemove, RPCMemberPromote, RPCMemberCheck:
		r.MemberID = d.String()
	case RPCMemberUpdate:
		r.MemberID = d.String()
		r.Addr = d.String()
	case RPCMemberAdd:
		r.Addr = d.String()
		r.Learner = d.Bool()
	case RPCReadIndex, RPCStatus:
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// AppendResponse appends the encoding of r to dst and returns the extended
// slice. It returns an error wrapping ErrInvalidRPC for a nil response, a
// ResponseOp with zero or several fields set, or transaction responses
// nested deeper than MaxTxnDepth; on error dst is returned unchanged in
// length. Any ErrCode value can be encoded.
func AppendResponse(dst []byte, r *Response) ([]byte, error) {
	start := len(dst)
	e := Encoder{buf: dst}
	if err := encodeResponse(&e, r); err != nil {
		return dst[:start], err
	}
	return e.buf, nil
}

func encodeResponse(e *Encoder, r *Response) error {
	if r == nil {
		return fmt.Errorf("%w: nil response", ErrInvalidRPC)
	}
	var f uint64
	set := func(bit uint64, present bool) {
		if present {
			f |= bit
		}
	}
	set(respErrCode, r.ErrCode != 0)
	set(respErrMsg, r.ErrMsg != "")
	set(respLeaderID, r.LeaderID != "")
	set(respLeaderAddr, r.LeaderAddr != "")
	set(respTxn, r.Txn != nil)
	set(respRevision, r.Revision != 0)
	set(respIndex, r.Index != 0)
	set(respTTL, r.TTLMillis != 0)
	set(respGrantedTTL, r.GrantedTTLMillis != 0)
	set(respKeys, len(r.Keys) != 0)
	set(respStatus, r.Status != nil)
	set(respMemberID, r.MemberID != "")

	e.Byte(RPCVersion)
	e.Uvarint(f)
	if f&respErrCode != 0 {
		e.Uvarint(uint64(r.ErrCode))
	}
	if f&respErrMsg != 0 {
		e.String(r.ErrMsg)
	}
	if f&respLeaderID != 0 {
		e.String(r.LeaderID)
	}
	if f&respLeaderAddr != 0 {
		e.String(r.LeaderAddr)
	}
	if f&respTxn != 0 {
		if err := encodeTxnResponse(e, r.Txn, 1); err != nil {
			return err
		}
	}
	if f&respRevision != 0 {
		e.Varint(r.Revision)
	}
	if f&respIndex != 0 {
		e.Uvarint(r.Index)
	}
	if f&respTTL != 0 {
		e.Varint(r.TTLMillis)
	}
	if f&respGrantedTTL != 0 {
		e.Varint(r.GrantedTTLMillis)
	}
	if f&respKeys != 0 {
		e.Uvarint(uint64(len(r.Keys)))
		for _, k := range r.Keys {
			e.String(k)
		}
	}
	if f&respStatus != 0 {
		s := r.Status
		e.String(s.NodeID)
		e.String(s.Name)
		e.String(s.Leader)
		e.Uvarint(s.Term)
		e.Uvarint(s.CommitIndex)
		e.Uvarint(s.AppliedIndex)
		e.Varint(s.Revision)
		e.Varint(s.CompactRevision)
		e.Varint(s.DBSize)
		e.String(s.Version)
		e.Bool(s.IsLearner)
	}
	if f&respMemberID != 0 {
		e.String(r.MemberID)
	}
	return nil
}

func encodeTxnResponse(e *Encoder, t *TxnResponse, depth int) error {
	if depth > MaxTxnDepth {
		return fmt.Errorf("%w: transaction responses nested deeper than %d", ErrInvalidRPC, MaxTxnDepth)
	}
	e.Varint(t.Revision)
	e.Bool(t.Succeeded)
	e.Uvarint(uint64(len(t.Responses)))
	for i := range t.Responses {
		op := &t.Responses[i]
		n := 0
		if op.Range != nil {
			n++
		}
		if op.Put != nil {
			n++
		}
		if op.DeleteRange != nil {
			n++
		}
		if op.Txn != nil {
			n++
		}
		if n != 1 {
			return fmt.Errorf("%w: response op with %d fields set, want 1", ErrInvalidRPC, n)
		}
		switch {
		case op.Range != nil:
			r := op.Range
			e.Byte(opRange)
			e.Varint(r.Revision)
			encodeKeyValues(e, r.KVs)
			e.Varint(r.Count)
			e.Bool(r.More)
		case op.Put != nil:
			p := op.Put
			e.Byte(opPut)
			e.Varint(p.Revision)
			e.Bool(p.PrevKV != nil)
			if p.PrevKV != nil {
				encodeKeyValue(e, p.PrevKV)
			}
		case op.DeleteRange != nil:
			r := op.DeleteRange
			e.Byte(opDeleteRange)
			e.Varint(r.Revision)
			e.Varint(r.Deleted)
			encodeKeyValues(e, r.PrevKVs)
		case op.Txn != nil:
			e.Byte(opTxn)
			if err := encodeTxnResponse(e, op.Txn, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func encodeKeyValues(e *Encoder, kvs []KeyValue) {
	e.Uvarint(uint64(len(kvs)))
	for i := range kvs {
		encodeKeyValue(e, &kvs[i])
	}
}

func encodeKeyValue(e *Encoder, kv *KeyValue) {
	e.String(kv.Key)
	e.Bytes(kv.Value)
	e.Varint(kv.CreateRevision)
	e.Varint(kv.ModRevision)
	e.Varint(kv.Version)
	e.Varint(kv.Lease)
}

// DecodeResponse decodes one response encoded by AppendResponse. It is
// strict: it returns an error wrapping ErrUnknownVersion if the first byte
// is not RPCVersion and an error wrapping ErrTruncated or ErrCorrupt for any
// other malformed input, including a field marked present whose value is
// zero and bytes left over after the last field. An ErrCode this version
// does not know is not an error. It never panics.
//
// The result shares no memory with b. Empty byte strings decode as nil and
// empty lists as nil slices. Memory allocated is linear in len(b).
func DecodeResponse(b []byte) (*Response, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty rpc response", ErrTruncated)
	}
	if b[0] != RPCVersion {
		return nil, fmt.Errorf("%w %d in rpc response (this build speaks rpc version %d)", ErrUnknownVersion, b[0], RPCVersion)
	}
	d := Decoder{buf: b, off: 1}
	start := d.off
	f := d.Uvarint()
	if d.err == nil && f&^respFieldsMask != 0 {
		d.off = start
		d.fail(ErrCorrupt, fmt.Sprintf("undefined response field bits %#x", f&^respFieldsMask))
	}
	r := &Response{}
	if f&respErrCode != 0 {
		start := d.off
		c := d.Uvarint()
		if d.err == nil && (c == 0 || c > math.MaxUint16) {
			d.off = start
			d.fail(ErrCorrupt, fmt.Sprintf("error code %d out of range", c))
		}
		r.ErrCode = ErrCode(c)
	}
	if f&respErrMsg != 0 {
		r.ErrMsg = presentString(&d, "ErrMsg")
	}
	if f&respLeaderID != 0 {
		r.LeaderID = presentString(&d, "LeaderID")
	}
	if f&respLeaderAddr != 0 {
		r.LeaderAddr = presentString(&d, "LeaderAddr")
	}
	if f&respTxn != 0 && d.err == nil {
		r.Txn = decodeTxnResponse(&d, 1)
	}
	if f&respRevision != 0 {
		r.Revision = presentVarint(&d, "Revision")
	}
	if f&respIndex != 0 {
		start := d.off
		r.Index = d.Uvarint()
		if r.Index == 0 {
			absentField(&d, start, "Index")
		}
	}
	if f&respTTL != 0 {
		r.TTLMillis = presentVarint(&d, "TTLMillis")
	}
	if f&respGrantedTTL != 0 {
		r.GrantedTTLMillis = presentVarint(&d, "GrantedTTLMillis")
	}
	if f&respKeys != 0 {
		start := d.off
		n := d.Count(1)
		if n == 0 {
			absentField(&d, start, "Keys")
		} else {
			r.Keys = make([]string, n)
			for i := range r.Keys {
				r.Keys[i] = d.String()
			}
		}
	}
	if f&respStatus != 0 && d.err == nil {
		s := &Status{}
		s.NodeID = d.String()
		s.Name = d.String()
		s.Leader = d.String()
		s.Term = d.Uvarint()
		s.CommitIndex = d.Uvarint()
		s.AppliedIndex = d.Uvarint()
		s.Revision = d.Varint()
		s.CompactRevision = d.Varint()
		s.DBSize = d.Varint()
		s.Version = d.String()
		s.IsLearner = d.Bool()
		r.Status = s
	}
	if f&respMemberID != 0 {
		r.MemberID = presentString(&d, "MemberID")
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// absentField records ErrCorrupt for a response field whose bit is set but
// whose value, which started at offset start, is zero.
func absentField(d *Decoder, start int, field string) {
	if d.err == nil {
		d.off = start
		d.fail(ErrCorrupt, "response field "+field+" marked present but zero")
	}
}

func presentString(d *Decoder, field string) string {
	start := d.off
	s := d.String()
	if s == "" {
		absentField(d, start, field)
	}
	return s
}

func presentVarint(d *Decoder, field string) int64 {
	start := d.off
	x := d.Varint()
	if x == 0 {
		absentField(d, start, field)
	}
	return x
}

func decodeTxnResponse(d *Decoder, depth int) *TxnResponse {
	t := &TxnResponse{}
	t.Revision = d.Varint()
	t.Succeeded = d.Bool()
	n := d.Count(minResponseOpSize)
	if n == 0 {
		return t
	}
	t.Responses = make([]ResponseOp, n)
	for i := range t.Responses {
		op := &t.Responses[i]
		switch tag := d.Byte(); tag {
		case opRange:
			r := &RangeResponse{}
			r.Revision = d.Varint()
			r.KVs = decodeKeyValues(d)
			r.Count = d.Varint()
			r.More = d.Bool()
			op.Range = r
		case opPut:
			p := &PutResponse{}
			p.Revision = d.Varint()
			if d.Bool() {
				p.PrevKV = &KeyValue{}
				decodeKeyValue(d, p.PrevKV)
			}
			op.Put = p
		case opDeleteRange:
			r := &DeleteRangeResponse{}
			r.Revision = d.Varint()
			r.Deleted = d.Varint()
			r.PrevKVs = decodeKeyValues(d)
			op.DeleteRange = r
		case opTxn:
			if depth >= MaxTxnDepth {
				d.off--
				d.fail(ErrCorrupt, fmt.Sprintf("transaction responses nested deeper than %d", MaxTxnDepth))
				return t
			}
			op.Txn = decodeTxnResponse(d, depth+1)
		default:
			if d.err == nil {
				d.off--
				d.fail(ErrCorrupt, fmt.Sprintf("unknown response op tag %d", tag))
			}
		}
		if d.err != nil {
			return t
		}
	}
	return t
}

func decodeKeyValues(d *Decoder) []KeyValue {
	n := d.Count(minKeyValueSize)
	if n == 0 {
		return nil
	}
	kvs := make([]KeyValue, n)
	for i := range kvs {
		decodeKeyValue(d, &kvs[i])
		if d.err != nil {
			break
		}
	}
	return kvs
}

func decodeKeyValue(d *Decoder, kv *KeyValue) {
	kv.Key = d.String()
	kv.Value = d.Bytes()
	kv.CreateRevision = d.Varint()
	kv.ModRevision = d.Varint()
	kv.Version = d.Varint()
	kv.Lease = d.Varint()
}

// frameChunk bounds how much ReadFrame allocates ahead of the bytes that
// have actually arrived, so that a peer cannot make it allocate a frame's
// full claimed length and then send nothing.
const frameChunk = 64 << 10

// WriteFrame writes payload to w as one frame: its length as a uvarint, then
// the payload, in a single Write call, so that concurrent writers to a
// connection that serializes Write calls do not interleave frames.
func WriteFrame(w io.Writer, payload []byte) error {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(payload))
	buf = binary.AppendUvarint(buf, uint64(len(payload)))
	buf = append(buf, payload...)
	n, err := w.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	return err
}

// ReadFrame reads one frame written by WriteFrame and returns its payload in
// a new slice (non-nil, even when empty).
//
// It returns io.EOF, unwrapped, if r is at a clean end of stream before the
// frame; an error wrapping both ErrTruncated and io.ErrUnexpectedEOF if the
// stream ends inside the frame; an error wrapping ErrCorrupt for a length
// prefix that is not a minimal uvarint; and an error wrapping
// ErrFrameTooLarge, before allocating anything for the payload, if the
// length exceeds maxSize (a negative maxSize counts as 0). Other read errors
// are returned as they are. After an error the stream is no longer at a
// frame boundary, and the caller should close it.
//
// Memory is allocated as the payload arrives, a bounded chunk ahead of it,
// so a frame that claims maxSize bytes and is cut short costs little.
func ReadFrame(r *bufio.Reader, maxSize int) ([]byte, error) {
	n, err := readFrameLen(r)
	if err != nil {
		return nil, err
	}
	if maxSize < 0 {
		maxSize = 0
	}
	if n > uint64(maxSize) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxSize)
	}
	size := int(n)
	buf := make([]byte, min(size, frameChunk))
	got := 0
	for {
		k, err := io.ReadFull(r, buf[got:])
		got += k
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, fmt.Errorf("%w: frame payload ends after %d of %d bytes: %w", ErrTruncated, got, size, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		if got == size {
			return buf, nil
		}
		// Double what has arrived, up to the frame's size.
		buf = slices.Grow(buf, min(size-got, got))
		buf = buf[:min(cap(buf), size)]
	}
}

// readFrameLen reads a frame's uvarint length prefix with the Decoder's
// rules: minimal encoding, at most 64 bits.
func readFrameLen(r *bufio.Reader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				if i == 0 {
					return 0, io.EOF
				}
				return 0, fmt.Errorf("%w: frame length prefix: %w", ErrTruncated, io.ErrUnexpectedEOF)
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrCorrupt)
		}
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: overlong frame length", ErrCorrupt)
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
}
