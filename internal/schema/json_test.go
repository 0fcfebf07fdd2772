package schema

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// The mirrors below have the Go field types and JSON tags of etcd's
// membership.Member (ID, then the embedded RaftAttributes and Attributes),
// version.DowngradeInfo and raft 3.7's raftpb.ConfState, which etcd
// marshals with encoding/json. The encoders must write what encoding/json
// writes for them.

type etcdMember struct {
	ID uint64 `json:"id"`
	etcdRaftAttributes
	etcdAttributes
}

type etcdRaftAttributes struct {
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner,omitempty"`
}

type etcdAttributes struct {
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
}

type etcdDowngradeInfo struct {
	TargetVersion string `json:"target-version"`
	Enabled       bool   `json:"enabled"`
}

type etcdConfState struct {
	Voters         []uint64 `json:"voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
	VotersOutgoing []uint64 `json:"voters_outgoing,omitempty"`
	LearnersNext   []uint64 `json:"learners_next,omitempty"`
	AutoLeave      *bool    `json:"auto_leave,omitempty"`
}

func toEtcdMember(m *Member) *etcdMember {
	return &etcdMember{ID: m.ID, etcdRaftAttributes: etcdRaftAttributes{PeerURLs: m.PeerURLs, IsLearner: m.IsLearner},
		etcdAttributes: etcdAttributes{Name: m.Name, ClientURLs: m.ClientURLs}}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// trickyStrings exercise every escape of encoding/json.
var trickyStrings = []string{
	"", "plain", `quote" backslash\ slash/`, "<script>&amp;</script>", "\b\f\n\r\t\x00\x01\x1f\x7f",
	"héllo wörld ✓ 🙂", "\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 beyond",
}

func TestMemberKnownBytes(t *testing.T) {
	for _, tc := range []struct {
		m    Member
		want string
	}{
		// Recorded from json.Marshal of etcd 3.7.3's membership.Member.
		{Member{ID: 0x8e9e05c52164694d, PeerURLs: []string{"http://127.0.0.1:2380"}, Name: "infra1", ClientURLs: []string{"http://127.0.0.1:2379"}},
			`{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"name":"infra1","clientURLs":["http://127.0.0.1:2379"]}`},
		{Member{ID: 1, PeerURLs: []string{"http://a<b>&c"}, IsLearner: true}, `{"id":1,"peerURLs":["http://a\u003cb\u003e\u0026c"],"isLearner":true}`},
		{Member{ID: 2}, `{"id":2,"peerURLs":null}`},
		{Member{ID: 3, PeerURLs: []string{}, ClientURLs: []string{}}, `{"id":3,"peerURLs":[]}`},
	} {
		if got := string(AppendMember(nil, &tc.m)); got != tc.want {
			t.Errorf("AppendMember(%+v) = %s, want %s", tc.m, got, tc.want)
		}
		var m Member
		key := AppendMemberKey(nil, tc.m.ID)
		if err := DecodeMember(key, []byte(tc.want), &m); err != nil {
			t.Fatal(err)
		}
		if !memberEqual(&m, &tc.m) {
			t.Errorf("DecodeMember(%s) = %+v, want %+v", tc.want, m, tc.m)
		}
	}
	if got := string(AppendMemberKey(nil, 0x8e9e05c52164694d)); got != "8e9e05c52164694d" {
		t.Errorf("member key = %q", got)
	}
	if got := string(AppendMemberKey(nil, 1)); got != "1" {
		t.Errorf("member key of 1 = %q", got)
	}
}

func memberEqual(a, b *Member) bool {
	norm := func(s []string) []string {
		if len(s) == 0 {
			return nil
		}
		return s
	}
	return a.ID == b.ID && a.IsLearner == b.IsLearner && a.Name == b.Name &&
		reflect.DeepEqual(norm(a.PeerURLs), norm(b.PeerURLs)) && reflect.DeepEqual(norm(a.ClientURLs), norm(b.ClientURLs))
}

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		if got, want := string(appendJSONString(nil, s)), mustJSON(t, s); got != want {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	}
	for _, s := range trickyStrings {
		check(s)
	}
	for c := range 256 {
		check(string([]byte{byte(c)}))
		check("a" + string([]byte{byte(c)}) + "b")
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
		check(string(b))
	}
	for r := rune(0x2000); r < 0x2100; r++ {
		check(string(r))
	}
}

func TestMemberMatchesEncodingJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	pick := func() string { return trickyStrings[rnd.IntN(len(trickyStrings))] }
	list := func() []string {
		switch rnd.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		l := make([]string, 1+rnd.IntN(3))
		for i := range l {
			l[i] = pick()
		}
		return l
	}
	for range 1000 {
		m := Member{ID: rnd.Uint64(), PeerURLs: list(), IsLearner: rnd.IntN(2) == 0, Name: pick(), ClientURLs: list()}
		got, want := string(AppendMember(nil, &m)), mustJSON(t, toEtcdMember(&m))
		if got != want {
			t.Fatalf("AppendMember(%+v) = %s, encoding/json writes %s", m, got, want)
		}
		// What etcd reads back is what our decoder reads back.
		var em etcdMember
		if err := json.Unmarshal([]byte(want), &em); err != nil {
			t.Fatal(err)
		}
		var dm Member
		if err := DecodeMember(AppendMemberKey(nil, m.ID), []byte(want), &dm); err != nil {
			t.Fatal(err)
		}
		if !memberEqual(&dm, &Member{ID: em.ID, PeerURLs: em.PeerURLs, IsLearner: em.IsLearner, Name: em.Name, ClientURLs: em.ClientURLs}) {
			t.Fatalf("decoded %+v, etcd decodes %+v", dm, em)
		}
	}
}

func TestDecodeMemberRules(t *testing.T) {
	for _, tc := range []struct {
		name, key, val string
		want           Member
	}{
		{"id from the key", "a", `{"peerURLs":["u"]}`, Member{ID: 10, PeerURLs: []string{"u"}}},
		{"id in the JSON wins", "a", `{"id":11}`, Member{ID: 11}},
		{"case-insensitive names, unknown fields", "1", `{"ID":5,"PEERURLS":["x"],"extra":{"a":[1]},"Name":"n"}`, Member{ID: 5, PeerURLs: []string{"x"}, Name: "n"}},
		{"old escapes", "1", `{"id":1,"name":"\u0008\u000c"}`, Member{ID: 1, Name: "\b\f"}},
		{"upper-case key", "8E9E05C52164694D", `{}`, Member{ID: 0x8e9e05c52164694d}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Member
			if err := DecodeMember([]byte(tc.key), []byte(tc.val), &m); err != nil {
				t.Fatal(err)
			}
			if !memberEqual(&m, &tc.want) {
				t.Fatalf("got %+v, want %+v", m, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, key, val string }{
		{"bad key", "xyz", `{}`},
		{"empty key", "", `{}`},
		{"key overflows", "10000000000000000", `{}`},
		{"0x prefix", "0x1", `{}`},
		{"null", "1", ` null `},
		{"not JSON", "1", `{`},
		{"array", "1", `[]`},
		{"trailing data", "1", `{}x`},
		{"id not a number", "1", `{"id":"1"}`},
		{"negative id", "1", `{"id":-1}`},
		{"empty", "1", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Member{ID: 9}
			err := DecodeMember([]byte(tc.key), []byte(tc.val), &m)
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "schema: decode member") {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !reflect.DeepEqual(m, Member{}) {
				t.Fatalf("m not zeroed: %+v", m)
			}
		})
	}
}

func TestConfStateJSON(t *testing.T) {
	for _, tc := range []struct {
		cs   ConfState
		want string
	}{
		// Recorded from json.Marshal of raft 3.7.0's raftpb.ConfState.
		{ConfState{Voters: []uint64{1, 0x8e9e05c52164694d}}, `{"voters":[1,10276657743932975437],"auto_leave":false}`},
		{ConfState{Voters: []uint64{1}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{3}, AutoLeave: true},
			`{"voters":[1],"learners":[4],"voters_outgoing":[1,2],"learners_next":[3],"auto_leave":true}`},
		{ConfState{Voters: []uint64{}}, `{"auto_leave":false}`},
	} {
		if got := string(AppendConfState(nil, &tc.cs)); got != tc.want {
			t.Errorf("AppendConfState(%+v) = %s, want %s", tc.cs, got, tc.want)
		}
		var cs ConfState
		if err := DecodeConfState([]byte(tc.want), &cs); err != nil {
			t.Fatal(err)
		}
		if got := string(AppendConfState(nil, &cs)); got != tc.want {
			t.Errorf("round trip of %s gives %s", tc.want, got)
		}
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	ids := func() []uint64 {
		l := make([]uint64, rnd.IntN(3))
		for i := range l {
			l[i] = rnd.Uint64() >> rnd.IntN(64)
		}
		return l
	}
	for range 500 {
		cs := ConfState{Voters: ids(), Learners: ids(), VotersOutgoing: ids(), LearnersNext: ids(), AutoLeave: rnd.IntN(2) == 0}
		al := cs.AutoLeave
		want := mustJSON(t, &etcdConfState{cs.Voters, cs.Learners, cs.VotersOutgoing, cs.LearnersNext, &al})
		if got := string(AppendConfState(nil, &cs)); got != want {
			t.Fatalf("AppendConfState(%+v) = %s, encoding/json writes %s", cs, got, want)
		}
	}
	// etcd 3.5 and 3.6 (gogo-generated raftpb) wrote the same names.
	var cs ConfState
	if err := DecodeConfState([]byte(`{"voters":[2],"learners":null,"auto_leave":false}`), &cs); err != nil || !reflect.DeepEqual(cs.Voters, []uint64{2}) {
		t.Fatalf("3.5 confState: %+v, %v", cs, err)
	}
	// etcd 3.7 without auto_leave: a configuration change replayed on
	// restart stores the ConfState rebuilt from the members bucket.
	cs = ConfState{AutoLeave: true}
	if err := DecodeConfState([]byte(`{"voters":[3,1]}`), &cs); err != nil || !reflect.DeepEqual(cs, ConfState{Voters: []uint64{3, 1}}) {
		t.Fatalf("confState without auto_leave: %+v, %v", cs, err)
	}
	for _, bad := range []string{``, `null`, `{"voters":[-1]}`, `{"voters":"1"}`, `{"auto_leave":1}`} {
		cs := ConfState{AutoLeave: true}
		if err := DecodeConfState([]byte(bad), &cs); !errors.Is(err, ErrInvalid) || !reflect.DeepEqual(cs, ConfState{}) {
			t.Errorf("DecodeConfState(%s) = %+v, %v", bad, cs, err)
		}
	}
}

func TestDowngradeInfoJSON(t *testing.T) {
	for _, tc := range []struct {
		d    DowngradeInfo
		want string
	}{
		{DowngradeInfo{TargetVersion: "3.6.0", Enabled: true}, `{"target-version":"3.6.0","enabled":true}`},
		{DowngradeInfo{}, `{"target-version":"","enabled":false}`},
	} {
		if got := string(AppendDowngradeInfo(nil, &tc.d)); got != tc.want {
			t.Errorf("AppendDowngradeInfo(%+v) = %s, want %s", tc.d, got, tc.want)
		}
		var d DowngradeInfo
		if err := DecodeDowngradeInfo([]byte(tc.want), &d); err != nil || d != tc.d {
			t.Errorf("DecodeDowngradeInfo(%s) = %+v, %v", tc.want, d, err)
		}
	}
	for _, s := range trickyStrings {
		d := DowngradeInfo{TargetVersion: s}
		if got, want := string(AppendDowngradeInfo(nil, &d)), mustJSON(t, etcdDowngradeInfo(d)); got != want {
			t.Errorf("AppendDowngradeInfo(%q) = %s, encoding/json writes %s", s, got, want)
		}
		if !utf8.ValidString(s) {
			continue
		}
		var back DowngradeInfo
		if err := DecodeDowngradeInfo(AppendDowngradeInfo(nil, &d), &back); err != nil || back != d {
			t.Errorf("round trip of %q: %+v, %v", s, back, err)
		}
	}
	// A disabled downgrade may carry anything; an enabled one needs a
	// version etcd can parse.
	var d DowngradeInfo
	if err := DecodeDowngradeInfo([]byte(`{"target-version":"junk","enabled":false}`), &d); err != nil {
		t.Errorf("disabled downgrade with a junk target: %v", err)
	}
	for _, bad := range []string{`{"target-version":"3.6","enabled":true}`, `{"enabled":true}`, `{"enabled":"yes"}`, `x`} {
		if err := DecodeDowngradeInfo([]byte(bad), &d); !errors.Is(err, ErrInvalid) || d != (DowngradeInfo{}) {
			t.Errorf("DecodeDowngradeInfo(%s) = %+v, %v", bad, d, err)
		}
	}
}
