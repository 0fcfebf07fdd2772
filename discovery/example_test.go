package discovery_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/discovery"
)

// Instances register under a prefix with a lease kept alive in the
// background; a client follows the prefix with a Resolver and picks among
// the instances. Close deregisters at once.
func Example() {
	dir, err := os.MkdirTemp("", "discovery-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := accord.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Each instance, at startup. ctx bounds the registration's life: use
	// the service's own context.
	for i, addr := range []string{"10.0.0.1:8080", "10.0.0.2:8080"} {
		reg, err := discovery.Register(ctx, s, "services/api/", fmt.Sprintf("api-%d", i+1), []byte(addr), 10*time.Second)
		if err != nil {
			log.Fatal(err)
		}
		defer reg.Close()
	}

	// A client.
	r, err := discovery.NewResolver(ctx, s, "services/api/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for _, inst := range r.Instances() {
		fmt.Printf("%s at %s\n", inst.ID, inst.Value)
	}

	// A third instance comes and goes; the resolver follows.
	reg, err := discovery.Register(ctx, s, "services/api/", "api-3", []byte("10.0.0.3:8080"), 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	st, err := r.Wait(ctx, func(st discovery.State) bool { return len(st.Instances) == 3 })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("instances:", len(st.Instances), "stale:", st.Stale)
	if err := reg.Close(); err != nil {
		log.Fatal(err)
	}
	st, err = r.Wait(ctx, func(st discovery.State) bool { return len(st.Instances) == 2 })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after api-3 deregistered:", len(st.Instances))
	// Output:
	// api-1 at 10.0.0.1:8080
	// api-2 at 10.0.0.2:8080
	// instances: 3 stale: false
	// after api-3 deregistered: 2
}

// A client that balances requests round-robin over the live instances.
func ExampleResolver_Instances() {
	dir, err := os.MkdirTemp("", "discovery-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := accord.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"a", "b", "c"} {
		reg, err := discovery.Register(ctx, s, "services/echo/", id, []byte(id+".internal:80"), 10*time.Second)
		if err != nil {
			log.Fatal(err)
		}
		defer reg.Close()
	}
	r, err := discovery.NewResolver(ctx, s, "services/echo/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	next := 0
	pick := func() (discovery.Instance, bool) {
		insts := r.Instances() // never blocks: the last list known
		if len(insts) == 0 {
			return discovery.Instance{}, false
		}
		next++
		return insts[next%len(insts)], true
	}
	for range 4 {
		inst, ok := pick()
		if !ok {
			log.Fatal("no instances")
		}
		fmt.Println("send to", string(inst.Value))
	}
	// Output:
	// send to b.internal:80
	// send to c.internal:80
	// send to a.internal:80
	// send to b.internal:80
}
