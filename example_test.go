package accord_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/accordkv/accord"
)

// This example opens a single-node store in a fresh directory, writes a key
// and reads it back. The first write of an empty store creates revision 2,
// as in etcd.
func Example() {
	dir, err := os.MkdirTemp("", "accord-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := accord.Open(dir, nil) // nil Options: one node, defaults
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put, err := s.Put(ctx, "config/feature-x", []byte("on"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put at revision", put.Revision)

	resp, err := s.Get(ctx, "config/feature-x") // linearizable by default
	if err != nil {
		log.Fatal(err)
	}
	kv := resp.KVs[0]
	fmt.Printf("%s = %s (version %d, created at %d)\n", kv.Key, kv.Value, kv.Version, kv.CreateRevision)

	resp, err = s.Get(ctx, "config/missing")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("missing key:", resp.Count, "results")
	// Output:
	// put at revision 2
	// config/feature-x = on (version 1, created at 2)
	// missing key: 0 results
}

// openExample opens a store in a new temporary directory; cleanup closes it
// and removes the directory.
func openExample() (s *accord.Store, cleanup func()) {
	dir, err := os.MkdirTemp("", "accord-example-")
	if err != nil {
		log.Fatal(err)
	}
	s, err = accord.Open(dir, nil)
	if err != nil {
		os.RemoveAll(dir)
		log.Fatal(err)
	}
	return s, func() {
		s.Close()
		os.RemoveAll(dir)
	}
}

// Watch a prefix: every change arrives once, in revision order, with the
// events of one transaction together.
func ExampleStore_Watch() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The watch is registered when Watch returns: nothing written after
	// this point is missed.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := s.Watch(wctx, "services/", accord.WithPrefix())

	if _, err := s.Put(ctx, "services/api", []byte("10.0.0.1:80")); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Put(ctx, "services/db", []byte("10.0.0.2:5432")); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Put(ctx, "unrelated", []byte("x")); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Delete(ctx, "services/api"); err != nil {
		log.Fatal(err)
	}

	for seen := 0; seen < 3; {
		resp := <-events
		if resp.Err != nil {
			log.Fatal(resp.Err)
		}
		for _, ev := range resp.Events {
			fmt.Printf("rev %d: %s %s %q\n", ev.KV.ModRevision, ev.Type, ev.KV.Key, ev.KV.Value)
			seen++
		}
	}
	// Output:
	// rev 2: PUT services/api "10.0.0.1:80"
	// rev 3: PUT services/db "10.0.0.2:5432"
	// rev 5: DELETE services/api ""
}

// Compare-and-swap: write only if nobody changed the key since it was read,
// by comparing its ModRevision.
func ExampleStore_Txn() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := s.Put(ctx, "counter", []byte("1")); err != nil {
		log.Fatal(err)
	}
	resp, err := s.Get(ctx, "counter")
	if err != nil {
		log.Fatal(err)
	}
	seen := resp.KVs[0].ModRevision

	cas := func(value string) {
		t, err := s.Txn(ctx).
			If(accord.Compare(accord.ModRevision("counter"), "=", seen)).
			Then(accord.OpPut("counter", []byte(value))).
			Else(accord.OpGet("counter")).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		if t.Succeeded {
			fmt.Printf("swapped to %s at revision %d\n", value, t.Revision)
			return
		}
		cur := t.Responses[0].Get.KVs[0]
		fmt.Printf("conflict: counter is %s since revision %d\n", cur.Value, cur.ModRevision)
	}
	cas("2") // succeeds: nothing changed since the read
	cas("3") // fails: the first swap changed ModRevision
	// Output:
	// swapped to 2 at revision 3
	// conflict: counter is 2 since revision 3
}

// A lease ties keys to a lifetime: they are deleted together when the lease
// expires (unless kept alive) or is revoked.
func ExampleStore_Grant() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lease, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range []string{"members/a", "members/b"} {
		if _, err := s.Put(ctx, k, []byte("alive"), accord.WithLease(lease)); err != nil {
			log.Fatal(err)
		}
	}
	st, err := s.TimeToLive(ctx, lease, accord.WithAttachedKeys())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("attached:", st.Keys)

	// A member process would keep the lease alive with KeepAlive(ctx, lease)
	// for as long as it runs. Revoking it deletes its keys at once.
	if err := s.Revoke(ctx, lease); err != nil {
		log.Fatal(err)
	}
	resp, err := s.Get(ctx, "members/", accord.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("members left:", resp.Count)

	_, err = s.KeepAliveOnce(ctx, lease)
	fmt.Println("keep-alive after revoke:", errors.Is(err, accord.ErrLeaseNotFound))
	// Output:
	// attached: [members/a members/b]
	// members left: 0
	// keep-alive after revoke: true
}

// Back up a running store, restore the backup into a new directory and open
// it: keys, history and revision come back as they were.
func ExampleRestore() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for i, v := range []string{"v1", "v2"} {
		if _, err := s.Put(ctx, "app/version", []byte(v)); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("wrote %s (put %d)\n", v, i+1)
	}
	var backup bytes.Buffer
	if err := s.Backup(ctx, &backup); err != nil {
		log.Fatal(err)
	}

	root, err := os.MkdirTemp("", "accord-restore-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	dir := filepath.Join(root, "restored") // must not exist, or be empty
	if err := accord.Restore(&backup, dir, nil); err != nil {
		log.Fatal(err)
	}
	r, err := accord.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	resp, err := r.Get(ctx, "app/version")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("restored: %s at revision %d\n", resp.KVs[0].Value, resp.Revision)
	old, err := r.Get(ctx, "app/version", accord.WithRev(2))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("history kept: %s at revision 2\n", old.KVs[0].Value)
	// Output:
	// wrote v1 (put 1)
	// wrote v2 (put 2)
	// restored: v2 at revision 3
	// history kept: v1 at revision 2
}
