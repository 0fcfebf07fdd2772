package accord

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// etcdMemberID is the etcd member ID of node nodeID, as package etcdapi
// reports it (etcdapi.MemberID): the first 8 bytes of a SHA-256, never 0.
// kv.db's alarm keys carry it, so that etcd reads them.
func etcdMemberID(nodeID string) uint64 {
	sum := sha256.Sum256([]byte("member\x00" + nodeID))
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

// AlarmType is a kind of alarm, numbered as etcd's AlarmType.
type AlarmType int32

// Alarm types.
const (
	AlarmNone AlarmType = 0
	// AlarmNoSpace: the member's kv.db passed Options.QuotaBytes. While
	// any member has it, writes that add data fail with ErrSpaceExceeded;
	// reads, deletes, compaction and defragmentation still work.
	AlarmNoSpace AlarmType = 1
	// AlarmCorrupt: a member found its data damaged (etcd's CORRUPT).
	AlarmCorrupt AlarmType = 2
)

func (t AlarmType) String() string {
	switch t {
	case AlarmNone:
		return "NONE"
	case AlarmNoSpace:
		return "NOSPACE"
	case AlarmCorrupt:
		return "CORRUPT"
	}
	return fmt.Sprintf("AlarmType(%d)", int32(t))
}

// Alarm is an alarm raised for a member.
type Alarm struct {
	NodeID string
	Type   AlarmType
}

// alarmList returns the active alarms, sorted.
func (f *fsm) alarmList() []Alarm {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Alarm, 0, len(f.alarms))
	for a := range f.alarms {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alarm) int {
		if c := strings.Compare(a.NodeID, b.NodeID); c != 0 {
			return c
		}
		return int(a.Type - b.Type)
	})
	return out
}

func dbSize(ks *keyspace) int64 {
	size, _ := ks.Sizes()
	return size
}

// memberAttrsJSON is the accord_members record of a member.
type memberAttrsJSON struct {
	Name       string   `json:"name"`
	ClientURLs []string `json:"client_urls,omitempty"`
}

func encodeMemberAttrs(a memberAttrs) []byte {
	b, _ := json.Marshal(memberAttrsJSON{Name: a.name, ClientURLs: a.clientURLs})
	return b
}

func decodeMemberAttrs(b []byte) (memberAttrs, error) {
	var j memberAttrsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return memberAttrs{}, err
	}
	return memberAttrs{name: j.Name, clientURLs: j.ClientURLs}, nil
}
