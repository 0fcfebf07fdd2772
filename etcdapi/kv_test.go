package etcdapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestKVBasic(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	put, err := cli.Put(ctx, "foo", "bar")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision < 2 || put.Header.MemberId != MemberID(c.nodes[0].Store().NodeID()) || put.Header.ClusterId == 0 {
		t.Fatalf("put header %+v", put.Header)
	}
	get, err := cli.Get(ctx, "foo")
	if err != nil {
		t.Fatal(err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "bar" || get.Kvs[0].ModRevision != put.Header.Revision || get.Kvs[0].Version != 1 {
		t.Fatalf("get %+v", get)
	}
	prev, err := cli.Put(ctx, "foo", "baz", clientv3.WithPrevKV())
	if err != nil || prev.PrevKv == nil || string(prev.PrevKv.Value) != "bar" {
		t.Fatalf("put prev: %+v %v", prev, err)
	}
	for _, k := range []string{"p/a", "p/b", "p/c"} {
		if _, err := cli.Put(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	pre, err := cli.Get(ctx, "p/", clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil || len(pre.Kvs) != 2 || !pre.More || pre.Count != 3 || string(pre.Kvs[0].Key) != "p/c" {
		t.Fatalf("prefix get: %+v %v", pre, err)
	}
	old, err := cli.Get(ctx, "foo", clientv3.WithRev(put.Header.Revision))
	if err != nil || string(old.Kvs[0].Value) != "bar" {
		t.Fatalf("get at rev: %+v %v", old, err)
	}
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("foo"), "=", "baz")).
		Then(clientv3.OpPut("foo", "qux"), clientv3.OpGet("p/", clientv3.WithPrefix())).
		Else(clientv3.OpDelete("foo")).Commit()
	if err != nil || !txn.Succeeded || len(txn.Responses) != 2 || len(txn.Responses[1].GetResponseRange().Kvs) != 3 {
		t.Fatalf("txn: %+v %v", txn, err)
	}
	del, err := cli.Delete(ctx, "p/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || len(del.PrevKvs) != 3 {
		t.Fatalf("delete: %+v %v", del, err)
	}

	// Errors carry etcd's messages, so clientv3 maps them to its values.
	if _, err := cli.Get(ctx, "foo", clientv3.WithRev(1<<40)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("future rev: %v", err)
	}
	cur, _ := cli.Get(ctx, "foo")
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "foo", clientv3.WithRev(2)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compacted: %v", err)
	}
	if _, err := cli.Put(ctx, "big", strings.Repeat("x", 1600*1024)); !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	ops := make([]clientv3.Op, 200)
	for i := range ops {
		ops[i] = clientv3.OpPut("k"+strings.Repeat("x", i), "v")
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("too many ops: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := cli.Put(ctx, "", "x"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
}
