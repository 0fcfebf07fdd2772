package accord

import "time"

// LeaseID identifies a lease. The zero LeaseID means "no lease".
type LeaseID int64

// NoLease is the LeaseID of a key that is not attached to a lease.
const NoLease LeaseID = 0

// KeyValue is one version of a key. CreateRevision is the revision that
// created the key (it stays until the key is deleted), ModRevision the
// revision of this version, Version counts modifications since creation
// (1 on create). Values returned to callers are copies: changing them does
// not change the store.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          LeaseID
}

// GetResponse is the result of Get. Revision is the store's revision the
// read was served at (the current revision unless WithRev was given, in
// which case it is still the current revision, as in etcd). Count is the
// number of keys in the range regardless of WithLimit; More reports that
// the limit cut the result.
type GetResponse struct {
	Revision int64
	KVs      []KeyValue
	Count    int64
	More     bool
}

// PutResponse is the result of Put. PrevKV is set with WithPrevKV when the
// key existed.
type PutResponse struct {
	Revision int64
	PrevKV   *KeyValue
}

// DeleteResponse is the result of Delete. PrevKVs is set with WithPrevKV.
type DeleteResponse struct {
	Revision int64
	Deleted  int64
	PrevKVs  []KeyValue
}

// TxnResponse is the result of a transaction. Succeeded reports whether
// every comparison held (Then ran) or not (Else ran). Responses holds one
// entry per operation of the branch that ran, in order.
type TxnResponse struct {
	Revision  int64
	Succeeded bool
	Responses []OpResponse
}

// OpResponse is the result of one operation in a transaction; exactly one
// field is set.
type OpResponse struct {
	Get    *GetResponse
	Put    *PutResponse
	Delete *DeleteResponse
	Txn    *TxnResponse
}

// EventType says what happened to a key.
type EventType int32

// Event types, numbered as etcd's mvccpb.Event_EventType.
const (
	EventPut    EventType = 0
	EventDelete EventType = 1
)

func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change to one key. For EventDelete, KV holds only the key and
// the ModRevision of the deletion. PrevKV is the version before the event,
// set when the watch asked WithPrevKV and the key existed before.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV *KeyValue

	// The version the event replaced, for the store's own use: the FSM
	// leaves PrevKV nil and the watch hub reads it from kv.db only for
	// watchers that asked for it (a put does not read the version it
	// replaces, which would make every page of the file resident).
	prev      revision // valid when hasPrev
	prevLease LeaseID
	hasPrev   bool
}

// IsCreate reports whether the event created the key.
func (e Event) IsCreate() bool { return e.Type == EventPut && e.KV.Version == 1 }

// WatchResponse is one batch of events from a watch. All events of one
// revision are always in the same response, in the order the transaction
// wrote them, and revisions arrive in increasing order without gaps or
// repeats. A response with no events and a nil Err is a progress
// notification: the watch has seen everything up to Revision.
//
// A response with a non-nil Err is the last one; the channel closes after
// it. With ErrCompacted CompactRevision is the revision a
// new watch can resume from.
type WatchResponse struct {
	Revision        int64
	Events          []Event
	CompactRevision int64
	Err             error
}

// IsProgressNotify reports whether the response is a progress notification.
func (r WatchResponse) IsProgressNotify() bool { return len(r.Events) == 0 && r.Err == nil }

// LeaseStatus describes a lease. TTL is the time left before it expires, as
// seen by the leader; GrantedTTL the TTL it was granted with. Keys lists
// the keys attached to it, filled by TimeToLive with WithAttachedKeys.
type LeaseStatus struct {
	ID         LeaseID
	TTL        time.Duration
	GrantedTTL time.Duration
	Keys       []string
}
