package accord

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// Gossip tags arrive from other nodes; parseMemberTags decides which of
// them make a member of this cluster.

// tagMagicByte is serf's tagMagicByte: the first byte of tags encoded as
// msgpack (serf protocol 3 and later).
const tagMagicByte = 255

// encodeGossipTags encodes tags as serf's encodeTags does.
func encodeGossipTags(t testing.TB, tags map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(tagMagicByte)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(tags); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decodeGossipTags decodes tags as serf's decodeTags does: without the
// magic byte the whole buffer is the role (serf protocol 2), and a decode
// error leaves what was decoded so far.
func decodeGossipTags(buf []byte) map[string]string {
	tags := make(map[string]string)
	if len(buf) == 0 || buf[0] != tagMagicByte {
		tags["role"] = string(buf)
		return tags
	}
	_ = codec.NewDecoder(bytes.NewReader(buf[1:]), &codec.MsgpackHandle{}).Decode(&tags)
	return tags
}

// seedTags are well-formed tags, as gossipTags makes them for some Options.
func seedTags() []memberTags {
	return []memberTags{
		{id: "n1", name: "n1", raft: "127.0.0.1:7001", role: roleVoter, version: ReleaseVersion, cluster: defaultClusterName},
		{id: "3f2a9c1d00e4b7a8", name: "node one", raft: "[::1]:2380", role: roleNonvoter, version: "0.1.0", cluster: "prod-eu.1"},
		{id: "a", name: "", raft: "db-1.internal:65535", role: "", version: "0.3.0-rc.1+build.5", cluster: "c"},
		{id: "n_2", name: "nœud", raft: "10.0.0.2:1", role: roleVoter, version: "999999.0.12", cluster: "x_y"},
		{id: "n3", name: "n3", raft: "[fe80::1%eth0]:7001", role: roleVoter, version: "1", cluster: "accord"},
	}
}

func TestParseMemberTags(t *testing.T) {
	for _, want := range seedTags() {
		got, err := parseMemberTags(want.id, decodeGossipTags(encodeGossipTags(t, want.encode())))
		if err != nil || got != want {
			t.Errorf("parseMemberTags(%+v) = %+v, %v", want, got, err)
		}
	}
	o, err := (&Options{PeerAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", NodeName: "n"}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseMemberTags("id1", gossipTags(&o, "id1", "127.0.0.1:4001")); err != nil {
		t.Errorf("tags of default Options: %v", err)
	}

	good := seedTags()[0]
	for _, tc := range []struct {
		name   string
		mutate func(m map[string]string)
	}{
		{"id differs from name", func(m map[string]string) { m[tagID] = "n2" }},
		{"no id", func(m map[string]string) { delete(m, tagID) }},
		{"no raft", func(m map[string]string) { delete(m, tagRaft) }},
		{"raft without port", func(m map[string]string) { m[tagRaft] = "127.0.0.1" }},
		{"raft port 0", func(m map[string]string) { m[tagRaft] = "127.0.0.1:0" }},
		{"raft port 65536", func(m map[string]string) { m[tagRaft] = "127.0.0.1:65536" }},
		{"raft named port", func(m map[string]string) { m[tagRaft] = "127.0.0.1:raft" }},
		{"raft port with sign", func(m map[string]string) { m[tagRaft] = "127.0.0.1:+80" }},
		{"raft port with leading zero", func(m map[string]string) { m[tagRaft] = "127.0.0.1:080" }},
		{"raft without host", func(m map[string]string) { m[tagRaft] = ":7001" }},
		{"raft host with space", func(m map[string]string) { m[tagRaft] = "a b:7001" }},
		{"raft bracketed name", func(m map[string]string) { m[tagRaft] = "[db]:7001" }},
		{"raft unspecified IPv4", func(m map[string]string) { m[tagRaft] = "0.0.0.0:7001" }},
		{"raft unspecified IPv6", func(m map[string]string) { m[tagRaft] = "[::]:7001" }},
		{"raft zone with newline", func(m map[string]string) { m[tagRaft] = "[fe80::1%a\nb]:7001" }},
		{"no version", func(m map[string]string) { delete(m, tagVersion) }},
		{"version with v", func(m map[string]string) { m[tagVersion] = "v0.2.0" }},
		{"version with empty part", func(m map[string]string) { m[tagVersion] = "0..2" }},
		{"version ends in dot", func(m map[string]string) { m[tagVersion] = "0.2." }},
		{"version part too long", func(m map[string]string) { m[tagVersion] = "0.1048576" }},
		{"version empty suffix", func(m map[string]string) { m[tagVersion] = "0.2.0-" }},
		{"version suffix with space", func(m map[string]string) { m[tagVersion] = "0.2.0-rc 1" }},
		{"unknown role", func(m map[string]string) { m[tagRole] = "leader" }},
		{"no cluster", func(m map[string]string) { delete(m, tagCluster) }},
		{"cluster with slash", func(m map[string]string) { m[tagCluster] = "a/b" }},
		{"name with newline", func(m map[string]string) { m[tagName] = "a\nb" }},
		{"name not UTF-8", func(m map[string]string) { m[tagName] = "\xff" }},
		{"name too long", func(m map[string]string) { m[tagName] = strings.Repeat("x", 129) }},
		{"too large", func(m map[string]string) { m["extra"] = strings.Repeat("x", memberlist.MetaMaxSize) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good.encode()
			tc.mutate(m)
			if got, err := parseMemberTags(good.id, m); err == nil {
				t.Errorf("parseMemberTags(%q) = %+v, want an error", m, got)
			}
		})
	}
	if _, err := parseMemberTags("", map[string]string{tagID: ""}); err == nil {
		t.Error("empty member name accepted")
	}
	m := good.encode()
	m["future"] = "tag"
	if got, err := parseMemberTags(good.id, m); err != nil || got != good {
		t.Errorf("an unknown tag: got %+v, %v; want it ignored", got, err)
	}
}

// TestOpenRejectsUnparsableOwnTags: a node whose tags the others would
// ignore fails Open instead of staying invisible.
func TestOpenRejectsUnparsableOwnTags(t *testing.T) {
	for _, o := range []Options{
		{PeerAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", Version: "v0.3.0"},
		{PeerAddr: "127.0.0.1:0", AdvertisePeerAddr: "db-1:raft", GossipAddr: "127.0.0.1:0"},
	} {
		s, err := Open(t.TempDir(), &o)
		if err == nil {
			s.Close()
			t.Errorf("Open with Version %q, AdvertisePeerAddr %q succeeded", o.Version, o.AdvertisePeerAddr)
		} else if !strings.Contains(err.Error(), "gossip tags") {
			t.Errorf("Open with Version %q, AdvertisePeerAddr %q: %v", o.Version, o.AdvertisePeerAddr, err)
		}
	}
}

// FuzzGossipTags feeds parseMemberTags a member name and tags as they come
// off the wire. Whatever it accepts must hold up where the tags are used:
// the raft address dials, the version compares exactly, and the tags
// re-encode within serf's limit and parse back the same.
func FuzzGossipTags(f *testing.F) {
	for _, mt := range seedTags() {
		f.Add(mt.id, encodeGossipTags(f, mt.encode()))
	}
	f.Add("n1", []byte(roleVoter)) // serf protocol 2: the role alone
	f.Add("n1", []byte{tagMagicByte})
	f.Add("n1", []byte{tagMagicByte, 0x86, 0xa2, 'i', 'd'}) // truncated
	bad := seedTags()[0].encode()
	bad[tagRaft] = "127.0.0.1:0"
	f.Add("n1", encodeGossipTags(f, bad))
	bad = seedTags()[0].encode()
	bad[tagVersion] = "0.1048576.0"
	f.Add("n1", encodeGossipTags(f, bad))

	f.Fuzz(func(t *testing.T, name string, meta []byte) {
		tags := decodeGossipTags(meta)
		mt, err := parseMemberTags(name, tags)
		if err != nil {
			if mt != (memberTags{}) {
				t.Fatalf("error %v with tags %+v", err, mt)
			}
			return
		}
		if mt.id != name || name == "" {
			t.Fatalf("id %q for member %q", mt.id, name)
		}
		if !validName(mt.cluster) {
			t.Fatalf("cluster %q", mt.cluster)
		}
		if mt.role != roleVoter && mt.role != roleNonvoter && mt.role != "" {
			t.Fatalf("role %q", mt.role)
		}
		host, port, err := net.SplitHostPort(mt.raft)
		if err != nil || host == "" || net.JoinHostPort(host, port) != mt.raft {
			t.Fatalf("raft address %q: host %q, %v", mt.raft, host, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			t.Fatalf("raft address %q: port %q", mt.raft, port)
		}
		// versionParts reads every number exactly, and the suffix not at all.
		numeric, _, _ := strings.Cut(strings.SplitN(mt.version, "+", 2)[0], "-")
		var want []int
		for _, s := range strings.Split(numeric, ".") {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				t.Fatalf("version %q: part %q", mt.version, s)
			}
			want = append(want, n)
		}
		if got := versionParts(mt.version); !slices.Equal(got, want) {
			t.Fatalf("version %q: versionParts %v, want %v", mt.version, got, want)
		}
		if compareVersions(mt.version, numeric) != 0 || compareVersions(mt.version, numeric+".1") >= 0 {
			t.Fatalf("version %q does not compare as %q", mt.version, numeric)
		}

		enc := encodeGossipTags(t, mt.encode())
		if len(enc) > memberlist.MetaMaxSize {
			t.Fatalf("re-encoded tags take %d bytes", len(enc))
		}
		again, err := parseMemberTags(name, decodeGossipTags(enc))
		if err != nil || again != mt {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, mt)
		}
	})
}
