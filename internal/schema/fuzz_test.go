package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false,
	"rewrite the seed-* files of testdata/fuzz/Fuzz* from the tables of known bytes")

// seedCorpus returns the seeds of every fuzz target: the known bytes and the
// error cases of the table tests, keyed by target and then by file name.
// Each seed is the list of the target's arguments.
func seedCorpus(t testing.TB) map[string]map[string][][]byte {
	c := map[string]map[string][][]byte{}
	add := func(target, name string, args ...[]byte) {
		if c[target] == nil {
			c[target] = map[string][][]byte{}
		}
		name = "seed-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(name))
		c[target][name] = args
	}
	for i, k := range [][]byte{
		AppendRevisionKey(nil, Revision{Main: 1}),
		AppendTombstoneKey(nil, Revision{Main: 5, Sub: 2}),
		append(AppendRevisionKey(nil, Revision{Main: 3}), 'x'),
		AppendRevisionKey(nil, Revision{Main: -1}),
		[]byte("0123456789abcdef"),
	} {
		add("FuzzRevisionKey", fmt.Sprint("key-", i), k)
	}
	for _, tc := range kvCases {
		add("FuzzKeyValue", tc.name, mustHex(t, tc.hex))
	}
	for _, tc := range kvErrorCases {
		add("FuzzKeyValue", "error-"+tc.name, mustHex(t, tc.hex))
	}
	add("FuzzKeyValue", "unknown-group", mustHex(t, "4b0801"+"5b0a005c"+"4c"+"3007"))
	for i, h := range []string{"08819ee9e1b2c3dfa669103c1811", "08ffffffffffffffffff011005", "1001" + "4200" + "1802", "08"} {
		add("FuzzLease", fmt.Sprint("lease-", i), mustHex(t, h))
	}
	for _, tc := range userCases {
		add("FuzzUser", tc.name, mustHex(t, tc.hex))
	}
	add("FuzzUser", "options-merged", mustHex(t, "22020801"+"2200"))
	add("FuzzUser", "bad-utf8-role", mustHex(t, "1a02c328"))
	for _, tc := range roleCases {
		add("FuzzRole", tc.name, mustHex(t, tc.hex))
	}
	add("FuzzRole", "truncated-permission", mustHex(t, "0a0172"+"1204"+"1a056162"))
	for i, h := range []string{"08cdd2918bd2b881cf8e011001", "08011002", "10ffffffffffffffffff01", "108180808010"} {
		add("FuzzAlarmMember", fmt.Sprint("alarm-", i), mustHex(t, h))
	}
	for i, m := range []Member{
		{ID: 0x8e9e05c52164694d, PeerURLs: []string{"http://127.0.0.1:2380"}, Name: "infra1", ClientURLs: []string{"http://127.0.0.1:2379"}},
		{ID: 1, PeerURLs: []string{"http://a<b>&c"}, IsLearner: true},
		{ID: 2},
	} {
		add("FuzzMember", fmt.Sprint("member-", i), AppendMemberKey(nil, m.ID), AppendMember(nil, &m))
	}
	add("FuzzMember", "case-insensitive", []byte("1"), []byte(`{"ID":5,"PEERURLS":["x"],"extra":{"a":[1]},"Name":"n"}`))
	add("FuzzMember", "null", []byte("1"), []byte(" null"))
	for i, cs := range []ConfState{{Voters: []uint64{1, 2}}, {Voters: []uint64{1}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{3}, AutoLeave: true}} {
		add("FuzzConfState", fmt.Sprint("confstate-", i), AppendConfState(nil, &cs))
	}
	add("FuzzConfState", "auto-leave-null", []byte(`{"voters":[2],"auto_leave":null}`))
	add("FuzzDowngradeInfo", "enabled", AppendDowngradeInfo(nil, &DowngradeInfo{TargetVersion: "3.6.0", Enabled: true}))
	add("FuzzDowngradeInfo", "disabled", AppendDowngradeInfo(nil, &DowngradeInfo{}))
	add("FuzzDowngradeInfo", "bad-target", []byte(`{"target-version":"3.6","enabled":true}`))
	for i, v := range []string{"3.7.0", "03.7.0", "3.7.0-rc.0+git.1", "3.7.0-", "3.7", "3.7.0-a..b", "9223372036854775808.0.0"} {
		add("FuzzVersion", fmt.Sprint("version-", i), []byte(v))
	}
	for i, v := range [][]byte{AppendUint64(nil, 7), AppendCompactRev(nil, 42), {1}, {0}, []byte("8e9e05c52164694d"), []byte("0A"), {}} {
		add("FuzzFixedValues", fmt.Sprint("value-", i), v)
	}
	return c
}

func marshalCorpusEntry(args [][]byte) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		b = fmt.Appendf(b, "[]byte(%q)\n", a)
	}
	return b
}

func parseCorpusEntry(data []byte) ([][]byte, error) {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a go test fuzz v1 file")
	}
	var args [][]byte
	for _, arg := range lines[1:] {
		if !strings.HasPrefix(arg, "[]byte(") || !strings.HasSuffix(arg, ")") {
			return nil, fmt.Errorf("value %q is not []byte(...)", arg)
		}
		s, err := strconv.Unquote(arg[len("[]byte(") : len(arg)-1])
		if err != nil {
			return nil, err
		}
		args = append(args, []byte(s))
	}
	return args, nil
}

// TestFuzzCorpus checks that testdata/fuzz holds the seeds of seedCorpus:
// the known bytes of the table tests, a second copy of the golden vectors
// that go test replays through the fuzz targets. Run with -update-corpus to
// rewrite it.
func TestFuzzCorpus(t *testing.T) {
	for target, seeds := range seedCorpus(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, args := range seeds {
				if err := os.WriteFile(filepath.Join(dir, name), marshalCorpusEntry(args), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, ent := range entries {
			data, err := os.ReadFile(filepath.Join(dir, ent.Name()))
			if err != nil {
				t.Fatal(err)
			}
			args, err := parseCorpusEntry(data)
			if err != nil {
				t.Errorf("%s/%s: %v", target, ent.Name(), err)
				continue
			}
			if !strings.HasPrefix(ent.Name(), "seed-") {
				continue // an input the fuzzer found; the target replays it
			}
			found[ent.Name()] = true
			want, ok := seeds[ent.Name()]
			if !ok {
				t.Errorf("%s/%s: no table case of that name; run go test -run TestFuzzCorpus -update-corpus", target, ent.Name())
			} else if !reflect.DeepEqual(args, want) {
				t.Errorf("%s/%s holds %q, the table now gives %q: the format changed, or run go test -run TestFuzzCorpus -update-corpus", target, ent.Name(), args, want)
			}
		}
		for name := range seeds {
			if !found[name] {
				t.Errorf("%s lacks %s; run go test -run TestFuzzCorpus -update-corpus", target, name)
			}
		}
	}
}

func addSeeds(f *testing.F, target string) {
	for _, args := range seedCorpus(f)[target] {
		vals := make([]any, len(args))
		for i, a := range args {
			vals[i] = a
		}
		f.Add(vals...)
	}
}

// checkDecodeError asserts the contract of every decoder's error.
func checkDecodeError(t *testing.T, err error, typ string, inLen int) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrOverflow) && !errors.Is(err, ErrWireType) && !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v is of no known kind", err)
	}
	if !strings.HasPrefix(de.Type, typ) || !strings.HasPrefix(err.Error(), "schema: decode "+typ) {
		t.Fatalf("error %q is not about %s", err, typ)
	}
	if de.Offset < 0 || de.Offset > inLen {
		t.Fatalf("error offset %d outside the %d-byte input", de.Offset, inLen)
	}
}

func FuzzRevisionKey(f *testing.F) {
	addSeeds(f, "FuzzRevisionKey")
	f.Fuzz(func(t *testing.T, in []byte) {
		rev, tomb, err := ParseRevisionKey(in)
		if err != nil {
			checkDecodeError(t, err, "revision key", len(in))
			if rev != (Revision{}) || tomb {
				t.Fatalf("values with an error: %+v %v", rev, tomb)
			}
			return
		}
		if tomb != IsTombstoneKey(in) {
			t.Fatalf("tombstone %v, IsTombstoneKey %v", tomb, !tomb)
		}
		enc := AppendRevisionKey(nil, rev)
		if tomb {
			enc = AppendTombstoneKey(nil, rev)
		}
		if !bytes.Equal(enc, in) {
			t.Fatalf("%x parses as %+v, which encodes as %x", in, rev, enc)
		}
	})
}

func FuzzKeyValue(f *testing.F) {
	addSeeds(f, "FuzzKeyValue")
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := bytes.Clone(in)
		var cp, alias KeyValue
		var h KeyValueHeader
		err := DecodeKeyValue(buf, &cp)
		errAlias := DecodeKeyValueNoCopy(buf, &alias)
		errHeader := DecodeKeyValueHeader(buf, &h)
		if !bytes.Equal(buf, in) {
			t.Fatal("a decoder modified its input")
		}
		if fmt.Sprint(err) != fmt.Sprint(errAlias) || fmt.Sprint(err) != fmt.Sprint(errHeader) {
			t.Fatalf("decoders disagree: %v / %v / %v", err, errAlias, errHeader)
		}
		if err != nil {
			checkDecodeError(t, err, "KeyValue", len(in))
			if !reflect.DeepEqual(cp, KeyValue{}) || !reflect.DeepEqual(alias, KeyValue{}) || !reflect.DeepEqual(h, KeyValueHeader{}) {
				t.Fatal("values with an error")
			}
			return
		}
		if !kvEqual(&cp, &alias) || !bytes.Equal(h.Key, cp.Key) || h.CreateRevision != cp.CreateRevision ||
			h.ModRevision != cp.ModRevision || h.Version != cp.Version || h.Lease != cp.Lease {
			t.Fatalf("decoders disagree: %+v / %+v / %+v", cp, alias, h)
		}
		want := KeyValue{Key: bytes.Clone(cp.Key), Value: bytes.Clone(cp.Value), CreateRevision: cp.CreateRevision,
			ModRevision: cp.ModRevision, Version: cp.Version, Lease: cp.Lease}
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !kvEqual(&cp, &want) {
			t.Fatal("DecodeKeyValue aliases its input")
		}
		enc := AppendKeyValue(nil, &cp)
		if len(enc) != SizeKeyValue(&cp) || len(enc) > len(in) {
			t.Fatalf("encoding of %d bytes, SizeKeyValue %d, input %d", len(enc), SizeKeyValue(&cp), len(in))
		}
		var back KeyValue
		if err := DecodeKeyValue(enc, &back); err != nil || !kvEqual(&back, &cp) {
			t.Fatalf("re-encoding %x decodes as %+v, %v; want %+v", enc, back, err, cp)
		}
		if again := AppendKeyValue(nil, &back); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not canonical: %x then %x", enc, again)
		}
	})
}

func FuzzLease(f *testing.F) {
	addSeeds(f, "FuzzLease")
	f.Fuzz(func(t *testing.T, in []byte) {
		var l Lease
		if err := DecodeLease(in, &l); err != nil {
			checkDecodeError(t, err, "Lease", len(in))
			if l != (Lease{}) {
				t.Fatal("values with an error")
			}
			return
		}
		enc := AppendLease(nil, &l)
		var back Lease
		if err := DecodeLease(enc, &back); err != nil || back != l || len(enc) != SizeLease(&l) || len(enc) > len(in) {
			t.Fatalf("re-encoding %x of %+v decodes as %+v, %v", enc, l, back, err)
		}
	})
}

func FuzzAlarmMember(f *testing.F) {
	addSeeds(f, "FuzzAlarmMember")
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := DecodeAlarmMember(in)
		if err != nil {
			checkDecodeError(t, err, "AlarmMember", len(in))
			if a != (AlarmMember{}) {
				t.Fatal("values with an error")
			}
			return
		}
		enc := AppendAlarmMember(nil, a)
		back, err := DecodeAlarmMember(enc)
		if err != nil || back != a || len(enc) != SizeAlarmMember(a) {
			t.Fatalf("re-encoding %x of %+v decodes as %+v, %v", enc, a, back, err)
		}
	})
}

func FuzzUser(f *testing.F) {
	addSeeds(f, "FuzzUser")
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := bytes.Clone(in)
		var u User
		if err := DecodeUser(buf, &u); err != nil {
			checkDecodeError(t, err, "User", len(in))
			if !reflect.DeepEqual(u, User{}) {
				t.Fatal("values with an error")
			}
			return
		}
		want := User{Name: bytes.Clone(u.Name), Password: bytes.Clone(u.Password), Roles: slices.Clone(u.Roles), Options: u.Options}
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !userEqual(&u, &want) {
			t.Fatal("DecodeUser aliases its input")
		}
		enc, err := AppendUser(nil, &u)
		if err != nil {
			t.Fatalf("a decoded user does not encode: %v", err)
		}
		var back User
		if err := DecodeUser(enc, &back); err != nil || !userEqual(&back, &u) || len(enc) != SizeUser(&u) {
			t.Fatalf("re-encoding %x of %+v decodes as %+v, %v", enc, u, back, err)
		}
	})
}

func FuzzRole(f *testing.F) {
	addSeeds(f, "FuzzRole")
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := bytes.Clone(in)
		var r Role
		if err := DecodeRole(buf, &r); err != nil {
			checkDecodeError(t, err, "Role", len(in))
			if !reflect.DeepEqual(r, Role{}) {
				t.Fatal("values with an error")
			}
			return
		}
		enc := AppendRole(nil, &r)
		for i := range buf {
			buf[i] ^= 0xff
		}
		if again := AppendRole(nil, &r); !bytes.Equal(again, enc) {
			t.Fatal("DecodeRole aliases its input")
		}
		var back Role
		if err := DecodeRole(enc, &back); err != nil || !roleEqual(&back, &r) || len(enc) != SizeRole(&r) {
			t.Fatalf("re-encoding %x of %+v decodes as %+v, %v", enc, r, back, err)
		}
	})
}

// FuzzMember checks DecodeMember against what etcd's readMembersFromBackend
// gets from encoding/json for the same record, and AppendMember against
// json.Marshal.
func FuzzMember(f *testing.F) {
	addSeeds(f, "FuzzMember")
	f.Fuzz(func(t *testing.T, key, value []byte) {
		var m Member
		err := DecodeMember(key, value, &m)
		id, keyErr := strconv.ParseUint(string(key), 16, 64)
		var em *etcdMember
		var jsonErr error
		if keyErr == nil {
			em = &etcdMember{ID: id}
			jsonErr = json.Unmarshal(value, &em)
		}
		if err != nil {
			checkDecodeError(t, err, "member", len(value))
			if !reflect.DeepEqual(m, Member{}) {
				t.Fatal("values with an error")
			}
			// Refused only where etcd fails too, or would keep a nil member.
			if keyErr == nil && jsonErr == nil && em != nil {
				t.Fatalf("refused %q = %q, which etcd reads as %+v: %v", key, value, em, err)
			}
			return
		}
		if keyErr != nil || jsonErr != nil || em == nil {
			t.Fatalf("accepted %q = %q, which etcd refuses: %v %v", key, value, keyErr, jsonErr)
		}
		if !memberEqual(&m, &Member{ID: em.ID, PeerURLs: em.PeerURLs, IsLearner: em.IsLearner, Name: em.Name, ClientURLs: em.ClientURLs}) {
			t.Fatalf("decoded %+v, etcd reads %+v", m, em)
		}
		if got, want := string(AppendMember(nil, &m)), mustJSON(t, toEtcdMember(&m)); got != want {
			t.Fatalf("AppendMember = %s, json.Marshal = %s", got, want)
		}
	})
}

func FuzzConfState(f *testing.F) {
	addSeeds(f, "FuzzConfState")
	f.Fuzz(func(t *testing.T, in []byte) {
		var cs ConfState
		err := DecodeConfState(in, &cs)
		var ec etcdConfState
		jsonErr := json.Unmarshal(in, &ec)
		if err != nil {
			checkDecodeError(t, err, "confState", len(in))
			if jsonErr == nil && !bytes.Equal(bytes.Trim(in, " \t\r\n"), []byte("null")) {
				t.Fatalf("refused %q, which encoding/json reads: %v", in, err)
			}
			return
		}
		if jsonErr != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", in, jsonErr)
		}
		if !reflect.DeepEqual(cs.Voters, ec.Voters) || !reflect.DeepEqual(cs.Learners, ec.Learners) ||
			!reflect.DeepEqual(cs.VotersOutgoing, ec.VotersOutgoing) || !reflect.DeepEqual(cs.LearnersNext, ec.LearnersNext) ||
			cs.AutoLeave != (ec.AutoLeave != nil && *ec.AutoLeave) {
			t.Fatalf("decoded %+v, encoding/json %+v", cs, ec)
		}
		al := cs.AutoLeave
		if got, want := string(AppendConfState(nil, &cs)), mustJSON(t, &etcdConfState{cs.Voters, cs.Learners, cs.VotersOutgoing, cs.LearnersNext, &al}); got != want {
			t.Fatalf("AppendConfState = %s, json.Marshal = %s", got, want)
		}
	})
}

func FuzzDowngradeInfo(f *testing.F) {
	addSeeds(f, "FuzzDowngradeInfo")
	f.Fuzz(func(t *testing.T, in []byte) {
		var d DowngradeInfo
		err := DecodeDowngradeInfo(in, &d)
		var ed etcdDowngradeInfo
		jsonErr := json.Unmarshal(in, &ed)
		if err != nil {
			checkDecodeError(t, err, "downgrade JSON", len(in))
			if d != (DowngradeInfo{}) {
				t.Fatal("values with an error")
			}
			if jsonErr == nil && !bytes.Equal(bytes.Trim(in, " \t\r\n"), []byte("null")) {
				if _, verr := ParseVersion([]byte(ed.TargetVersion)); !ed.Enabled || verr == nil {
					t.Fatalf("refused %q, which etcd reads as %+v: %v", in, ed, err)
				}
			}
			return
		}
		if jsonErr != nil || d != DowngradeInfo(ed) {
			t.Fatalf("decoded %+v, encoding/json %+v, %v", d, ed, jsonErr)
		}
		if got, want := string(AppendDowngradeInfo(nil, &d)), mustJSON(t, ed); got != want {
			t.Fatalf("AppendDowngradeInfo = %s, json.Marshal = %s", got, want)
		}
	})
}

func FuzzVersion(f *testing.F) {
	addSeeds(f, "FuzzVersion")
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := ParseVersion(in)
		if err != nil {
			checkDecodeError(t, err, "version", len(in))
			if v != (Version{}) {
				t.Fatal("values with an error")
			}
			return
		}
		if v.Major < 0 || v.Minor < 0 || v.Patch < 0 {
			t.Fatalf("negative part in %+v from %q", v, in)
		}
		back, err := ParseVersion([]byte(v.String()))
		if err != nil || back != v {
			t.Fatalf("%q parses as %+v, whose String %q parses as %+v, %v", in, v, v.String(), back, err)
		}
	})
}

// FuzzFixedValues runs the fixed-size and text decoders of meta, auth,
// lease and member keys: each either refuses the input or gives a value that
// encodes back to it (member keys: to its canonical form).
func FuzzFixedValues(f *testing.F) {
	addSeeds(f, "FuzzFixedValues")
	f.Fuzz(func(t *testing.T, in []byte) {
		if v, err := DecodeConsistentIndex(in); err != nil {
			checkDecodeError(t, err, "consistent_index", len(in))
		} else if !bytes.Equal(AppendUint64(nil, v), in) {
			t.Fatalf("uint64 %x -> %d", in, v)
		}
		if rev, err := DecodeCompactRev(in); err != nil {
			checkDecodeError(t, err, "compact revision", len(in))
		} else if !bytes.Equal(AppendCompactRev(nil, rev), in) {
			t.Fatalf("compact rev %x -> %d", in, rev)
		}
		if on, err := DecodeAuthEnabled(in); err != nil {
			checkDecodeError(t, err, "authEnabled", len(in))
		} else if !bytes.Equal(AppendAuthEnabled(nil, on), in) {
			t.Fatalf("authEnabled %x -> %v", in, on)
		}
		if id, err := ParseLeaseKey(in); err != nil {
			checkDecodeError(t, err, "lease key", len(in))
		} else if !bytes.Equal(AppendLeaseKey(nil, id), in) {
			t.Fatalf("lease key %x -> %d", in, id)
		}
		if id, err := ParseMemberKey(in); err != nil {
			checkDecodeError(t, err, "member key", len(in))
		} else if back, err := ParseMemberKey(AppendMemberKey(nil, id)); err != nil || back != id {
			t.Fatalf("member key %q -> %d -> %q", in, id, AppendMemberKey(nil, id))
		}
	})
}
