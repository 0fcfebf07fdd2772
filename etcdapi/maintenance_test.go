package etcdapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/accordkv/accord"
)

// semverRE is the semantic version grammar (semver.org), as clientv3's
// RejectOldCluster parses Status.Version.
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func TestMaintenanceSingle(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// RejectOldCluster makes clientv3 call Status and parse its Version
	// when it connects.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:        c.Endpoints(),
		DialTimeout:      5 * time.Second,
		Logger:           zap.NewNop(),
		RejectOldCluster: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ep := c.nodes[0].Endpoint()
	self := MemberID(c.nodes[0].Store().NodeID())

	st, err := cli.Status(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if !semverRE.MatchString(st.Version) || st.Version != Version {
		t.Fatalf("status version %q", st.Version)
	}
	if st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeInUse > st.DbSize || st.Leader != self ||
		st.Header.MemberId != self || st.RaftTerm == 0 || st.RaftIndex == 0 || st.RaftAppliedIndex == 0 ||
		st.IsLearner || len(st.Errors) != 0 {
		t.Fatalf("status %+v", st)
	}

	// Alarms: none at first; a NOSPACE alarm raised by hand stops puts
	// and lease grants (etcd's capped applier) but not reads or deletes,
	// shows in Status, and disarming lifts it.
	mc := pb.NewMaintenanceClient(cli.ActiveConnection())
	if resp, err := cli.AlarmList(ctx); err != nil || len(resp.Alarms) != 0 {
		t.Fatalf("alarm list: %+v %v", resp, err)
	}
	if resp, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: self, Alarm: pb.AlarmType_NOSPACE}); err != nil ||
		len(resp.Alarms) != 1 || resp.Alarms[0].MemberID != self || resp.Alarms[0].Alarm != pb.AlarmType_NOSPACE || resp.Header.MemberId != self {
		t.Fatalf("alarm activate: %+v %v", resp, err)
	}
	if resp, err := cli.AlarmList(ctx); err != nil || len(resp.Alarms) != 1 {
		t.Fatalf("alarm list with NOSPACE: %+v %v", resp, err)
	}
	if _, err := cli.Put(ctx, "nospace", "x"); !isGRPCErr(err, rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("put under NOSPACE: %v, want %v", err, rpctypes.ErrGRPCNoSpace)
	}
	if _, err := cli.Grant(ctx, 60); !isGRPCErr(err, rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("grant under NOSPACE: %v", err)
	}
	if _, err := cli.Get(ctx, "nospace"); err != nil {
		t.Fatalf("get under NOSPACE: %v", err)
	}
	if _, err := cli.Delete(ctx, "nospace"); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	if st, err := cli.Status(ctx, ep); err != nil || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "alarm:NOSPACE") {
		t.Fatalf("status under NOSPACE: %+v %v", st, err)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("alarm disarm: %v", err)
	}
	if resp, err := cli.AlarmList(ctx); err != nil || len(resp.Alarms) != 0 {
		t.Fatalf("alarm list after disarm: %+v %v", resp, err)
	}
	if _, err := cli.Put(ctx, "nospace", "x"); err != nil {
		t.Fatalf("put after disarm: %v", err)
	}
	if resp, err := cli.Defragment(ctx, ep); err != nil || resp.Header == nil {
		t.Fatalf("defragment: %+v %v", resp, err)
	}
	if resp, err := cli.AuthStatus(ctx); err != nil || resp.Enabled {
		t.Fatalf("auth status: %+v %v", resp, err)
	}
	// Moving leadership to the leader is a no-op; to nobody is an error.
	if _, err := cli.MoveLeader(ctx, self); err != nil {
		t.Fatalf("move leader to itself: %v", err)
	}
	if _, err := cli.MoveLeader(ctx, 12345); !isGRPCErr(err, rpctypes.ErrGRPCBadLeaderTransferee) {
		t.Fatalf("move leader to an unknown member: %v", err)
	}

	// Hash changes with the keyspace; HashKV at an old revision does not.
	if _, err := cli.Put(ctx, "h/a", "1"); err != nil {
		t.Fatal(err)
	}
	h1, err := cli.HashKV(ctx, ep, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h1.HashRevision != h1.Header.Revision || h1.Hash == 0 {
		t.Fatalf("hashkv %+v", h1)
	}
	if _, err := cli.Put(ctx, "h/b", "2"); err != nil {
		t.Fatal(err)
	}
	h2, err := cli.HashKV(ctx, ep, 0)
	if err != nil || h2.Hash == h1.Hash || h2.HashRevision != h1.HashRevision+1 {
		t.Fatalf("hashkv after a put: %+v %v (before %+v)", h2, err, h1)
	}
	again, err := cli.HashKV(ctx, ep, h1.HashRevision)
	if err != nil || again.Hash != h1.Hash || again.HashRevision != h1.HashRevision {
		t.Fatalf("hashkv at revision %d: %+v %v, want hash %d", h1.HashRevision, again, err, h1.Hash)
	}
	if _, err := cli.HashKV(ctx, ep, 1<<40); !isGRPCErr(err, rpctypes.ErrGRPCFutureRev) {
		t.Fatalf("hashkv at a future revision: %v", err)
	}
	if _, err := cli.Compact(ctx, h2.HashRevision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.HashKV(ctx, ep, h1.HashRevision); !isGRPCErr(err, rpctypes.ErrGRPCCompacted) {
		t.Fatalf("hashkv at a compacted revision: %v", err)
	}
	if h3, err := cli.HashKV(ctx, ep, 0); err != nil || h3.Hash != h2.Hash || h3.CompactRevision != h2.HashRevision {
		t.Fatalf("hashkv after compaction: %+v %v (before %+v)", h3, err, h2)
	}
	if hr, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Hash(ctx, &pb.HashRequest{}); err != nil || hr.Hash != h2.Hash || hr.Header.Revision != h2.HashRevision {
		t.Fatalf("hash: %+v %v, want %d", hr, err, h2.Hash)
	}
}

// snapshotFile fetches a snapshot the way `etcdctl snapshot save` does and
// checks what it checks: the size is a multiple of 512 plus the 32-byte
// sha256 trailer.
func snapshotFile(t *testing.T, ctx context.Context, cli *clientv3.Client) []byte {
	t.Helper()
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Snapshot.Close()
	data, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%512 != sha256.Size {
		t.Fatalf("snapshot of %d bytes: etcdctl finds no sha256 trailer", len(data))
	}
	if resp.Version != Version {
		t.Fatalf("snapshot version %q", resp.Version)
	}
	return data
}

func TestSnapshotSaveRestore(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("snap/%03d", i), strings.Repeat(fmt.Sprint(i), 1+i%300)
		want[k] = v
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "snap/000"); err != nil {
		t.Fatal(err)
	}
	delete(want, "snap/000")
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	last, err := cli.Put(ctx, "snap/leased", "l", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	want["snap/leased"] = "l"

	data := snapshotFile(t, ctx, cli)
	if len(data) <= snapshotChunk {
		t.Fatalf("snapshot of %d bytes fits one message: the test should cover several", len(data))
	}

	// Damage is detected.
	for _, bad := range [][]byte{
		data[:len(data)-1],
		append(append([]byte{}, data[:100]...), append([]byte{data[100] ^ 1}, data[101:]...)...),
		make([]byte, 512+sha256.Size),
	} {
		if _, err := ReadSnapshot(bytes.NewReader(bad)); !errors.Is(err, accord.ErrCorrupt) {
			t.Fatalf("ReadSnapshot of a damaged file (%d bytes): %v", len(bad), err)
		}
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := RestoreSnapshot(bytes.NewReader(data), dir, nil); err != nil {
		t.Fatal(err)
	}
	s, err := accord.Open(dir, &accord.Options{UnsafeNoFsync: true, ElectionTimeout: testElection, Logger: testLogger(t, "restored")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, "snap/", accord.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != last.Header.Revision || len(got.KVs) != len(want) {
		t.Fatalf("restored store at revision %d with %d keys, want %d and %d", got.Revision, len(got.KVs), last.Header.Revision, len(want))
	}
	for _, kv := range got.KVs {
		if want[kv.Key] != string(kv.Value) {
			t.Fatalf("restored %s = %q, want %q", kv.Key, kv.Value, want[kv.Key])
		}
	}
	if ttl, err := s.TimeToLive(ctx, accord.LeaseID(g.ID), accord.WithAttachedKeys()); err != nil || len(ttl.Keys) != 1 {
		t.Fatalf("restored lease: %+v %v", ttl, err)
	}
}

// TestMaintenanceCluster checks Status, HashKV and MoveLeader on a
// 3-member cluster.
func TestMaintenanceCluster(t *testing.T) {
	c := newAPICluster(t, 3, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	// A young test cluster on a loaded machine may change leaders: a
	// write that meets that is retried (these writes are idempotent).
	put := func(k, v string) {
		t.Helper()
		eventually(t, 10*time.Second, "put "+k, func() error {
			_, err := cli.Put(ctx, k, v)
			return err
		})
	}
	for i := range 20 {
		put(fmt.Sprintf("hk/%02d", i), fmt.Sprint(i))
	}
	eventually(t, 10*time.Second, "delete", func() error {
		_, err := cli.Delete(ctx, "hk/03")
		return err
	})
	cur, err := cli.Get(ctx, "hk/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	rev := cur.Header.Revision

	// Every member at the same revision hashes the same.
	var hashes []uint32
	for _, nd := range c.nodes {
		eventually(t, 10*time.Second, "the member to apply the writes", func() error {
			if r := nd.Store().Revision(); r < rev {
				return fmt.Errorf("node %d at revision %d", nd.idx, r)
			}
			return nil
		})
		h, err := cli.HashKV(ctx, nd.Endpoint(), rev)
		if err != nil {
			t.Fatal(err)
		}
		if h.HashRevision != rev || h.Header.MemberId != MemberID(nd.Store().NodeID()) {
			t.Fatalf("node %d hashkv %+v", nd.idx, h)
		}
		hashes = append(hashes, h.Hash)
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("hashes at revision %d differ: %v", rev, hashes)
	}

	// Every member reports itself and the leader they agree on.
	ids := map[uint64]*apiNode{}
	for _, nd := range c.nodes {
		ids[MemberID(nd.Store().NodeID())] = nd
	}
	eventually(t, 10*time.Second, "every member's status to name the same leader", func() error {
		var leader uint64
		for _, nd := range c.nodes {
			st, err := cli.Status(ctx, nd.Endpoint())
			if err != nil {
				return err
			}
			if st.Header.MemberId != MemberID(nd.Store().NodeID()) || st.DbSize <= 0 || st.IsLearner ||
				st.Version != Version || st.RaftTerm == 0 || st.RaftIndex == 0 {
				t.Fatalf("node %d status %+v", nd.idx, st)
			}
			if ids[st.Leader] == nil || (leader != 0 && st.Leader != leader) {
				return fmt.Errorf("node %d sees leader %x", nd.idx, st.Leader)
			}
			leader = st.Leader
		}
		return nil
	})

	// MoveLeader must reach the leader.
	var leader, target, other *apiNode
	var targetID uint64
	eventually(t, 10*time.Second, "leadership to move", func() error {
		leader = c.leaderNode()
		target, other = nil, nil
		for _, nd := range c.nodes {
			switch {
			case nd == leader:
			case target == nil:
				target = nd
			default:
				other = nd
			}
		}
		targetID = MemberID(target.Store().NodeID())
		_, err := newClient(t, leader.Endpoint()).MoveLeader(ctx, targetID)
		return err
	})
	eventually(t, 10*time.Second, "the target to lead", func() error {
		st, err := cli.Status(ctx, target.Endpoint())
		if err != nil {
			return err
		}
		if st.Leader != targetID {
			return fmt.Errorf("target sees leader %x, want %x", st.Leader, targetID)
		}
		return nil
	})
	// Through a member that does not lead (the old leader or the other).
	if _, err := newClient(t, other.Endpoint()).MoveLeader(ctx, targetID); !isGRPCErr(err, rpctypes.ErrGRPCNotLeader) {
		t.Fatalf("move leader through a follower: %v", err)
	}
	put("after-move", "x")
}
