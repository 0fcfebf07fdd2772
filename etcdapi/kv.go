package etcdapi

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/accordkv/accord"
)

// kvServer implements etcd's KV service over the Store.
type kvServer struct {
	pb.UnimplementedKVServer
	srv *Server
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := k.srv.checkSize(r); err != nil {
		return nil, err
	}
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	resp, err := k.srv.store.Get(ctx, string(r.Key), rangeOptions(r)...)
	if err != nil {
		return nil, toGRPC(err)
	}
	return k.srv.rangeResponse(resp), nil
}

// rangeStreamChunk is how many keys one RangeStream message carries.
const rangeStreamChunk = 1000

// RangeStream answers with the same result as Range, split into messages:
// keys in order across chunks, header, count and more on the last.
func (k *kvServer) RangeStream(r *pb.RangeRequest, stream grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	resp, err := k.Range(stream.Context(), r)
	if err != nil {
		return err
	}
	kvs := resp.Kvs
	for len(kvs) > rangeStreamChunk {
		if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: kvs[:rangeStreamChunk]}}); err != nil {
			return err
		}
		kvs = kvs[rangeStreamChunk:]
	}
	resp.Kvs = kvs
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := k.srv.checkSize(r); err != nil {
		return nil, err
	}
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	resp, err := k.srv.store.Put(ctx, string(r.Key), r.Value, putOptions(r)...)
	if err != nil {
		return nil, toGRPC(err)
	}
	out := &pb.PutResponse{Header: k.srv.header(resp.Revision)}
	if resp.PrevKV != nil {
		out.PrevKv = toKV(resp.PrevKV)
	}
	return out, nil
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := k.srv.checkSize(r); err != nil {
		return nil, err
	}
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	resp, err := k.srv.store.Delete(ctx, string(r.Key), deleteOptions(r)...)
	if err != nil {
		return nil, toGRPC(err)
	}
	return k.srv.deleteResponse(resp), nil
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := k.srv.checkSize(r); err != nil {
		return nil, err
	}
	cmps, thenOps, elseOps, err := txnParts(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.srv.store.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
	if err != nil {
		return nil, toGRPC(err)
	}
	return k.srv.txnResponse(resp), nil
}

// Compact compacts the history. The header carries the revision at which
// the compaction was applied: on a follower, the local revision when the
// answer comes back may still be below it.
func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	var rev int64
	if err := k.srv.store.Compact(ctx, r.Revision, accord.WithAppliedRevision(&rev)); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.CompactionResponse{Header: k.srv.header(rev)}, nil
}

// checkSize refuses a request larger than MaxRequestBytes, as etcd does
// (gRPC itself accepts a little more, so that this error, not a transport
// error, is what the client sees).
func (srv *Server) checkSize(m proto.Message) error {
	if proto.Size(m) > srv.opts.MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	return nil
}

func rangeOptions(r *pb.RangeRequest) []accord.OpOption {
	var opts []accord.OpOption
	if len(r.RangeEnd) > 0 {
		opts = append(opts, accord.WithRange(string(r.RangeEnd)))
	}
	if r.Limit != 0 {
		opts = append(opts, accord.WithLimit(r.Limit))
	}
	if r.Revision != 0 {
		opts = append(opts, accord.WithRev(r.Revision))
	}
	if r.SortOrder != pb.RangeRequest_NONE || r.SortTarget != pb.RangeRequest_KEY {
		opts = append(opts, accord.WithSort(accord.SortTarget(r.SortTarget), accord.SortOrder(r.SortOrder)))
	}
	if r.Serializable {
		opts = append(opts, accord.WithSerializable())
	}
	if r.KeysOnly {
		opts = append(opts, accord.WithKeysOnly())
	}
	if r.CountOnly {
		opts = append(opts, accord.WithCountOnly())
	}
	if r.MinModRevision != 0 {
		opts = append(opts, accord.WithMinModRev(r.MinModRevision))
	}
	if r.MaxModRevision != 0 {
		opts = append(opts, accord.WithMaxModRev(r.MaxModRevision))
	}
	if r.MinCreateRevision != 0 {
		opts = append(opts, accord.WithMinCreateRev(r.MinCreateRevision))
	}
	if r.MaxCreateRevision != 0 {
		opts = append(opts, accord.WithMaxCreateRev(r.MaxCreateRevision))
	}
	return opts
}

func putOptions(r *pb.PutRequest) []accord.OpOption {
	var opts []accord.OpOption
	if r.Lease != 0 {
		opts = append(opts, accord.WithLease(accord.LeaseID(r.Lease)))
	}
	if r.PrevKv {
		opts = append(opts, accord.WithPrevKV())
	}
	if r.IgnoreValue {
		opts = append(opts, accord.WithIgnoreValue())
	}
	if r.IgnoreLease {
		opts = append(opts, accord.WithIgnoreLease())
	}
	return opts
}

func deleteOptions(r *pb.DeleteRangeRequest) []accord.OpOption {
	var opts []accord.OpOption
	if len(r.RangeEnd) > 0 {
		opts = append(opts, accord.WithRange(string(r.RangeEnd)))
	}
	if r.PrevKv {
		opts = append(opts, accord.WithPrevKV())
	}
	return opts
}

// txnParts converts an etcd transaction into accord compares and ops.
func txnParts(r *pb.TxnRequest) (cmps []accord.Cmp, thenOps, elseOps []accord.Op, err error) {
	for _, c := range r.Compare {
		cmp, err := toCmp(c)
		if err != nil {
			return nil, nil, nil, err
		}
		cmps = append(cmps, cmp)
	}
	if thenOps, err = toOps(r.Success); err != nil {
		return nil, nil, nil, err
	}
	if elseOps, err = toOps(r.Failure); err != nil {
		return nil, nil, nil, err
	}
	return cmps, thenOps, elseOps, nil
}

func toCmp(c *pb.Compare) (accord.Cmp, error) {
	if c == nil || len(c.Key) == 0 {
		return accord.Cmp{}, rpctypes.ErrGRPCEmptyKey
	}
	key := string(c.Key)
	var cmp accord.Cmp
	var v any
	switch c.Target {
	case pb.Compare_VERSION:
		cmp, v = accord.Version(key), c.GetVersion()
	case pb.Compare_CREATE:
		cmp, v = accord.CreateRevision(key), c.GetCreateRevision()
	case pb.Compare_MOD:
		cmp, v = accord.ModRevision(key), c.GetModRevision()
	case pb.Compare_VALUE:
		cmp, v = accord.Value(key), c.GetValue()
		if v.([]byte) == nil {
			v = []byte{}
		}
	case pb.Compare_LEASE:
		cmp, v = accord.LeaseValue(key), accord.LeaseID(c.GetLease())
	default:
		return accord.Cmp{}, toGRPC(fmt.Errorf("%w: compare target %d", accord.ErrInvalidArgument, c.Target))
	}
	var result string
	switch c.Result {
	case pb.Compare_EQUAL:
		result = "="
	case pb.Compare_NOT_EQUAL:
		result = "!="
	case pb.Compare_GREATER:
		result = ">"
	case pb.Compare_LESS:
		result = "<"
	default:
		return accord.Cmp{}, toGRPC(fmt.Errorf("%w: compare result %d", accord.ErrInvalidArgument, c.Result))
	}
	cmp = accord.Compare(cmp, result, v)
	if len(c.RangeEnd) > 0 {
		cmp = cmp.WithRange(string(c.RangeEnd))
	}
	return cmp, nil
}

func toOps(reqs []*pb.RequestOp) ([]accord.Op, error) {
	ops := make([]accord.Op, 0, len(reqs))
	for _, r := range reqs {
		switch x := r.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			ops = append(ops, accord.OpGet(string(x.RequestRange.Key), rangeOptions(x.RequestRange)...))
		case *pb.RequestOp_RequestPut:
			ops = append(ops, accord.OpPut(string(x.RequestPut.Key), x.RequestPut.Value, putOptions(x.RequestPut)...))
		case *pb.RequestOp_RequestDeleteRange:
			ops = append(ops, accord.OpDelete(string(x.RequestDeleteRange.Key), deleteOptions(x.RequestDeleteRange)...))
		case *pb.RequestOp_RequestTxn:
			cmps, thenOps, elseOps, err := txnParts(x.RequestTxn)
			if err != nil {
				return nil, err
			}
			ops = append(ops, accord.OpTxn(cmps, thenOps, elseOps))
		default:
			return nil, toGRPC(fmt.Errorf("%w: empty request op", accord.ErrInvalidArgument))
		}
	}
	return ops, nil
}

func toKV(kv *accord.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            []byte(kv.Key),
		Value:          kv.Value,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Lease:          int64(kv.Lease),
	}
}

func (srv *Server) rangeResponse(r *accord.GetResponse) *pb.RangeResponse {
	out := &pb.RangeResponse{Header: srv.header(r.Revision), More: r.More, Count: r.Count}
	if len(r.KVs) > 0 {
		out.Kvs = make([]*mvccpb.KeyValue, len(r.KVs))
		for i := range r.KVs {
			out.Kvs[i] = toKV(&r.KVs[i])
		}
	}
	return out
}

func (srv *Server) deleteResponse(r *accord.DeleteResponse) *pb.DeleteRangeResponse {
	out := &pb.DeleteRangeResponse{Header: srv.header(r.Revision), Deleted: r.Deleted}
	for i := range r.PrevKVs {
		out.PrevKvs = append(out.PrevKvs, toKV(&r.PrevKVs[i]))
	}
	return out
}

func (srv *Server) txnResponse(r *accord.TxnResponse) *pb.TxnResponse {
	out := &pb.TxnResponse{Header: srv.header(r.Revision), Succeeded: r.Succeeded}
	out.Responses = make([]*pb.ResponseOp, len(r.Responses))
	for i, op := range r.Responses {
		ro := &pb.ResponseOp{}
		switch {
		case op.Get != nil:
			ro.Response = &pb.ResponseOp_ResponseRange{ResponseRange: srv.rangeResponse(op.Get)}
		case op.Put != nil:
			pr := &pb.PutResponse{Header: srv.header(op.Put.Revision)}
			if op.Put.PrevKV != nil {
				pr.PrevKv = toKV(op.Put.PrevKV)
			}
			ro.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case op.Delete != nil:
			ro.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: srv.deleteResponse(op.Delete)}
		case op.Txn != nil:
			ro.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: srv.txnResponse(op.Txn)}
		}
		out.Responses[i] = ro
	}
	return out
}
