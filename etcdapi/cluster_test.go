package etcdapi

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accordkv/accord"
)

// findMember returns the member with the given etcd ID, or nil.
func findMember(ms []*etcdserverpb.Member, id uint64) *etcdserverpb.Member {
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// transientErr reports whether err is what a call may fail with while the
// cluster changes leaders: a young 3-member test cluster with a 150 ms
// election timeout on a loaded machine running -race does that now and
// then.
func transientErr(err error) bool {
	for _, e := range []error{rpctypes.ErrGRPCTimeoutDueToLeaderFail, rpctypes.ErrGRPCNoLeader, rpctypes.ErrGRPCTimeout,
		rpctypes.ErrGRPCTimeoutDueToConnectionLost, rpctypes.ErrGRPCLeaderChanged, rpctypes.ErrGRPCNotLeader} {
		if isGRPCErr(err, e) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable
}

// retryTransient calls f until it returns nil or an error that is not
// transient, for at most 15 s, and returns f's last error. A call whose
// outcome was unknown may have taken effect: f must accept that.
func retryTransient(f func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil || !transientErr(err) || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// wantErr fails the test unless f, retried while it fails transiently,
// fails with want.
func wantErr(t *testing.T, what string, want error, f func() error) {
	t.Helper()
	if err := retryTransient(f); !isGRPCErr(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// TestMemberLifecycle walks a member through etcd's membership calls on a
// 3-member cluster: list, add as learner, start, update its peer URL (and
// restart it there), promote, remove.
func TestMemberLifecycle(t *testing.T) {
	c := newAPICluster(t, 3, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	// Names and client URLs are published through the log shortly
	// after each member starts.
	eventually(t, 10*time.Second, "every member listed with its name and client URL", func() error {
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		if len(resp.Members) != 3 || resp.Header == nil || resp.Header.ClusterId == 0 {
			return fmt.Errorf("members %v", resp.Members)
		}
		for _, nd := range c.nodes {
			m := findMember(resp.Members, MemberID(nd.Store().NodeID()))
			if m == nil {
				return fmt.Errorf("node %d not listed", nd.idx)
			}
			if m.Name != fmt.Sprintf("node%d", nd.idx) || !slices.Equal(m.ClientURLs, []string{nd.Endpoint()}) ||
				!slices.Equal(m.PeerURLs, []string{"http://" + nd.opts.PeerAddr}) || m.IsLearner {
				return fmt.Errorf("node %d listed as %+v", nd.idx, m)
			}
		}
		return nil
	})

	// Bad and duplicate peer URLs (clientv3 checks the syntax itself, so
	// the raw client sends them).
	raw := etcdserverpb.NewClusterClient(cli.ActiveConnection())
	for _, urls := range [][]string{{"127.0.0.1:1234"}, {"http://127.0.0.1"}, {"ftp://127.0.0.1:1"}, {"http://127.0.0.1:1", "http://127.0.0.1:2"}, nil} {
		if _, err := raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: urls}); !isGRPCErr(err, rpctypes.ErrGRPCMemberBadURLs) {
			t.Fatalf("member add %q: %v", urls, err)
		}
	}
	wantErr(t, "member add of an existing peer URL", rpctypes.ErrGRPCPeerURLExist, func() error {
		_, err := cli.MemberAdd(ctx, []string{"http://" + c.nodes[1].opts.PeerAddr})
		return err
	})

	// Add a learner; it is listed unstarted (no name) until it runs.
	peer := freePort(t)
	// The server resolves an unknown outcome itself (by the member list),
	// so a retry after a transient error is safe.
	var add *clientv3.MemberAddResponse
	if err := retryTransient(func() (err error) { add, err = cli.MemberAddAsLearner(ctx, []string{"http://" + peer}); return err }); err != nil {
		t.Fatal(err)
	}
	newID := add.Member.ID
	if newID == 0 || !add.Member.IsLearner || add.Member.Name != "" || !slices.Equal(add.Member.PeerURLs, []string{"http://" + peer}) {
		t.Fatalf("added member %+v", add.Member)
	}
	if len(add.Members) != 4 || findMember(add.Members, newID) == nil || add.Header == nil {
		t.Fatalf("member add response lists %v", add.Members)
	}
	wantErr(t, "promote a voter", rpctypes.ErrGRPCMemberNotLearner, func() error {
		_, err := cli.MemberPromote(ctx, MemberID(c.nodes[0].Store().NodeID()))
		return err
	})
	wantErr(t, "promote an unknown member", rpctypes.ErrGRPCMemberNotFound, func() error {
		_, err := cli.MemberPromote(ctx, 12345)
		return err
	})

	nd := &apiNode{c: c, idx: 3, dir: t.TempDir(), clientAddr: freePort(t)}
	nd.opts = accord.Options{
		Logger:          testLogger(t, "n3"),
		ElectionTimeout: testElection,
		UnsafeNoFsync:   true,
		PeerAddr:        peer,
		NodeName:        "node3",
		ClientURLs:      []string{"http://" + nd.clientAddr},
		JoinExisting:    true,
		Peers:           []string{c.nodes[0].opts.PeerAddr},
	}
	nd.apiOpts = Options{Logger: testLogger(t, "api3")}
	c.nodes = append(c.nodes, nd)
	nd.start()
	if got := MemberID(nd.Store().NodeID()); got != newID {
		t.Fatalf("the new node took ID %x, added as %x", got, newID)
	}
	var put *clientv3.PutResponse
	if err := retryTransient(func() (err error) { put, err = cli.Put(ctx, "before-promote", "x"); return err }); err != nil {
		t.Fatal(err)
	}
	// Caught up: the new member has the write and lists itself by name.
	eventually(t, 15*time.Second, "the learner to catch up and publish its name", func() error {
		if rev := nd.Store().Revision(); rev < put.Header.Revision {
			return fmt.Errorf("learner at revision %d, want %d", rev, put.Header.Revision)
		}
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		m := findMember(resp.Members, newID)
		if m == nil || m.Name != "node3" || !m.IsLearner || !slices.Equal(m.ClientURLs, []string{nd.Endpoint()}) {
			return fmt.Errorf("learner listed as %+v", m)
		}
		return nil
	})

	// Move it to another peer address, and restart it there. It is
	// stopped first: hashicorp/raft (v1.7.2, and v1.7.3) reads a peer's
	// address without its lock after a successful append while a
	// configuration change rewrites it (hashicorp/raft#681, #471), a race
	// the detector reports when the member is still being replicated to.
	nd.kill()
	peer2 := freePort(t)
	var upd *clientv3.MemberUpdateResponse
	if err := retryTransient(func() (err error) { upd, err = cli.MemberUpdate(ctx, newID, []string{"http://" + peer2}); return err }); err != nil {
		t.Fatal(err)
	}
	if m := findMember(upd.Members, newID); m == nil || !slices.Equal(m.PeerURLs, []string{"http://" + peer2}) {
		t.Fatalf("member update response lists %+v", m)
	}
	wantErr(t, "update an unknown member", rpctypes.ErrGRPCMemberNotFound, func() error {
		_, err := cli.MemberUpdate(ctx, 12345, []string{"http://" + freePort(t)})
		return err
	})
	nd.opts.PeerAddr = peer2
	nd.restart()
	if err := retryTransient(func() (err error) { put, err = cli.Put(ctx, "after-update", "y"); return err }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the moved learner to catch up", func() error {
		if rev := nd.Store().Revision(); rev < put.Header.Revision {
			return fmt.Errorf("learner at revision %d, want %d", rev, put.Header.Revision)
		}
		return nil
	})

	var prom *clientv3.MemberPromoteResponse
	tried := false
	if err := retryTransient(func() (err error) {
		prom, err = cli.MemberPromote(ctx, newID)
		if tried && isGRPCErr(err, rpctypes.ErrGRPCMemberNotLearner) {
			return nil // an earlier attempt with an unknown outcome did it
		}
		tried = true
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if prom != nil {
		if m := findMember(prom.Members, newID); m == nil || m.IsLearner {
			t.Fatalf("member promote response lists %+v", m)
		}
	}
	wantErr(t, "promote twice", rpctypes.ErrGRPCMemberNotLearner, func() error {
		_, err := cli.MemberPromote(ctx, newID)
		return err
	})
	// The new voter serves the etcd API too.
	ncli := newClient(t, nd.Endpoint())
	if resp, err := ncli.Get(ctx, "after-update"); err != nil || len(resp.Kvs) != 1 || resp.Header.MemberId != newID {
		t.Fatalf("get through the new member: %+v %v", resp, err)
	}

	var rm *clientv3.MemberRemoveResponse
	tried = false
	if err := retryTransient(func() (err error) {
		rm, err = cli.MemberRemove(ctx, newID)
		if tried && isGRPCErr(err, rpctypes.ErrGRPCMemberNotFound) {
			return nil // an earlier attempt with an unknown outcome did it
		}
		tried = true
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if rm != nil && (len(rm.Members) != 3 || findMember(rm.Members, newID) != nil) {
		t.Fatalf("member remove response lists %v", rm.Members)
	}
	wantErr(t, "remove twice", rpctypes.ErrGRPCMemberNotFound, func() error {
		_, err := cli.MemberRemove(ctx, newID)
		return err
	})
	list, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list after remove: %+v %v", list, err)
	}
	nd.kill()
	if err := retryTransient(func() error { _, err := cli.Put(ctx, "after-remove", "z"); return err }); err != nil {
		t.Fatal(err)
	}
}

// TestMemberRemoveOnlyMember: removing the only member is refused with
// etcd's "re-configuration failed due to not enough started members",
// with the strict reconfiguration check or without it (issue 17, item 4).
func TestMemberRemoveOnlyMember(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			c := newAPICluster(t, 1, func(_ int, o *accord.Options, _ *Options) { o.NoStrictReconfigCheck = !strict })
			cli := newClient(t, c.Endpoints()...)
			raw := etcdserverpb.NewClusterClient(cli.ActiveConnection())
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			id := MemberID(c.nodes[0].Store().NodeID())
			if _, err := raw.MemberRemove(ctx, &etcdserverpb.MemberRemoveRequest{ID: id}); !isGRPCErr(err, rpctypes.ErrGRPCMemberNotEnoughStarted) {
				t.Fatalf("remove the only member: %v, want %v", err, rpctypes.ErrGRPCMemberNotEnoughStarted)
			}
			if l, err := cli.MemberList(ctx); err != nil || len(l.Members) != 1 {
				t.Fatalf("member list after the refused removal: %+v %v", l, err)
			}
		})
	}
}

// TestStrictReconfigCheck: with one of three members down, the leader
// refuses (etcd's --strict-reconfig-check, on by default) to remove a live
// voter or to add a voter, either of which would leave the cluster without
// a working quorum ("etcdserver: unhealthy cluster"); adding and removing
// a learner, and removing the member that is down, go through. With the
// check off, the live voter's removal is proposed, and the cluster is stuck.
func TestStrictReconfigCheck(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			c := newAPICluster(t, 3, func(_ int, o *accord.Options, _ *Options) { o.NoStrictReconfigCheck = !strict })
			leader := c.leaderNode()
			var followers []*apiNode
			for _, nd := range c.nodes {
				if nd != leader {
					followers = append(followers, nd)
				}
			}
			live, down := followers[0], followers[1]
			cli := newClient(t, leader.Endpoint())
			raw := etcdserverpb.NewClusterClient(cli.ActiveConnection())
			ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
			defer cancel()
			eventually(t, 10*time.Second, "every member to publish its name", func() error {
				l, err := cli.MemberList(ctx)
				if err != nil {
					return err
				}
				for _, m := range l.Members {
					if m.Name == "" {
						return fmt.Errorf("member %x unstarted", m.ID)
					}
				}
				return nil
			})
			downID := MemberID(down.Store().NodeID())
			down.kill()

			remove := func(id uint64) error {
				_, err := raw.MemberRemove(ctx, &etcdserverpb.MemberRemoveRequest{ID: id})
				return err
			}
			if strict {
				if err := remove(MemberID(live.Store().NodeID())); !isGRPCErr(err, rpctypes.ErrGRPCUnhealthy) {
					t.Fatalf("remove a live voter with another one down: %v, want %v", err, rpctypes.ErrGRPCUnhealthy)
				}
				_, err := raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: []string{"http://" + freePort(t)}})
				if !isGRPCErr(err, rpctypes.ErrGRPCUnhealthy) {
					t.Fatalf("add a voter with a voter down: %v, want %v", err, rpctypes.ErrGRPCUnhealthy)
				}
				add, err := raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: []string{"http://" + freePort(t)}, IsLearner: true})
				if err != nil {
					t.Fatalf("add a learner with a voter down: %v", err)
				}
				if err := retryTransient(func() error { return remove(add.Member.ID) }); err != nil {
					t.Fatalf("remove the learner: %v", err)
				}
				if err := retryTransient(func() error { return remove(downID) }); err != nil {
					t.Fatalf("remove the voter that is down: %v", err)
				}
				return
			}
			// Unchecked, the removal is proposed, and the configuration it
			// makes ({leader, down}) can commit nothing, the removal itself
			// included: the request times out. This is what the check
			// prevents.
			if err := remove(MemberID(live.Store().NodeID())); err != nil && !isGRPCErr(err, rpctypes.ErrGRPCTimeout) &&
				!isGRPCErr(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail) {
				t.Fatalf("remove a live voter with the check off: %v, want it proposed (and then stuck)", err)
			}
		})
	}
}

// TestStrictReconfigCheckUnstartedMember: a voter that was added (etcd's
// "member add" before the member runs) and never started does not count as
// started. On a 2-member cluster with such a third voter, the strict
// reconfiguration check refuses to add another voter or to remove a
// started one, with etcd's "re-configuration failed due to not enough
// started members": either would leave fewer started voters than a quorum
// (3 of 4; 2 of 2 with one of them unstarted). Removing the unstarted voter
// goes through, and with the check off the voter is added.
func TestStrictReconfigCheckUnstartedMember(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			c := newAPICluster(t, 2, func(_ int, o *accord.Options, _ *Options) { o.NoStrictReconfigCheck = !strict })
			leader := c.leaderNode()
			var follower *apiNode
			for _, nd := range c.nodes {
				if nd != leader {
					follower = nd
				}
			}
			cli := newClient(t, leader.Endpoint())
			raw := etcdserverpb.NewClusterClient(cli.ActiveConnection())
			ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
			defer cancel()
			eventually(t, 10*time.Second, "both members to publish their names", func() error {
				l, err := cli.MemberList(ctx)
				if err != nil {
					return err
				}
				for _, m := range l.Members {
					if m.Name == "" {
						return fmt.Errorf("member %x unstarted", m.ID)
					}
				}
				return nil
			})
			// Two of two voters started: a third may be added. It never runs.
			var unstarted *etcdserverpb.MemberAddResponse
			if err := retryTransient(func() (err error) {
				unstarted, err = raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: []string{"http://" + freePort(t)}})
				return err
			}); err != nil {
				t.Fatalf("add a voter to two started ones: %v", err)
			}

			addVoter := func() error {
				_, err := raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: []string{"http://" + freePort(t)}})
				return err
			}
			remove := func(id uint64) error {
				_, err := raw.MemberRemove(ctx, &etcdserverpb.MemberRemoveRequest{ID: id})
				return err
			}
			if !strict {
				// 2 of 4 voters live: the new configuration cannot commit,
				// the addition included, so it does not come back in time.
				if err := addVoter(); err != nil && !transientErr(err) {
					t.Fatalf("add a voter with the check off: %v, want it proposed", err)
				}
				if ms, err := leader.Store().Members(ctx, accord.WithSerializable()); err != nil || len(ms) != 4 {
					t.Fatalf("with the check off, the leader lists %d members (%v), want the fourth proposed", len(ms), err)
				}
				return
			}
			wantErr(t, "add a fourth voter with 2 of 3 started", rpctypes.ErrGRPCMemberNotEnoughStarted, addVoter)
			wantErr(t, "remove a started voter with the third unstarted", rpctypes.ErrGRPCMemberNotEnoughStarted, func() error {
				return remove(MemberID(follower.Store().NodeID()))
			})
			if l, err := cli.MemberList(ctx); err != nil || len(l.Members) != 3 {
				t.Fatalf("member list after the refused changes: %+v %v", l, err)
			}
			if err := retryTransient(func() error { return remove(unstarted.Member.ID) }); err != nil {
				t.Fatalf("remove the unstarted voter: %v", err)
			}
		})
	}
}
