package accord_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/accordkv/accord"
)

// appConfig is the typed configuration the examples share between replicas.
type appConfig struct {
	Checkout bool   `json:"checkout"`
	Banner   string `json:"banner,omitempty"`
}

// Bind a typed configuration to a key: Load is free to call on every
// request, Set writes through the store, and a change made by anyone (here
// a raw Put, as another replica or etcdctl would make) shows up by itself.
func ExampleBindVar() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg, err := accord.BindVar[appConfig](ctx, s, "config/app", nil) // JSON by default
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	fmt.Printf("missing key: %+v\n", cfg.Load())

	// Set returns once the Var reflects the write: read your own writes.
	if _, err := cfg.Set(ctx, appConfig{Checkout: true}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after Set: %+v\n", cfg.Load())

	// Someone else writes; wait until the Var has it.
	put, err := s.Put(ctx, "config/app", []byte(`{"checkout":true,"banner":"spring sale"}`))
	if err != nil {
		log.Fatal(err)
	}
	snap, err := cfg.Wait(ctx, func(s accord.VarSnapshot[appConfig]) bool { return s.Rev >= put.Revision })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("at revision %d: %+v\n", snap.Rev, snap.Value)

	// A version that does not decode keeps the last good value.
	if _, err := s.Put(ctx, "config/app", []byte(`{"checkout":"maybe"}`)); err != nil {
		log.Fatal(err)
	}
	snap, err = cfg.Wait(ctx, func(s accord.VarSnapshot[appConfig]) bool { return s.Err != nil })
	if err != nil {
		log.Fatal(err)
	}
	var bad *accord.DecodeError
	if errors.As(snap.Err, &bad) {
		fmt.Printf("revision %d does not decode; still serving %+v\n", bad.Rev, cfg.Load())
	}
	// Output:
	// missing key: {Checkout:false Banner:}
	// after Set: {Checkout:true Banner:}
	// at revision 3: {Checkout:true Banner:spring sale}
	// revision 4 does not decode; still serving {Checkout:true Banner:spring sale}
}

// CompareAndSet turns a read-modify-write into one that cannot lose a
// concurrent update: it writes only if the key is still at the revision the
// change was computed from.
func ExampleVar_CompareAndSet() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg, err := accord.BindVar[appConfig](ctx, s, "config/app", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()

	seen := cfg.Snapshot() // the key does not exist yet: Rev 0
	next := seen.Value
	next.Banner = "hello"
	rev, err := cfg.CompareAndSet(ctx, seen.Rev, next)
	fmt.Println("first update:", rev, err)

	// A second writer that computed its change from the same snapshot loses
	// and must start again from a fresh one.
	_, err = cfg.CompareAndSet(ctx, seen.Rev, appConfig{Checkout: true})
	fmt.Println("stale update conflicts:", errors.Is(err, accord.ErrConflict))
	seen = cfg.Snapshot()
	next = seen.Value
	next.Checkout = true
	if _, err := cfg.CompareAndSet(ctx, seen.Rev, next); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("both changes kept: %+v\n", cfg.Load())
	// Output:
	// first update: 2 <nil>
	// stale update conflicts: true
	// both changes kept: {Checkout:true Banner:hello}
}

// A prefix decoded into a map: one key per entry, so that entries can be
// changed independently (here with plain Puts), while the service reads
// the whole map at once.
func ExampleBindPrefixVar() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for key, limit := range map[string]string{"limits/search": "100", "limits/upload": "5"} {
		if _, err := s.Put(ctx, key, []byte(limit)); err != nil {
			log.Fatal(err)
		}
	}
	limits, err := accord.BindPrefixVar[int](ctx, s, "limits/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer limits.Close()
	fmt.Println("limits:", limits.Load())

	put, err := s.Put(ctx, "limits/upload", []byte("10"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := limits.Wait(ctx, func(s accord.VarSnapshot[map[string]int]) bool { return s.Rev >= put.Revision }); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after a put:", limits.Load())

	// Set writes the whole map in one transaction: changed keys are put,
	// missing ones deleted.
	if _, err := limits.Set(ctx, map[string]int{"search": 100, "export": 1}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Set:", limits.Load())
	// Output:
	// limits: map[search:100 upload:5]
	// after a put: map[search:100 upload:10]
	// after Set: map[export:1 search:100]
}

// Follow every change of a Var: take a snapshot, use it, then wait on its
// Changed channel. Changes made while the reader is busy are coalesced:
// it wakes once and sees the latest.
func ExampleVarSnapshot_Changed() {
	s, cleanup := openExample()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg, err := accord.BindVar[appConfig](ctx, s, "config/app", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			snap := cfg.Snapshot()
			if snap.Value.Banner != "" {
				fmt.Println("banner:", snap.Value.Banner)
			}
			if snap.Value.Banner == "last" || snap.Err != nil {
				return
			}
			select {
			case <-snap.Changed():
			case <-ctx.Done():
				return
			}
		}
	}()
	if _, err := s.Put(ctx, "config/app", []byte(`{"banner":"last"}`)); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// banner: last
}
