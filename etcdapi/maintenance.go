package etcdapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/accordkv/accord"
)

// maintenanceServer implements etcd's Maintenance service.
//
//   - Status reports this member's view (Store.Status). DbSize and
//     DbSizeInUse are the approximate size of the in-memory keyspace, never
//     below minReportedDBSize: etcdctl's endpoint status divides by DbSize.
//     The keyspace has no fragmentation, so both are equal. DbSizeQuota is 0
//     (accord has no backend quota).
//   - Alarm answers every action with an empty alarm list: accord raises
//     no etcd alarms (NOSPACE, CORRUPT).
//   - Defragment succeeds without doing anything: the keyspace is in
//     memory and has nothing to defragment.
//   - MoveLeader transfers leadership; like etcd it must reach the leader.
//   - Hash and HashKV hash the keyspace (see hashKeyspace): comparable
//     between the members of an accord cluster, not with etcd's hashes.
//   - Snapshot streams a Store.Backup framed as described at
//     ReadSnapshot, so that `etcdctl snapshot save` accepts the file and
//     RestoreSnapshot can restore it.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	srv *Server
}

// minReportedDBSize is the smallest DbSize Status reports (one bbolt page):
// the keyspace of an empty store is close to 0 bytes, and etcdctl's
// endpoint status divides by DbSize.
const minReportedDBSize = 4096

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := m.srv.store.Status(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	size := max(st.DBSize, minReportedDBSize)
	resp := &pb.StatusResponse{
		Header:           m.srv.currentHeader(),
		Version:          Version,
		DbSize:           size,
		DbSizeInUse:      size,
		RaftIndex:        st.CommitIndex,
		RaftTerm:         st.Term,
		RaftAppliedIndex: st.AppliedIndex,
		IsLearner:        st.IsLearner,
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	if st.Leader != "" {
		resp.Leader = MemberID(st.Leader)
	} else {
		resp.Errors = append(resp.Errors, rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader))
	}
	return resp, nil
}

// Alarm answers every request with no alarms.
func (m *maintenanceServer) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: m.srv.currentHeader()}, nil
}

// Defragment does nothing and succeeds: the keyspace lives in memory.
func (m *maintenanceServer) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
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

// Snapshot framing. etcdctl's `snapshot save` accepts a file only if its
// size is a multiple of 512 plus a 32-byte SHA-256 trailer (etcd's bbolt
// files are page-aligned). An accord backup is self-delimiting but of any
// length, so the stream carries
//
//	[backup][zero padding][backup length: 8 bytes, big-endian]
//
// padded (0 to 511 bytes) to a multiple of 512, and then, as etcd sends it,
// the SHA-256 of all of that as the final 32 bytes.
const (
	snapshotAlign     = 512
	snapshotFooterLen = 8
	snapshotChunk     = 32 * 1024 // etcd's snapshotSendBufferSize
)

// Snapshot streams a consistent backup of the store (Store.Backup, which
// starts with a linearizable read barrier) in the framing above, in 32 KiB
// messages. RemainingBytes counts the framed bytes not yet sent, excluding
// the trailer, which comes last with RemainingBytes 0, as etcd does.
// Version is the package's Version.
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	body, size, cleanup, err := m.backup(stream.Context())
	if err != nil {
		return toGRPC(err)
	}
	defer cleanup()

	total := snapshotFramedSize(size)
	var footer [snapshotFooterLen]byte
	binary.BigEndian.PutUint64(footer[:], uint64(size))
	r := io.MultiReader(body, bytes.NewReader(make([]byte, total-size-snapshotFooterLen)), bytes.NewReader(footer[:]))

	h := sha256.New()
	var sent int64
	for sent < total {
		buf := make([]byte, min(snapshotChunk, total-sent))
		n, err := io.ReadFull(r, buf)
		if err != nil {
			return toGRPC(fmt.Errorf("etcdapi: snapshot: reading the backup: %w", err))
		}
		sent += int64(n)
		h.Write(buf)
		if err := stream.Send(&pb.SnapshotResponse{
			Header:         m.srv.currentHeader(),
			RemainingBytes: uint64(total - sent),
			Blob:           buf,
			Version:        Version,
		}); err != nil {
			return err
		}
	}
	return stream.Send(&pb.SnapshotResponse{Header: m.srv.currentHeader(), Blob: h.Sum(nil), Version: Version})
}

// snapshotFramedSize is the size of a framed backup of size bytes, without
// the trailer.
func snapshotFramedSize(size int64) int64 {
	n := size + snapshotFooterLen
	return (n + snapshotAlign - 1) / snapshotAlign * snapshotAlign
}

// backup writes a backup to a temporary file (in memory if no temporary
// file can be created) and returns a reader of it, its size, and a
// function that releases it.
func (m *maintenanceServer) backup(ctx context.Context) (io.Reader, int64, func(), error) {
	f, err := os.CreateTemp("", "accord-etcd-snapshot-*")
	if err != nil {
		m.srv.log.Warn("snapshot: no temporary file; buffering the backup in memory", "err", err)
		var buf bytes.Buffer
		if err := m.srv.store.Backup(ctx, &buf); err != nil {
			return nil, 0, nil, err
		}
		return &buf, int64(buf.Len()), func() {}, nil
	}
	cleanup := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	w := bufio.NewWriterSize(f, 256*1024)
	if err = m.srv.store.Backup(ctx, w); err == nil {
		err = w.Flush()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	return bufio.NewReaderSize(f, snapshotChunk), size, cleanup, nil
}

// ReadSnapshot checks a snapshot file written by `etcdctl snapshot save`
// (or by clientv3's Snapshot) from an accord member and returns a reader
// of the accord backup it holds, for accord.Restore. The file is
// [backup][zero padding][backup length, 8 bytes big-endian], a multiple of
// 512 bytes, followed by the SHA-256 of all of that. ReadSnapshot reads
// the whole file into memory and verifies the checksum, the length and the
// padding first; errors match accord.ErrCorrupt. A snapshot of an etcd
// server (a bbolt file) is not an accord backup and fails here.
func ReadSnapshot(r io.Reader) (io.Reader, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("etcdapi: read snapshot: %w", err)
	}
	if len(data) < snapshotAlign+sha256.Size || (len(data)-sha256.Size)%snapshotAlign != 0 {
		return nil, snapshotCorrupt("size %d is not a multiple of %d plus a %d-byte sha256 trailer", len(data), snapshotAlign, sha256.Size)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, snapshotCorrupt("sha256 checksum mismatch")
	}
	payload := body[:len(body)-snapshotFooterLen]
	n := binary.BigEndian.Uint64(body[len(body)-snapshotFooterLen:])
	if n > uint64(len(payload)) || uint64(len(payload))-n >= snapshotAlign {
		return nil, snapshotCorrupt("not an accord snapshot: bad length footer %d for %d bytes (an etcd server's snapshot cannot be restored into accord)", n, len(payload))
	}
	if pad := payload[n:]; bytes.Count(pad, []byte{0}) != len(pad) {
		return nil, snapshotCorrupt("not an accord snapshot: padding is not zero")
	}
	return bytes.NewReader(payload[:n]), nil
}

func snapshotCorrupt(format string, args ...any) error {
	return fmt.Errorf("etcdapi: snapshot: %s: %w", fmt.Sprintf(format, args...), accord.ErrCorrupt)
}

// RestoreSnapshot restores a snapshot file written by `etcdctl snapshot
// save` from an accord member into a new data directory dir: ReadSnapshot,
// then accord.Restore (see there: dir must not exist or be empty, and
// Open(dir, opts) then starts a single-member cluster with the data).
func RestoreSnapshot(r io.Reader, dir string, opts *accord.Options) error {
	backup, err := ReadSnapshot(r)
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
