package etcdapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/internal/schema"
)

// maintenanceServer implements etcd's Maintenance service.
//
//   - Status reports this member's view (Store.Status): DbSize and
//     DbSizeInUse are its kv.db's size and the part of it in use,
//     DbSizeQuota is Options.QuotaBytes, StorageVersion is kv.db's meta
//     storageVersion (Store.StorageVersion), and Errors holds "no leader"
//     and the active alarms, as etcd reports them.
//   - Downgrade validates, enables and cancels a downgrade (see there).
//   - Alarm lists, raises and clears alarms (Store.Alarms, ActivateAlarm,
//     DisarmAlarm): NOSPACE, raised when a kv.db passes the quota, and
//     CORRUPT.
//   - Defragment rewrites this member's kv.db (Store.Defragment).
//   - MoveLeader transfers leadership; like etcd it must reach the leader.
//   - Hash and HashKV hash the keyspace (see hashKeyspace): comparable
//     between the members of an accord cluster, not with etcd's hashes.
//   - Snapshot streams Store.OpenBackup: kv.db, whose layout is etcd's,
//     then its SHA-256 in the last message, as etcd sends it. `etcdctl
//     snapshot save` writes that to a file etcdutl reads, and that
//     RestoreSnapshot (accordd snapshot restore) restores.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	srv *Server
}

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := m.srv.store.Status(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.StatusResponse{
		Header:           m.srv.currentHeader(),
		Version:          Version,
		DbSize:           st.DBSize,
		DbSizeInUse:      st.DBSizeInUse,
		DbSizeQuota:      st.QuotaBytes,
		RaftIndex:        st.CommitIndex,
		RaftTerm:         st.Term,
		RaftAppliedIndex: st.AppliedIndex,
		IsLearner:        st.IsLearner,
		StorageVersion:   m.srv.store.StorageVersion(),
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	if st.Leader != "" {
		resp.Leader = MemberID(st.Leader)
	} else {
		resp.Errors = append(resp.Errors, rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader))
	}
	for _, a := range st.Alarms {
		am := alarmToPB(a)
		resp.Errors = append(resp.Errors, am.String())
	}
	return resp, nil
}

func alarmToPB(a accord.Alarm) *pb.AlarmMember {
	return &pb.AlarmMember{MemberID: MemberID(a.NodeID), Alarm: pb.AlarmType(a.Type)}
}

// Alarm answers etcd's AlarmRequest. GET lists the active alarms of the
// given type (every type for NONE).
// ACTIVATE and DEACTIVATE change one, for the member with etcd ID
// MemberID, through the log, and answer with the alarm changed (none when
// there was nothing to change), as etcd does. An alarm is cleared by its
// member ID whether or not that member is still in the cluster.
func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	alarms, err := m.srv.store.Alarms(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.AlarmResponse{}
	switch r.Action {
	case pb.AlarmRequest_GET:
		for _, a := range alarms {
			if r.Alarm == pb.AlarmType_NONE || pb.AlarmType(a.Type) == r.Alarm {
				resp.Alarms = append(resp.Alarms, alarmToPB(a))
			}
		}
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			break // etcd changes nothing and answers with no alarm
		}
		node := ""
		for _, a := range alarms {
			if MemberID(a.NodeID) == r.MemberID {
				node = a.NodeID
			}
		}
		if node == "" {
			ms, err := m.srv.store.Members(ctx)
			if err != nil {
				return nil, toGRPC(err)
			}
			for _, mb := range ms {
				if MemberID(mb.ID) == r.MemberID {
					node = mb.ID
				}
			}
		}
		if node == "" {
			// etcd takes any member ID; accord's alarms belong to members.
			return nil, rpctypes.ErrGRPCMemberNotFound
		}
		a := accord.Alarm{NodeID: node, Type: accord.AlarmType(r.Alarm)}
		if err := m.srv.store.ActivateAlarm(ctx, a); err != nil {
			return nil, toGRPC(err)
		}
		resp.Alarms = append(resp.Alarms, alarmToPB(a))
	case pb.AlarmRequest_DEACTIVATE:
		for _, a := range alarms {
			if MemberID(a.NodeID) != r.MemberID || pb.AlarmType(a.Type) != r.Alarm {
				continue
			}
			if err := m.srv.store.DisarmAlarm(ctx, a); err != nil {
				return nil, toGRPC(err)
			}
			resp.Alarms = append(resp.Alarms, alarmToPB(a))
		}
	}
	resp.Header = m.srv.currentHeader()
	return resp, nil
}

// Defragment rewrites this member's kv.db (Store.Defragment).
func (m *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := m.srv.store.Defragment(ctx); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.DefragmentResponse{Header: m.srv.currentHeader()}, nil
}

// MoveLeader transfers leadership to the voter with etcd member ID
// TargetID. It must be sent to the leader (etcd's "not leader" otherwise,
// as etcd); an unknown target or a learner is etcd's "bad leader
// transferee". Moving leadership to the leader succeeds at once.
func (m *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	ms, err := m.srv.store.Members(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	var target *accord.Member
	for i := range ms {
		if MemberID(ms[i].ID) == r.TargetID {
			target = &ms[i]
		}
	}
	if target == nil || target.IsLearner {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if target.IsLeader && target.ID == m.srv.store.NodeID() {
		return &pb.MoveLeaderResponse{Header: m.srv.currentHeader()}, nil
	}
	if err := m.srv.store.TransferLeadership(ctx, target.ID); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MoveLeaderResponse{Header: m.srv.currentHeader()}, nil
}

// Hash hashes the keyspace at this member's current revision, like HashKV
// with revision 0. Header.Revision is the revision hashed.
func (m *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	h, rev, err := m.hashKeyspace(ctx, 0)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashResponse{Header: m.srv.header(rev), Hash: h}, nil
}

// HashKV hashes the keyspace as it was at Revision (0: this member's
// current revision), read locally (serializably), so that members at the
// same revision report the same hash. HashRevision is the revision hashed,
// CompactRevision this member's compacted revision.
func (m *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, rev, err := m.hashKeyspace(ctx, max(r.Revision, 0))
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.HashKVResponse{Header: m.srv.currentHeader(), Hash: h, HashRevision: rev}
	if st, err := m.srv.store.Status(ctx); err == nil {
		resp.CompactRevision = st.CompactRevision
	}
	return resp, nil
}

// hashPage is how many keys hashKeyspace reads at a time.
const hashPage = 10000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hashKeyspace returns a CRC-32 (Castagnoli) over every key of the
// keyspace as of revision rev (0: the current revision), read from this
// member's state, and the revision it hashed. Each key contributes, in key
// order, its key and value (each preceded by its length as a big-endian
// uint32) and its create revision, mod revision and version (big-endian
// int64). The hash is accord's own: equal on members with equal keyspaces,
// not comparable with an etcd server's.
func (m *maintenanceServer) hashKeyspace(ctx context.Context, rev int64) (uint32, int64, error) {
	h := crc32.New(castagnoli)
	var b [8]byte
	put32 := func(n int) {
		binary.BigEndian.PutUint32(b[:4], uint32(n))
		h.Write(b[:4])
	}
	put64 := func(n int64) {
		binary.BigEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	key := "\x00"
	for {
		opts := []accord.OpOption{accord.WithFromKey(), accord.WithSerializable(), accord.WithLimit(hashPage)}
		if rev > 0 {
			opts = append(opts, accord.WithRev(rev))
		}
		resp, err := m.srv.store.Get(ctx, key, opts...)
		if err != nil {
			return 0, 0, err
		}
		if rev == 0 {
			rev = resp.Revision // the following pages read at the same revision
		}
		for i := range resp.KVs {
			kv := &resp.KVs[i]
			put32(len(kv.Key))
			h.Write([]byte(kv.Key))
			put32(len(kv.Value))
			h.Write(kv.Value)
			put64(kv.CreateRevision)
			put64(kv.ModRevision)
			put64(kv.Version)
		}
		if !resp.More || len(resp.KVs) == 0 {
			return h.Sum32(), rev, nil
		}
		key = resp.KVs[len(resp.KVs)-1].Key + "\x00"
	}
}

// snapshotChunk is the size of a Snapshot message (etcd's
// snapshotSendBufferSize).
const snapshotChunk = 32 * 1024

// Snapshot streams a consistent backup of the store (Store.OpenBackup,
// which starts with a linearizable read barrier): kv.db in 32 KiB
// messages, whose RemainingBytes count the bytes of kv.db not yet sent,
// then its SHA-256 alone in the last message with RemainingBytes 0, as
// etcd sends it. Version is the package's Version.
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	rc, size, err := m.srv.store.OpenBackup(stream.Context())
	if err != nil {
		return toGRPC(err)
	}
	defer rc.Close()
	db := size - sha256.Size
	r := bufio.NewReaderSize(rc, snapshotChunk)
	for sent := int64(0); sent < db; {
		buf := make([]byte, min(snapshotChunk, db-sent))
		if _, err := io.ReadFull(r, buf); err != nil {
			return toGRPC(fmt.Errorf("etcdapi: snapshot: reading the backup: %w", err))
		}
		sent += int64(len(buf))
		if err := stream.Send(&pb.SnapshotResponse{
			Header:         m.srv.currentHeader(),
			RemainingBytes: uint64(db - sent),
			Blob:           buf,
			Version:        Version,
		}); err != nil {
			return err
		}
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, sum); err != nil {
		return toGRPC(fmt.Errorf("etcdapi: snapshot: reading the backup: %w", err))
	}
	return stream.Send(&pb.SnapshotResponse{Header: m.srv.currentHeader(), Blob: sum, Version: Version})
}

// Snapshots saved from accord 0.2 and older frame an ACCORDSNAP backup as
//
//	[backup][zero padding][backup length: 8 bytes, big-endian][SHA-256]
//
// padded to a multiple of 512 (etcdctl's check of snapshot files).
const (
	legacySnapshotAlign     = 512
	legacySnapshotFooterLen = 8
)

// SnapshotOptions are the options of etcdutl snapshot restore that
// concern the file rather than the new member.
type SnapshotOptions struct {
	// SkipHashCheck accepts a file without the sha256 trailer (a kv.db or
	// an etcd member/snap/db copied out of a data directory) and does not
	// check the trailer of a file that has one: etcdutl's
	// --skip-hash-check.
	SkipHashCheck bool
	// BumpRevision, when positive, raises the restored store's revision
	// by this much above the file's last revision and marks the new
	// revision compacted, so that clients never see a revision go back
	// and watchers of older revisions learn they were compacted:
	// etcdutl's --bump-revision with --mark-compacted. It needs a bolt
	// file.
	BumpRevision int64
}

// ReadSnapshot is ReadSnapshotWith with the default options: the file
// must end with its SHA-256.
func ReadSnapshot(r io.Reader) (io.Reader, error) {
	return ReadSnapshotWith(r, SnapshotOptions{})
}

// ReadSnapshotWith checks a snapshot file written by `etcdctl snapshot
// save` (or clientv3's Snapshot) and returns a reader of what
// accord.Restore takes. The file is kv.db followed by its SHA-256: this
// version's snapshots and etcd's alike (a bbolt file with etcd's buckets).
// A file saved from accord 0.2 or older (an ACCORDSNAP backup in the
// framing above) is read too.
//
// Whether the file has the trailer is told by its size, as etcdutl tells
// it (size % 512 == 32, schema.HasSnapshotTrailer); without
// o.SkipHashCheck a file without one is refused ("snapshot missing hash")
// and the trailer must be the SHA-256 of the rest, with etcdutl's
// messages. ReadSnapshotWith reads the whole file into memory and checks
// it before returning; errors match accord.ErrCorrupt.
func ReadSnapshotWith(r io.Reader, o SnapshotOptions) (io.Reader, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("etcdapi: read snapshot: %w", err)
	}
	body := data
	if int64(len(data))%legacySnapshotAlign == sha256.Size {
		var sum []byte
		body, sum = data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
		if got := sha256.Sum256(body); !o.SkipHashCheck && !bytes.Equal(got[:], sum) {
			// etcdutl's message (copyAndVerifyDB), byte lists and all.
			return nil, snapshotCorrupt("expected sha256 %v, got %v", sum, got[:])
		}
	} else if !o.SkipHashCheck {
		return nil, snapshotCorrupt("snapshot missing hash but --skip-hash-check=false (%d bytes)", len(data))
	}
	if isBoltFile(body) {
		if o.BumpRevision > 0 {
			if body, err = bumpRevision(body, o.BumpRevision); err != nil {
				return nil, err
			}
		}
		sum := sha256.Sum256(body)
		return io.MultiReader(bytes.NewReader(body), bytes.NewReader(sum[:])), nil
	}
	if len(body) < legacySnapshotAlign || len(body)%legacySnapshotAlign != 0 {
		return nil, snapshotCorrupt("neither a bolt file nor an accord 0.2 snapshot (%d bytes)", len(body))
	}
	payload := body[:len(body)-legacySnapshotFooterLen]
	n := binary.BigEndian.Uint64(body[len(body)-legacySnapshotFooterLen:])
	if n > uint64(len(payload)) || uint64(len(payload))-n >= legacySnapshotAlign {
		return nil, snapshotCorrupt("neither a bolt file nor an accord 0.2 snapshot: bad length footer %d for %d bytes", n, len(payload))
	}
	if pad := payload[n:]; bytes.Count(pad, []byte{0}) != len(pad) {
		return nil, snapshotCorrupt("accord 0.2 snapshot: padding is not zero")
	}
	if o.BumpRevision > 0 {
		return nil, errors.New("etcdapi: snapshot: --bump-revision needs a bolt snapshot (accord 0.3 or etcd), not an accord 0.2 one")
	}
	return bytes.NewReader(payload[:n]), nil
}

// bumpRevision returns a copy of the bolt file db whose scheduled
// compaction is its last revision plus n. etcdutl also stores an empty
// record at that revision; accord takes the current revision from the
// scheduled compaction as etcd does (the higher of the two), so the mark
// alone raises it, and the compaction it schedules runs when the store
// opens, as it does in etcd.
func bumpRevision(db []byte, n int64) ([]byte, error) {
	f, err := os.CreateTemp("", "accord-restore-*.db")
	if err != nil {
		return nil, fmt.Errorf("etcdapi: snapshot: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	_, err = f.Write(db)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("etcdapi: snapshot: %w", err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, snapshotCorrupt("cannot open bolt database: %v", err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		keys, meta := tx.Bucket([]byte(schema.BucketKey)), tx.Bucket([]byte(schema.BucketMeta))
		if keys == nil || meta == nil {
			return snapshotCorrupt("no key or meta bucket: not an etcd or accord snapshot")
		}
		var last int64
		if k, _ := keys.Cursor().Last(); k != nil {
			r, _, err := schema.ParseRevisionKey(k)
			if err != nil {
				return snapshotCorrupt("last revision key %x: %v", k, err)
			}
			last = r.Main
		}
		return meta.Put([]byte(schema.MetaScheduledCompactKey), schema.AppendCompactRev(nil, last+n))
	})
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// isBoltFile reports whether b starts with a bbolt meta page.
func isBoltFile(b []byte) bool {
	const pageHeader, boltMagic = 16, 0xED0CDAED
	return len(b) >= pageHeader+4 && binary.LittleEndian.Uint32(b[pageHeader:]) == boltMagic
}

func snapshotCorrupt(format string, args ...any) error {
	return fmt.Errorf("etcdapi: snapshot: %s: %w", fmt.Sprintf(format, args...), accord.ErrCorrupt)
}

// RestoreSnapshot is RestoreSnapshotWith with the default options.
func RestoreSnapshot(r io.Reader, dir string, opts *accord.Options) error {
	return RestoreSnapshotWith(r, dir, opts, SnapshotOptions{})
}

// RestoreSnapshotWith restores a snapshot file into a new data directory
// dir: a file written by `etcdctl snapshot save` from an accord member or
// from etcd 3.5 to 3.7, or a kv.db or etcd member/snap/db file with
// o.SkipHashCheck. It is ReadSnapshotWith, then accord.Restore (see there:
// dir must not exist or be empty, and Open(dir, opts) then starts a
// single-member cluster with the data). Everything in the file carries
// over: keys with their history above the compaction, the revision and
// the compacted revision, leases and their keys, and the buckets accord
// does not read itself (etcd's users and roles); the membership of the
// cluster the file came from does not.
func RestoreSnapshotWith(r io.Reader, dir string, opts *accord.Options, o SnapshotOptions) error {
	backup, err := ReadSnapshotWith(r, o)
	if err != nil {
		return err
	}
	if err := accord.Restore(backup, dir, opts); err != nil {
		return fmt.Errorf("etcdapi: restore snapshot: %w", err)
	}
	return nil
}

// authServer answers the Auth service: authentication is not enabled.
type authServer struct {
	pb.UnimplementedAuthServer
	srv *Server
}

func (a *authServer) Authenticate(context.Context, *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return nil, rpctypes.ErrGRPCAuthNotEnabled
}

// AuthStatus reports that authentication is disabled.
func (a *authServer) AuthStatus(context.Context, *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return &pb.AuthStatusResponse{Header: a.srv.currentHeader(), Enabled: false}, nil
}
