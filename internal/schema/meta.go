package schema

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"
)

// Values of the "meta" bucket (schema/cindex.go, confstate.go, version.go;
// mvcc/store.go).

// Uint64Len is the length of the 8-byte big-endian integers etcd stores:
// consistent_index, term, authRevision.
const Uint64Len = 8

// AppendUint64 appends v as 8 bytes big-endian: the encoding of
// MetaConsistentIndexKey, MetaTermKey and AuthRevisionKey.
func AppendUint64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

// DecodeConsistentIndex decodes the value of MetaConsistentIndexKey or
// MetaTermKey. A value that is not 8 bytes is a *DecodeError (ErrInvalid):
// etcd's UnsafeReadConsistentIndex panics on a shorter one and ignores the
// bytes of a longer one after the eighth.
func DecodeConsistentIndex(b []byte) (uint64, error) { return decodeUint64("consistent_index", b) }

// DecodeTerm decodes the value of MetaTermKey, as DecodeConsistentIndex.
func DecodeTerm(b []byte) (uint64, error) { return decodeUint64("term", b) }

func decodeUint64(typ string, b []byte) (uint64, error) {
	if len(b) != Uint64Len {
		return 0, decodeErr(typ, 0, 0, ErrInvalid, "length %d, want %d", len(b), Uint64Len)
	}
	return binary.BigEndian.Uint64(b), nil
}

// AppendCompactRev appends the value etcd stores under
// MetaScheduledCompactKey and MetaFinishedCompactKey: the revision key of
// {Main: rev, Sub: 0} (mvcc/store.go, UnsafeSetScheduledCompact).
func AppendCompactRev(dst []byte, rev int64) []byte {
	return AppendRevisionKey(dst, Revision{Main: rev})
}

// DecodeCompactRev decodes the value of MetaScheduledCompactKey or
// MetaFinishedCompactKey and returns its main revision. It must be a 17-byte
// revision key with Sub 0, as etcd writes it; etcd reads it with BytesToRev
// and keeps only Main, so it would also take an 18-byte key or a Sub other
// than 0, and panics on anything else. The error is a *DecodeError.
func DecodeCompactRev(b []byte) (int64, error) {
	if len(b) != RevisionKeyLen {
		return 0, decodeErr("compact revision", 0, 0, ErrInvalid, "length %d, want %d", len(b), RevisionKeyLen)
	}
	r, _, err := ParseRevisionKey(b)
	if err != nil {
		de := *(err.(*DecodeError))
		de.Type = "compact revision"
		return 0, &de
	}
	if r.Sub != 0 {
		return 0, decodeErr("compact revision", 0, 9, ErrInvalid, "sub revision %d, want 0", r.Sub)
	}
	return r.Main, nil
}

// Version is a semantic version as github.com/coreos/go-semver parses and
// prints it, which is what etcd stores as MetaStorageVersionKey and
// ClusterVersionKey, and as the target of a downgrade.
type Version struct {
	Major, Minor, Patch int64
	PreRelease          string
	Metadata            string
}

// String returns v as go-semver's Version.String does: "3.7.0", with
// "-pre" and "+meta" when set.
func (v Version) String() string { return string(AppendVersion(nil, v)) }

// AppendVersion appends v.String() to dst.
func AppendVersion(dst []byte, v Version) []byte {
	dst = strconv.AppendInt(dst, v.Major, 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, v.Minor, 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, v.Patch, 10)
	if v.PreRelease != "" {
		dst = append(append(dst, '-'), v.PreRelease...)
	}
	if v.Metadata != "" {
		dst = append(append(dst, '+'), v.Metadata...)
	}
	return dst
}

// AppendStorageVersion appends the value etcd stores under
// MetaStorageVersionKey: the major and minor version with patch 0, such as
// "3.7.0" (schema/version.go, UnsafeSetStorageVersion).
func AppendStorageVersion(dst []byte, major, minor int64) []byte {
	return AppendVersion(dst, Version{Major: major, Minor: minor})
}

// semverIdentifier is go-semver's check of pre-release and metadata.
var semverIdentifier = regexp.MustCompile(`^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$`)

// ParseVersion parses a version as go-semver's NewVersion does, so that it
// accepts exactly the values etcd accepts: "M.m.p", then an optional
// "-pre-release", then an optional "+metadata". The error is a *DecodeError
// (ErrInvalid).
//
// etcd treats an unparsable storageVersion as absent (and then falls back
// to the term to guess 3.5), an unparsable clusterVersion as fatal.
func ParseVersion(b []byte) (Version, error) {
	s := string(b)
	fail := func(format string, args ...any) (Version, error) {
		return Version{}, decodeErr("version", 0, 0, ErrInvalid, "%q: "+format, append([]any{s}, args...)...)
	}
	var v Version
	rest := s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		rest, v.Metadata = rest[:i], rest[i+1:]
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		rest, v.PreRelease = rest[:i], rest[i+1:]
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return fail("not in dotted-tri format")
	}
	for _, id := range []string{v.PreRelease, v.Metadata} {
		if id != "" && !semverIdentifier.MatchString(id) {
			return fail("%q is not a valid semver identifier", id)
		}
	}
	nums := [3]*int64{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return fail("%v", err)
		}
		*nums[i] = n
	}
	return v, nil
}

// ConfState is raftpb.ConfState as etcd stores it under MetaConfStateKey:
// JSON, written by MustUnsafeSaveConfStateToBackend whenever a
// configuration change is applied. etcd 3.7 never reads it back (its
// bootstrap rebuilds the configuration from the "members" bucket).
type ConfState struct {
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	LearnersNext   []uint64
	AutoLeave      bool
}

// AppendConfState appends cs as etcd 3.7 writes it after applying a
// configuration change: json.Marshal of the raftpb.ConfState that raft's
// ProgressTracker.ConfState returns, whose list fields are omitted when empty
// and whose auto_leave (a *bool, set there) is present, such as
// {"voters":[1,2],"auto_leave":false}. etcd also writes the form without
// auto_leave: on a restart, a configuration change replayed from the WAL at
// or below consistent_index stores the ConfState etcd rebuilt from the
// "members" bucket, which leaves auto_leave nil (etcdserver/bootstrap.go,
// buildConfStateFromV3store). DecodeConfState reads both.
func AppendConfState(dst []byte, cs *ConfState) []byte {
	dst = append(dst, '{')
	for _, f := range [...]struct {
		name string
		vs   []uint64
	}{
		{`"voters":`, cs.Voters},
		{`"learners":`, cs.Learners},
		{`"voters_outgoing":`, cs.VotersOutgoing},
		{`"learners_next":`, cs.LearnersNext},
	} {
		if len(f.vs) > 0 {
			dst = append(dst, f.name...)
			dst = append(appendJSONUints(dst, f.vs), ',')
		}
	}
	dst = append(dst, `"auto_leave":`...)
	dst = strconv.AppendBool(dst, cs.AutoLeave)
	return append(dst, '}')
}

// confStateJSON has the field names of raftpb.ConfState's JSON.
type confStateJSON struct {
	Voters         []uint64 `json:"voters"`
	Learners       []uint64 `json:"learners"`
	VotersOutgoing []uint64 `json:"voters_outgoing"`
	LearnersNext   []uint64 `json:"learners_next"`
	AutoLeave      bool     `json:"auto_leave"`
}

// DecodeConfState decodes the value of MetaConfStateKey, as written by etcd
// 3.5 to 3.7. The error is a *DecodeError (ErrInvalid).
func DecodeConfState(b []byte, cs *ConfState) error {
	var j confStateJSON
	if err := decodeJSON("confState", b, &j); err != nil {
		*cs = ConfState{}
		return err
	}
	*cs = ConfState(j)
	return nil
}
