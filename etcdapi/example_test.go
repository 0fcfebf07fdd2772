package etcdapi_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
)

// Serve a store over the etcd v3 API and use it with clientv3, as etcdctl
// or any etcd client would.
func Example() {
	dir, err := os.MkdirTemp("", "accord-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := accord.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	srv, err := etcdapi.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // etcd's default is 127.0.0.1:2379
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + ln.Addr().String()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "config/feature-x", "on"); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "config/", clientv3.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		fmt.Printf("%s = %s (version %d)\n", kv.Key, kv.Value, kv.Version)
	}
	// The same write, seen through the library.
	got, err := store.Get(ctx, "config/feature-x")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("store:", string(got.KVs[0].Value))
	// Output:
	// config/feature-x = on (version 1)
	// store: on
}
