package accord

import (
	"fmt"
	"sync"

	"github.com/accordkv/accord/internal/wire"
)

// OpOption configures a Get, Put, Delete, Watch, Op or Grant, in the manner
// of etcd's clientv3.OpOption. Options that do not apply to a call are
// ignored, as in clientv3.
type OpOption func(*Op)

// SortOrder is the order of a sorted Get.
type SortOrder int

// Sort orders, as etcd numbers them.
const (
	SortNone SortOrder = iota
	SortAscend
	SortDescend
)

// SortTarget is the field a sorted Get sorts by.
type SortTarget int

// Sort targets, as etcd numbers them.
const (
	SortByKey SortTarget = iota
	SortByVersion
	SortByCreateRevision
	SortByModRevision
	SortByValue
)

type opType uint8

const (
	opGet opType = iota + 1
	opPut
	opDelete
	opTxn
)

// Op is one operation for a transaction, built with OpGet, OpPut, OpDelete
// or OpTxn. The zero Op is invalid.
type Op struct {
	t   opType
	key string
	end string
	val []byte

	// range
	limit        int64
	rev          int64
	sortOrder    SortOrder
	sortTarget   SortTarget
	serializable bool
	keysOnly     bool
	countOnly    bool
	minModRev    int64
	maxModRev    int64
	minCreateRev int64
	maxCreateRev int64

	// put / delete
	lease       LeaseID
	prevKV      bool
	ignoreValue bool
	ignoreLease bool

	// watch
	progressNotify bool
	progressReq    <-chan struct{}
	filterPut      bool
	filterDelete   bool

	// lease
	leaseID      LeaseID
	attachedKeys bool

	// result
	appliedRev *int64

	// txn
	cmps    []Cmp
	thenOps []Op
	elseOps []Op
}

func newOp(t opType, key string, val []byte, opts []OpOption) Op {
	op := Op{t: t, key: key, val: val}
	for _, o := range opts {
		if o != nil {
			o(&op)
		}
	}
	return op
}

// opPool recycles the Op that Get, Put and Delete build from their
// options. An OpOption takes *Op, so the compiler must put every Op it is
// applied to on the heap; on the serializable Get path that allocation was
// the largest cost.
var opPool = sync.Pool{New: func() any { return new(Op) }}

// getOp is newOp on a pooled Op; release it with putOp once the request
// built from it no longer needs it.
func getOp(t opType, key string, val []byte, opts []OpOption) *Op {
	op := opPool.Get().(*Op)
	op.t, op.key, op.val = t, key, val
	for _, o := range opts {
		if o != nil {
			o(op)
		}
	}
	return op
}

func putOp(op *Op) {
	*op = Op{}
	opPool.Put(op)
}

// OpGet returns a Get operation for a transaction.
func OpGet(key string, opts ...OpOption) Op { return newOp(opGet, key, nil, opts) }

// OpPut returns a Put operation for a transaction.
func OpPut(key string, value []byte, opts ...OpOption) Op { return newOp(opPut, key, value, opts) }

// OpDelete returns a Delete operation for a transaction.
func OpDelete(key string, opts ...OpOption) Op { return newOp(opDelete, key, nil, opts) }

// OpTxn returns a nested transaction operation.
func OpTxn(cmps []Cmp, thenOps, elseOps []Op) Op {
	return Op{t: opTxn, cmps: cmps, thenOps: thenOps, elseOps: elseOps}
}

// WithRange makes the operation cover the keys in [key, end). An end of
// "\x00" means every key >= key.
func WithRange(end string) OpOption { return func(op *Op) { op.end = end } }

// WithPrefix makes the operation cover every key starting with key. With an
// empty key it covers every key.
func WithPrefix() OpOption {
	return func(op *Op) {
		if op.key == "" {
			op.key, op.end = "\x00", "\x00"
			return
		}
		op.end = PrefixEnd(op.key)
	}
}

// WithFromKey makes the operation cover every key >= key.
func WithFromKey() OpOption {
	return func(op *Op) {
		if op.key == "" {
			op.key = "\x00"
		}
		op.end = "\x00"
	}
}

// WithRev reads at revision rev (Get), or starts a watch at rev (Watch).
// Zero means the current revision (Get) or "after the current revision"
// (Watch).
func WithRev(rev int64) OpOption { return func(op *Op) { op.rev = rev } }

// WithLimit caps the number of keys a Get returns; zero means no limit.
func WithLimit(n int64) OpOption { return func(op *Op) { op.limit = n } }

// WithKeysOnly makes a Get return keys without values.
func WithKeysOnly() OpOption { return func(op *Op) { op.keysOnly = true } }

// WithCountOnly makes a Get return only the count of keys.
func WithCountOnly() OpOption { return func(op *Op) { op.countOnly = true } }

// WithSort sorts a Get's result. A target other than SortByKey with
// SortNone sorts ascending, as etcd does.
func WithSort(target SortTarget, order SortOrder) OpOption {
	return func(op *Op) { op.sortTarget, op.sortOrder = target, order }
}

// WithSerializable makes a Get answer from this node's local state without
// a round trip to the leader: fast, but possibly stale on a follower.
func WithSerializable() OpOption { return func(op *Op) { op.serializable = true } }

// WithMinModRev filters a Get to keys with ModRevision >= rev.
func WithMinModRev(rev int64) OpOption { return func(op *Op) { op.minModRev = rev } }

// WithMaxModRev filters a Get to keys with ModRevision <= rev.
func WithMaxModRev(rev int64) OpOption { return func(op *Op) { op.maxModRev = rev } }

// WithMinCreateRev filters a Get to keys with CreateRevision >= rev.
func WithMinCreateRev(rev int64) OpOption { return func(op *Op) { op.minCreateRev = rev } }

// WithMaxCreateRev filters a Get to keys with CreateRevision <= rev.
func WithMaxCreateRev(rev int64) OpOption { return func(op *Op) { op.maxCreateRev = rev } }

// WithPrevKV returns the previous version of the key(s) from Put and
// Delete, and attaches it to watch events.
func WithPrevKV() OpOption { return func(op *Op) { op.prevKV = true } }

// WithLease attaches the key written by Put to a lease.
func WithLease(id LeaseID) OpOption { return func(op *Op) { op.lease = id } }

// WithIgnoreValue makes Put keep the key's current value (only its lease
// changes). The key must exist.
func WithIgnoreValue() OpOption { return func(op *Op) { op.ignoreValue = true } }

// WithIgnoreLease makes Put keep the key's current lease. The key must exist.
func WithIgnoreLease() OpOption { return func(op *Op) { op.ignoreLease = true } }

// WithProgressNotify makes a watch send an empty response now and then when
// nothing changed, so that the receiver knows how current it is. A
// progress notification never carries a revision below the last one the
// watch delivered, nor below rev-1 for a watch started WithRev(rev): on a
// member that has not applied that far yet, the watch stays silent until it
// has. etcd (since its issue 20221) waits one revision longer, until its
// store reaches rev itself; accord already reports rev-1, which the client
// has seen, so that a watch resumed at the current revision + 1 hears of
// its progress before the next write.
func WithProgressNotify() OpOption { return func(op *Op) { op.progressNotify = true } }

// WithProgressRequests lets the caller ask a watch how current it is: after
// each receive from ch, the watch sends a progress notification (a response
// without events) as soon as it has delivered every event up to the
// current revision, carrying that revision (never below rev-1 for a watch
// started WithRev(rev): on a member that is behind, the answer waits until
// it has caught up). Requests that arrive while one is pending are
// answered together. A server that multiplexes watches on
// one stream (etcd's RequestProgress) combines the answers of its watches.
func WithProgressRequests(ch <-chan struct{}) OpOption {
	return func(op *Op) { op.progressReq = ch }
}

// WithFilterPut makes a watch drop put events.
func WithFilterPut() OpOption { return func(op *Op) { op.filterPut = true } }

// WithFilterDelete makes a watch drop delete events.
func WithFilterDelete() OpOption { return func(op *Op) { op.filterDelete = true } }

// WithLeaseID makes Grant use the given ID instead of choosing one.
func WithLeaseID(id LeaseID) OpOption { return func(op *Op) { op.leaseID = id } }

// WithAttachedKeys makes TimeToLive list the keys attached to the lease.
func WithAttachedKeys() OpOption { return func(op *Op) { op.attachedKeys = true } }

// WithAppliedRevision makes Grant, Revoke or Compact store in *rev, when
// they succeed, the revision of the keyspace right after the command was
// applied: for a Revoke, the revision that deleted the lease's keys (if it
// had any); otherwise the revision current at that point of the log. It is
// what etcd puts in the response header, and what a watch resumes after
// (gRPC's grpc.Header(&md) hands results back the same way). Put, Delete
// and Txn return their revision in the response instead.
func WithAppliedRevision(rev *int64) OpOption { return func(op *Op) { op.appliedRev = rev } }

// setAppliedRevision reports rev to a WithAppliedRevision option.
func (op *Op) setAppliedRevision(rev int64) {
	if op.appliedRev != nil {
		*op.appliedRev = rev
	}
}

// PrefixEnd returns the end of the range of keys that start with prefix:
// prefix with its last byte below 0xff incremented and the rest dropped. If
// every byte is 0xff (or prefix is empty) it returns "\x00", which as a
// range end means "every key from the start".
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// Cmp is one condition of a transaction, built with Compare over Value,
// Version, CreateRevision, ModRevision or LeaseValue.
type Cmp struct {
	target uint8
	result uint8
	key    string
	end    string
	num    int64
	val    []byte
	err    error
}

// Value compares the value of key.
func Value(key string) Cmp { return Cmp{target: wire.CmpValue, key: key} }

// Version compares the version of key (0 when missing).
func Version(key string) Cmp { return Cmp{target: wire.CmpVersion, key: key} }

// CreateRevision compares the create revision of key (0 when missing).
func CreateRevision(key string) Cmp { return Cmp{target: wire.CmpCreate, key: key} }

// ModRevision compares the mod revision of key (0 when missing).
func ModRevision(key string) Cmp { return Cmp{target: wire.CmpMod, key: key} }

// LeaseValue compares the lease of key (0 when missing or without lease).
func LeaseValue(key string) Cmp { return Cmp{target: wire.CmpLease, key: key} }

// Compare completes a Cmp: result is one of "=", "!=", ">" or "<"; v is a
// string or []byte for Value, and an integer (or LeaseID) otherwise. A bad
// result or operand is reported by the transaction's Commit as
// ErrInvalidArgument; Compare itself never panics.
func Compare(c Cmp, result string, v any) Cmp {
	switch result {
	case "=":
		c.result = wire.CmpEqual
	case "!=":
		c.result = wire.CmpNotEqual
	case ">":
		c.result = wire.CmpGreater
	case "<":
		c.result = wire.CmpLess
	default:
		c.err = fmt.Errorf("%w: unknown compare result %q", ErrInvalidArgument, result)
		return c
	}
	if c.target == wire.CmpValue {
		switch x := v.(type) {
		case string:
			c.val = []byte(x)
		case []byte:
			c.val = append([]byte(nil), x...)
		default:
			c.err = fmt.Errorf("%w: value compare needs a string or []byte, got %T", ErrInvalidArgument, v)
		}
		return c
	}
	switch x := v.(type) {
	case int:
		c.num = int64(x)
	case int64:
		c.num = x
	case int32:
		c.num = int64(x)
	case uint32:
		c.num = int64(x)
	case LeaseID:
		c.num = int64(x)
	default:
		c.err = fmt.Errorf("%w: compare needs an integer, got %T", ErrInvalidArgument, v)
	}
	return c
}

// WithRange makes the compare hold only if it holds for every key in
// [key, end).
func (c Cmp) WithRange(end string) Cmp { c.end = end; return c }

// WithPrefix makes the compare hold only if it holds for every key with
// the prefix key. With an empty key it covers every key (as clientv3 does).
func (c Cmp) WithPrefix() Cmp {
	if c.key == "" {
		c.key, c.end = "\x00", "\x00"
		return c
	}
	c.end = PrefixEnd(c.key)
	return c
}

func (c Cmp) toWire() (wire.Compare, error) {
	if c.err != nil {
		return wire.Compare{}, c.err
	}
	if c.key == "" {
		return wire.Compare{}, ErrEmptyKey
	}
	return wire.Compare{Result: c.result, Target: c.target, Key: c.key, RangeEnd: c.end, Int: c.num, Value: c.val}, nil
}

// rangeRequest builds the read request; by value, so that a Get's request
// can stay on the stack.
func (op *Op) rangeRequest() (wire.RangeRequest, error) {
	if op.key == "" {
		return wire.RangeRequest{}, ErrEmptyKey
	}
	if op.limit < 0 {
		return wire.RangeRequest{}, fmt.Errorf("%w: negative limit %d", ErrInvalidArgument, op.limit)
	}
	if op.rev < 0 {
		return wire.RangeRequest{}, fmt.Errorf("%w: negative revision %d", ErrInvalidArgument, op.rev)
	}
	if op.sortOrder < SortNone || op.sortOrder > SortDescend {
		return wire.RangeRequest{}, fmt.Errorf("%w: unknown sort order %d", ErrInvalidArgument, op.sortOrder)
	}
	if op.sortTarget < SortByKey || op.sortTarget > SortByValue {
		return wire.RangeRequest{}, fmt.Errorf("%w: unknown sort target %d", ErrInvalidArgument, op.sortTarget)
	}
	return wire.RangeRequest{
		Key: op.key, RangeEnd: op.end, Limit: op.limit, Revision: op.rev,
		SortOrder: uint8(op.sortOrder), SortTarget: uint8(op.sortTarget),
		Serializable: op.serializable, KeysOnly: op.keysOnly, CountOnly: op.countOnly,
		MinModRev: op.minModRev, MaxModRev: op.maxModRev,
		MinCreateRev: op.minCreateRev, MaxCreateRev: op.maxCreateRev,
	}, nil
}

func (op *Op) putRequest() (*wire.PutRequest, error) {
	if op.key == "" {
		return nil, ErrEmptyKey
	}
	if op.ignoreValue && len(op.val) != 0 {
		return nil, ErrValueProvided
	}
	if op.ignoreLease && op.lease != NoLease {
		return nil, ErrLeaseProvided
	}
	return &wire.PutRequest{
		Key: op.key, Value: op.val, Lease: int64(op.lease), PrevKV: op.prevKV,
		IgnoreValue: op.ignoreValue, IgnoreLease: op.ignoreLease,
	}, nil
}

func (op *Op) deleteRequest() (*wire.DeleteRangeRequest, error) {
	if op.key == "" {
		return nil, ErrEmptyKey
	}
	return &wire.DeleteRangeRequest{Key: op.key, RangeEnd: op.end, PrevKV: op.prevKV}, nil
}

// toWire converts op for the log. maxOps is the budget left for a nested
// transaction: etcd's checkTxnRequest gives it the limit minus the
// operation count of its parent level.
func (op *Op) toWire(maxOps int) (wire.RequestOp, error) {
	switch op.t {
	case opGet:
		r, err := op.rangeRequest()
		if err != nil {
			return wire.RequestOp{}, err
		}
		return wire.RequestOp{Range: &r}, nil
	case opPut:
		r, err := op.putRequest()
		return wire.RequestOp{Put: r}, err
	case opDelete:
		r, err := op.deleteRequest()
		return wire.RequestOp{DeleteRange: r}, err
	case opTxn:
		t, err := buildTxn(op.cmps, op.thenOps, op.elseOps, maxOps)
		return wire.RequestOp{Txn: t}, err
	}
	return wire.RequestOp{}, fmt.Errorf("%w: empty Op", ErrInvalidArgument)
}

// buildTxn validates and converts a transaction: operation counts, operands,
// and duplicate writes per branch.
func buildTxn(cmps []Cmp, thenOps, elseOps []Op, maxOps int) (*wire.TxnRequest, error) {
	opc := max(len(cmps), len(thenOps), len(elseOps))
	if opc > maxOps {
		return nil, ErrTooManyOps
	}
	t := &wire.TxnRequest{}
	if len(cmps) > 0 {
		t.Compare = make([]wire.Compare, len(cmps))
		for i := range cmps {
			c, err := cmps[i].toWire()
			if err != nil {
				return nil, err
			}
			t.Compare[i] = c
		}
	}
	var err error
	if t.Success, err = opsToWire(thenOps, maxOps-opc); err != nil {
		return nil, err
	}
	if t.Failure, err = opsToWire(elseOps, maxOps-opc); err != nil {
		return nil, err
	}
	if err := checkDuplicates(t.Success); err != nil {
		return nil, err
	}
	if err := checkDuplicates(t.Failure); err != nil {
		return nil, err
	}
	return t, nil
}

func opsToWire(ops []Op, maxOps int) ([]wire.RequestOp, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	out := make([]wire.RequestOp, len(ops))
	for i := range ops {
		w, err := ops[i].toWire(maxOps)
		if err != nil {
			return nil, err
		}
		out[i] = w
	}
	return out, nil
}

type keyRange struct{ key, end string }

func (r keyRange) contains(k string) bool {
	if r.end == "" {
		return k == r.key
	}
	if r.end == "\x00" {
		return k >= r.key
	}
	return k >= r.key && k < r.end
}

// checkDuplicates rejects a branch that writes one key twice, following
// etcd's checkIntervals, so that the transactions etcd accepts are
// accepted (with one exception, below): two puts of a key in one level, a put inside a range deleted at
// its own level, a nested put inside a range deleted by the parent level or
// an earlier sibling, or two nested transactions putting the same key. The
// two branches of one nested transaction may write the same key, since only
// one of them runs.
func checkDuplicates(ops []wire.RequestOp) error {
	_, _, err := collectWrites(ops)
	return err
}

func collectWrites(ops []wire.RequestOp) (map[string]struct{}, []keyRange, error) {
	var dels []keyRange
	for _, op := range ops {
		if op.DeleteRange != nil {
			dels = append(dels, keyRange{op.DeleteRange.Key, op.DeleteRange.RangeEnd})
		}
	}
	deleted := func(k string) bool {
		for _, d := range dels {
			if d.contains(k) {
				return true
			}
		}
		return false
	}
	puts := make(map[string]struct{})
	for _, op := range ops {
		if op.Txn == nil {
			continue
		}
		thenPuts, thenDels, err := collectWrites(op.Txn.Success)
		if err != nil {
			return nil, nil, err
		}
		elsePuts, elseDels, err := collectWrites(op.Txn.Failure)
		if err != nil {
			return nil, nil, err
		}
		// Stricter than etcd in one case: a nested delete covering a key
		// that an earlier sibling (or this level, checked below) puts.
		// etcd accepts that and writes the key twice in one revision,
		// which a snapshot cannot reproduce.
		for _, d := range append(thenDels[:len(thenDels):len(thenDels)], elseDels...) {
			for k := range puts {
				if d.contains(k) {
					return nil, nil, ErrDuplicateKey
				}
			}
		}
		for k := range thenPuts {
			if _, dup := puts[k]; dup || deleted(k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range elsePuts {
			_, inThen := thenPuts[k]
			if _, dup := puts[k]; dup && !inThen || deleted(k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, thenDels...)
		dels = append(dels, elseDels...)
	}
	for _, op := range ops {
		if op.Put == nil {
			continue
		}
		k := op.Put.Key
		if _, dup := puts[k]; dup || deleted(k) {
			return nil, nil, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
