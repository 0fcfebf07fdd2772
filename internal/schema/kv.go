package schema

// KeyValue is mvccpb.KeyValue (api/v3/mvccpb/kv.proto), the value of every
// record of the "key" bucket:
//
//	message KeyValue {
//	  bytes key = 1;
//	  int64 create_revision = 2;
//	  int64 mod_revision = 3;
//	  int64 version = 4;
//	  bytes value = 5;
//	  int64 lease = 6;
//	}
//
// etcd stores a put under its revision key with every field set as the key
// then was; it stores a deletion under the tombstone key with only Key set
// (kvstore_txn.go, storeTxnWrite.put and delete).
type KeyValue struct {
	Key            []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Value          []byte
	Lease          int64
}

// KeyValueHeader is a KeyValue without its value: what rebuilding the key
// index on restart needs (etcd's restoreIntoIndex and restoreChunk use the
// key, create_revision, version and lease of every record, never the value).
type KeyValueHeader struct {
	Key            []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

const typeKeyValue = "KeyValue"

// SizeKeyValue returns the length of kv's encoding.
func SizeKeyValue(kv *KeyValue) int {
	return sizeBytesField(len(kv.Key)) +
		sizeVarintField(uint64(kv.CreateRevision)) +
		sizeVarintField(uint64(kv.ModRevision)) +
		sizeVarintField(uint64(kv.Version)) +
		sizeBytesField(len(kv.Value)) +
		sizeVarintField(uint64(kv.Lease))
}

// AppendKeyValue appends kv's protobuf encoding to dst, byte for byte what
// proto.Marshal writes for the same mvccpb.KeyValue. It grows dst at most
// once and allocates nothing else.
func AppendKeyValue(dst []byte, kv *KeyValue) []byte {
	dst = grow(dst, SizeKeyValue(kv))
	dst = appendBytesField(dst, 1, kv.Key)
	dst = appendVarintField(dst, 2, uint64(kv.CreateRevision))
	dst = appendVarintField(dst, 3, uint64(kv.ModRevision))
	dst = appendVarintField(dst, 4, uint64(kv.Version))
	dst = appendBytesField(dst, 5, kv.Value)
	return appendVarintField(dst, 6, uint64(kv.Lease))
}

// DecodeKeyValue decodes b into kv. Key and Value are copied into one new
// allocation (nil when both are empty), so kv stays valid after b is reused,
// as a bbolt value is once its transaction ends. Unknown fields are skipped;
// a repeated field takes its last value, as in protobuf. On error kv is
// zero and the error is a *DecodeError.
func DecodeKeyValue(b []byte, kv *KeyValue) error {
	if err := DecodeKeyValueNoCopy(b, kv); err != nil {
		return err
	}
	if n := len(kv.Key) + len(kv.Value); n > 0 {
		buf := make([]byte, n)
		k := copy(buf, kv.Key)
		copy(buf[k:], kv.Value)
		kv.Key, kv.Value = nil, nil
		if k > 0 {
			kv.Key = buf[:k:k]
		}
		if k < n {
			kv.Value = buf[k:]
		}
	}
	return nil
}

// DecodeKeyValueNoCopy is DecodeKeyValue without the copy: Key and Value
// alias b (with no spare capacity) and are valid only while b is. It
// allocates nothing.
func DecodeKeyValueNoCopy(b []byte, kv *KeyValue) error {
	*kv = KeyValue{}
	r := reader{typ: typeKeyValue, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err != nil {
			*kv = KeyValue{}
			return err
		}
		var v uint64
		switch num {
		case 1:
			kv.Key, err = r.bytes(num, wt)
		case 2:
			v, err = r.uvarint(num, wt)
			kv.CreateRevision = int64(v)
		case 3:
			v, err = r.uvarint(num, wt)
			kv.ModRevision = int64(v)
		case 4:
			v, err = r.uvarint(num, wt)
			kv.Version = int64(v)
		case 5:
			kv.Value, err = r.bytes(num, wt)
		case 6:
			v, err = r.uvarint(num, wt)
			kv.Lease = int64(v)
		default:
			err = r.skip(num, wt)
		}
		if err != nil {
			*kv = KeyValue{}
			return err
		}
	}
	return nil
}

// DecodeKeyValueHeader decodes what rebuilding the key index needs: every
// field of a KeyValue but the value, with Key aliasing b, so that a caller
// cannot keep a reference into the value by mistake. It validates b exactly
// as DecodeKeyValue does (the same inputs fail, with the same errors),
// allocates nothing and costs what DecodeKeyValueNoCopy costs. On error h is
// zero.
func DecodeKeyValueHeader(b []byte, h *KeyValueHeader) error {
	var kv KeyValue
	err := DecodeKeyValueNoCopy(b, &kv)
	*h = KeyValueHeader{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
	return err
}
