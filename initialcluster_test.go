package accord

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInitialCluster: three nodes started at the same moment with the same
// static member list form one cluster; a restart with state ignores the
// list; bad lists are refused at Open.
func TestInitialCluster(t *testing.T) {
	c := &testCluster{t: t}
	t.Cleanup(c.stopAll)
	var members []InitialMember
	for i := range 3 {
		nd := &testNode{c: c, idx: i, dir: t.TempDir()}
		nd.opts = Options{
			Logger:          testLogger(t, fmt.Sprintf("n%d", i)),
			ElectionTimeout: clusterElection,
			UnsafeNoFsync:   true,
			PeerAddr:        freePort(t),
			NodeID:          fmt.Sprintf("infra%d", i),
		}
		members = append(members, InitialMember{ID: nd.opts.NodeID, PeerAddr: nd.opts.PeerAddr})
		c.nodes = append(c.nodes, nd)
	}
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		nd.opts.InitialCluster = members
		wg.Go(nd.start)
	}
	wg.Wait()
	c.waitConverged()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	f := c.follower().store()
	if _, err := f.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	ms, err := f.Members(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %+v %v", ms, err)
	}
	for _, m := range ms {
		if m.IsLearner {
			t.Fatalf("%s is a learner", m.ID)
		}
	}

	// With state, the list is ignored: even one naming only this node.
	nd := c.nodes[1]
	nd.kill()
	nd.opts.InitialCluster = members[1:2]
	nd.restart(false)
	c.waitConverged()
	r, err := nd.store().Get(ctx, "k", WithSerializable())
	if err != nil || len(r.KVs) != 1 {
		t.Fatalf("after restart: %+v %v", r, err)
	}
	if ms, err := nd.store().Members(ctx); err != nil || len(ms) != 3 {
		t.Fatalf("after restart members %+v %v", ms, err)
	}

	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"NoNodeID":     {Options{PeerAddr: "127.0.0.1:0", InitialCluster: members}, "needs NodeID"},
		"NotListed":    {Options{PeerAddr: "127.0.0.1:0", NodeID: "x", InitialCluster: members}, "does not list"},
		"NoPeerAddr":   {Options{NodeID: "infra0", InitialCluster: members}, "needs PeerAddr"},
		"JoinExisting": {Options{PeerAddr: "127.0.0.1:0", NodeID: "infra0", InitialCluster: members, JoinExisting: true, Peers: []string{"a:1"}}, "exclude"},
		"Duplicate":    {Options{PeerAddr: "127.0.0.1:0", NodeID: "infra0", InitialCluster: append(members, members[0])}, "twice"},
		"WrongAddr":    {Options{PeerAddr: freePort(t), NodeID: "infra0", InitialCluster: members}, "advertises"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.o.UnsafeNoFsync = true
			s, err := Open(t.TempDir(), &tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
