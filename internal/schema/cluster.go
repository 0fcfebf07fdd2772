package schema

import (
	"strconv"
)

// The "members", "members_removed" and "cluster" buckets
// (schema/membership.go, etcdserver/api/membership/member.go).

// Member is etcd's membership.Member as stored in the "members" bucket:
// JSON under the key AppendMemberKey(ID).
type Member struct {
	ID         uint64
	PeerURLs   []string
	IsLearner  bool
	Name       string
	ClientURLs []string
}

// MembersRemovedValue is the value etcd stores in the "members_removed"
// bucket under the key of a removed member.
const MembersRemovedValue = "removed"

// AppendMemberKey appends the key of member id in "members" and
// "members_removed": the ID in lower-case hexadecimal without leading zeros
// (types.ID.String).
func AppendMemberKey(dst []byte, id uint64) []byte { return strconv.AppendUint(dst, id, 16) }

// ParseMemberKey decodes a key of "members" or "members_removed" as etcd
// does (types.IDFromString: strconv.ParseUint base 16). A bad key is a
// *DecodeError (ErrInvalid); etcd panics on it.
func ParseMemberKey(b []byte) (uint64, error) {
	id, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return 0, decodeErr("member key", 0, 0, ErrInvalid, "%q is not a hexadecimal member ID", b)
	}
	return id, nil
}

// AppendMember appends m as etcd stores it, byte for byte what json.Marshal
// writes for a membership.Member:
//
//	{"id":<decimal>,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":[...]}
//
// peerURLs is always present (null for a nil list); isLearner, name and
// clientURLs are left out when false or empty. A member that has not
// published its attributes yet has no name and no clientURLs.
func AppendMember(dst []byte, m *Member) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, m.ID, 10)
	dst = append(dst, `,"peerURLs":`...)
	dst = appendJSONStrings(dst, m.PeerURLs)
	if m.IsLearner {
		dst = append(dst, `,"isLearner":true`...)
	}
	if m.Name != "" {
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, m.Name)
	}
	if len(m.ClientURLs) > 0 {
		dst = append(dst, `,"clientURLs":`...)
		dst = appendJSONStrings(dst, m.ClientURLs)
	}
	return append(dst, '}')
}

// memberJSON has membership.Member's JSON field names.
type memberJSON struct {
	ID         uint64   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	IsLearner  bool     `json:"isLearner"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"clientURLs"`
}

// DecodeMember decodes a record of the "members" bucket as etcd's
// readMembersFromBackend does: the ID comes from the key, and an "id" in the
// JSON, when there is one, replaces it. The error is a *DecodeError
// (ErrInvalid); etcd panics on a bad key or JSON.
func DecodeMember(key, value []byte, m *Member) error {
	*m = Member{}
	id, err := ParseMemberKey(key)
	if err != nil {
		return err
	}
	j := memberJSON{ID: id}
	if err := decodeJSON("member JSON", value, &j); err != nil {
		return err
	}
	*m = Member(j)
	return nil
}

// DowngradeInfo is etcd's version.DowngradeInfo, stored as JSON under
// ClusterDowngradeKey.
type DowngradeInfo struct {
	// TargetVersion is the version the cluster downgrades to, "" when no
	// downgrade is under way.
	TargetVersion string
	Enabled       bool
}

// AppendDowngradeInfo appends d as json.Marshal writes it:
// {"target-version":"3.6.0","enabled":true}.
func AppendDowngradeInfo(dst []byte, d *DowngradeInfo) []byte {
	dst = append(dst, `{"target-version":`...)
	dst = appendJSONString(dst, d.TargetVersion)
	dst = append(dst, `,"enabled":`...)
	dst = strconv.AppendBool(dst, d.Enabled)
	return append(dst, '}')
}

type downgradeJSON struct {
	TargetVersion string `json:"target-version"`
	Enabled       bool   `json:"enabled"`
}

// DecodeDowngradeInfo decodes the value of ClusterDowngradeKey. As etcd's
// DowngradeInfoFromBackend, it requires the target version of an enabled
// downgrade to parse (etcd panics otherwise). The error is a *DecodeError
// (ErrInvalid).
func DecodeDowngradeInfo(b []byte, d *DowngradeInfo) error {
	*d = DowngradeInfo{}
	var j downgradeJSON
	if err := decodeJSON("downgrade JSON", b, &j); err != nil {
		return err
	}
	if j.Enabled {
		if _, err := ParseVersion([]byte(j.TargetVersion)); err != nil {
			return decodeErr("downgrade JSON", 0, 0, ErrInvalid, "enabled with a bad target version: %v", err)
		}
	}
	*d = DowngradeInfo(j)
	return nil
}
