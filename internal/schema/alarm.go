package schema

import (
	"strconv"
)

// AlarmType is etcdserverpb.AlarmType.
type AlarmType int32

// The alarm types of etcd 3.7.
const (
	AlarmNone    AlarmType = 0 // no alarm; etcd only uses it to query
	AlarmNoSpace AlarmType = 1 // the space quota is exhausted
	AlarmCorrupt AlarmType = 2 // the keyspace hashes of members differ
)

// String returns etcd's name of t: "NONE", "NOSPACE", "CORRUPT", or the
// number for an unknown type.
func (t AlarmType) String() string {
	switch t {
	case AlarmNone:
		return "NONE"
	case AlarmNoSpace:
		return "NOSPACE"
	case AlarmCorrupt:
		return "CORRUPT"
	}
	return strconv.FormatInt(int64(t), 10)
}

// AlarmMember is etcdserverpb.AlarmMember (api/v3/etcdserverpb/rpc.proto):
//
//	message AlarmMember {
//	  uint64 memberID = 1;
//	  AlarmType alarm = 2;
//	}
//
// etcd stores an active alarm as a key of the "alarm" bucket: the encoded
// AlarmMember is the key, and the value is empty (schema/alarm.go,
// mustUnsafePutAlarm). An AlarmMember with both fields zero encodes to
// nothing, which bbolt cannot store as a key; etcd never stores one.
type AlarmMember struct {
	MemberID uint64
	Alarm    AlarmType
}

const typeAlarmMember = "AlarmMember"

// SizeAlarmMember returns the length of a's encoding.
func SizeAlarmMember(a AlarmMember) int {
	return sizeVarintField(a.MemberID) + sizeVarintField(uint64(int64(a.Alarm)))
}

// AppendAlarmMember appends a's protobuf encoding to dst, byte for byte what
// proto.Marshal writes for the same etcdserverpb.AlarmMember.
func AppendAlarmMember(dst []byte, a AlarmMember) []byte {
	dst = grow(dst, SizeAlarmMember(a))
	dst = appendVarintField(dst, 1, a.MemberID)
	// An enum is an int32 on the wire: a negative one is sign-extended.
	return appendVarintField(dst, 2, uint64(int64(a.Alarm)))
}

// DecodeAlarmMember decodes an "alarm" bucket key. An alarm number is
// truncated to 32 bits, as protobuf-go does for an enum. The error is a
// *DecodeError.
func DecodeAlarmMember(b []byte) (AlarmMember, error) {
	var a AlarmMember
	r := reader{typ: typeAlarmMember, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err != nil {
			return AlarmMember{}, err
		}
		var v uint64
		switch num {
		case 1:
			v, err = r.uvarint(num, wt)
			a.MemberID = v
		case 2:
			v, err = r.uvarint(num, wt)
			a.Alarm = AlarmType(int32(v))
		default:
			err = r.skip(num, wt)
		}
		if err != nil {
			return AlarmMember{}, err
		}
	}
	return a, nil
}
