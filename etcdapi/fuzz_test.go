package etcdapi

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/accordkv/accord"
)

// FuzzKVRequests feeds arbitrary bytes, decoded as each KV request type,
// through the KV service's validation and the store: nothing may panic,
// and every failure must be a gRPC status error (what clients see).
func FuzzKVRequests(f *testing.F) {
	seeds := []proto.Message{
		&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 3, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD},
		&pb.PutRequest{Key: []byte("k"), Value: []byte("v"), PrevKv: true},
		&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z")},
		&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_MOD, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_ModRevision{ModRevision: 1}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("w")}}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{}}}},
		},
		&pb.CompactionRequest{Revision: 1},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	o := &accord.Options{ElectionTimeout: 50 * time.Millisecond, UnsafeNoFsync: true, MinFreeDiskBytes: -1}
	s, err := accord.Open(f.TempDir(), o)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	srv, err := New(s, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	kv := &kvServer{srv: srv}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		switch kind % 5 {
		case 0:
			r := &pb.RangeRequest{}
			if proto.Unmarshal(data, r) != nil {
				return
			}
			_, err = kv.Range(ctx, r)
		case 1:
			r := &pb.PutRequest{}
			if proto.Unmarshal(data, r) != nil {
				return
			}
			_, err = kv.Put(ctx, r)
		case 2:
			r := &pb.DeleteRangeRequest{}
			if proto.Unmarshal(data, r) != nil {
				return
			}
			_, err = kv.DeleteRange(ctx, r)
		case 3:
			r := &pb.TxnRequest{}
			if proto.Unmarshal(data, r) != nil {
				return
			}
			_, err = kv.Txn(ctx, r)
		case 4:
			r := &pb.CompactionRequest{}
			if proto.Unmarshal(data, r) != nil {
				return
			}
			_, err = kv.Compact(ctx, r)
		}
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("kind %d: error is not a gRPC status: %v", kind%5, err)
			}
		}
	})
}
