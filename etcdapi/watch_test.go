package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/accordkv/accord"
)

// watchWait bounds every wait for a watch response.
const watchWait = 10 * time.Second

// watchNext returns the next response of a clientv3 watch.
func watchNext(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return resp
	case <-time.After(watchWait):
		t.Fatalf("no watch response within %v", watchWait)
	}
	panic("unreachable")
}

// watchEvents reads responses until it has n events; it fails on an
// error, a progress notification or a revision split across responses.
func watchEvents(t *testing.T, wch clientv3.WatchChan, n int) ([]*clientv3.Event, []clientv3.WatchResponse) {
	t.Helper()
	var evs []*clientv3.Event
	var resps []clientv3.WatchResponse
	for len(evs) < n {
		resp := watchNext(t, wch)
		if err := resp.Err(); err != nil {
			t.Fatalf("watch error after %d events: %v", len(evs), err)
		}
		if len(resp.Events) == 0 {
			t.Fatalf("unexpected empty response after %d events: %+v", len(evs), resp)
		}
		if len(evs) > 0 && resp.Events[0].Kv.ModRevision <= evs[len(evs)-1].Kv.ModRevision {
			t.Fatalf("revision %d after %d", resp.Events[0].Kv.ModRevision, evs[len(evs)-1].Kv.ModRevision)
		}
		if resp.Header.Revision < resp.Events[len(resp.Events)-1].Kv.ModRevision {
			t.Fatalf("header revision %d below its last event %d", resp.Header.Revision, resp.Events[len(resp.Events)-1].Kv.ModRevision)
		}
		evs = append(evs, resp.Events...)
		resps = append(resps, resp)
	}
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	return evs, resps
}

// watchSome returns the events of the next response, which must have some.
func watchSome(t *testing.T, wch clientv3.WatchChan) []*clientv3.Event {
	t.Helper()
	resp := watchNext(t, wch)
	if err := resp.Err(); err != nil {
		t.Fatalf("watch error: %v", err)
	}
	if len(resp.Events) == 0 {
		t.Fatalf("unexpected empty response %+v", resp)
	}
	return resp.Events
}

// watchQuiet checks that no response arrives for a short while.
func watchQuiet(t *testing.T, wch clientv3.WatchChan) {
	t.Helper()
	select {
	case resp := <-wch:
		t.Fatalf("unexpected response %+v", resp)
	case <-time.After(100 * time.Millisecond):
	}
}

type evWant struct {
	typ  mvccpb.Event_EventType
	key  string
	val  string
	rev  int64
	prev string // "" = no prev_kv
}

func checkEvents(t *testing.T, name string, got []*clientv3.Event, want []evWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", name, len(got), len(want))
	}
	for i, w := range want {
		ev := got[i]
		if ev.Type != w.typ || string(ev.Kv.Key) != w.key || string(ev.Kv.Value) != w.val || ev.Kv.ModRevision != w.rev {
			t.Fatalf("%s: event %d = %v %q=%q @%d, want %v %q=%q @%d", name, i, ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, w.typ, w.key, w.val, w.rev)
		}
		switch {
		case w.prev == "" && ev.PrevKv != nil:
			t.Fatalf("%s: event %d has prev_kv %q", name, i, ev.PrevKv.Value)
		case w.prev != "" && (ev.PrevKv == nil || string(ev.PrevKv.Value) != w.prev):
			t.Fatalf("%s: event %d prev_kv %v, want %q", name, i, ev.PrevKv, w.prev)
		}
	}
}

func TestWatchEvents(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	start, err := cli.Get(ctx, "nothing")
	if err != nil {
		t.Fatal(err)
	}
	base := start.Header.Revision

	wKey := cli.Watch(ctx, "foo", clientv3.WithCreatedNotify())
	created := watchNext(t, wKey)
	if !created.Created || created.Header.Revision != base || created.Header.ClusterId == 0 || created.Header.MemberId == 0 {
		t.Fatalf("created response %+v", created)
	}
	wPrefix := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	wFrom := cli.Watch(ctx, "m", clientv3.WithFromKey())
	wNoPut := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithPrevKV())
	wNoDel := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithFilterDelete())
	wRange := cli.Watch(ctx, "p/b", clientv3.WithRange("p/c"))

	if _, err := cli.Put(ctx, "foo", "1"); err != nil { // base+1
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "p/a", "1"); err != nil { // base+2
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "p/a", "2"); err != nil { // base+3
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "p/a"); err != nil { // base+4
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("p/b", "b"), clientv3.OpPut("p/c", "c")).Commit(); err != nil { // base+5
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "a", "not watched"); err != nil { // base+6
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "z", "1"); err != nil { // base+7
		t.Fatal(err)
	}

	evs, _ := watchEvents(t, wKey, 1)
	checkEvents(t, "key", evs, []evWant{{mvccpb.PUT, "foo", "1", base + 1, ""}})
	if !evs[0].IsCreate() || evs[0].Kv.Version != 1 || evs[0].Kv.CreateRevision != base+1 {
		t.Fatalf("create event %+v", evs[0].Kv)
	}

	// watchEvents also checks that no revision (the txn's two events) is
	// split across responses.
	evs, _ = watchEvents(t, wPrefix, 5)
	checkEvents(t, "prefix", evs, []evWant{
		{mvccpb.PUT, "p/a", "1", base + 2, ""},
		{mvccpb.PUT, "p/a", "2", base + 3, "1"},
		{mvccpb.DELETE, "p/a", "", base + 4, "2"},
		{mvccpb.PUT, "p/b", "b", base + 5, ""},
		{mvccpb.PUT, "p/c", "c", base + 5, ""},
	})
	if del := evs[2].Kv; del.CreateRevision != 0 || del.Version != 0 || del.Value != nil {
		t.Fatalf("delete event kv %+v: want key and mod_revision only", del)
	}

	evs, _ = watchEvents(t, wFrom, 5)
	checkEvents(t, "from key", evs, []evWant{
		{mvccpb.PUT, "p/a", "1", base + 2, ""},
		{mvccpb.PUT, "p/a", "2", base + 3, ""},
		{mvccpb.DELETE, "p/a", "", base + 4, ""},
		{mvccpb.PUT, "p/b", "b", base + 5, ""},
		{mvccpb.PUT, "p/c", "c", base + 5, ""},
	})
	evs, _ = watchEvents(t, wFrom, 1)
	checkEvents(t, "from key", evs, []evWant{{mvccpb.PUT, "z", "1", base + 7, ""}})

	evs, _ = watchEvents(t, wNoPut, 1)
	checkEvents(t, "no put", evs, []evWant{{mvccpb.DELETE, "p/a", "", base + 4, "2"}})

	evs, _ = watchEvents(t, wNoDel, 4)
	checkEvents(t, "no delete", evs, []evWant{
		{mvccpb.PUT, "p/a", "1", base + 2, ""},
		{mvccpb.PUT, "p/a", "2", base + 3, ""},
		{mvccpb.PUT, "p/b", "b", base + 5, ""},
		{mvccpb.PUT, "p/c", "c", base + 5, ""},
	})

	evs, _ = watchEvents(t, wRange, 1)
	checkEvents(t, "range", evs, []evWant{{mvccpb.PUT, "p/b", "b", base + 5, ""}})

	watchQuiet(t, wKey)
	watchQuiet(t, wNoPut)
	watchQuiet(t, wRange)
}

func TestWatchHistory(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	var revs []int64
	for i := range 5 {
		r, err := cli.Put(ctx, "h/k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	d, err := cli.Delete(ctx, "h/k")
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, d.Header.Revision)

	// From the first write: all of it, in order, then live events.
	wch := cli.Watch(ctx, "h/", clientv3.WithPrefix(), clientv3.WithRev(revs[0]), clientv3.WithPrevKV())
	evs, _ := watchEvents(t, wch, 6)
	want := []evWant{{mvccpb.PUT, "h/k", "0", revs[0], ""}}
	for i := 1; i < 5; i++ {
		want = append(want, evWant{mvccpb.PUT, "h/k", fmt.Sprint(i), revs[i], fmt.Sprint(i - 1)})
	}
	want = append(want, evWant{mvccpb.DELETE, "h/k", "", revs[5], "4"})
	checkEvents(t, "replay", evs, want)
	live, err := cli.Put(ctx, "h/k", "live")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ = watchEvents(t, wch, 1)
	checkEvents(t, "live", evs, []evWant{{mvccpb.PUT, "h/k", "live", live.Header.Revision, ""}})

	// From the middle.
	mid := cli.Watch(ctx, "h/k", clientv3.WithRev(revs[3]))
	evs, _ = watchEvents(t, mid, 4)
	if evs[0].Kv.ModRevision != revs[3] || evs[3].Kv.ModRevision != live.Header.Revision {
		t.Fatalf("replay from %d: %v .. %v", revs[3], evs[0].Kv, evs[3].Kv)
	}

	// From the future: nothing until the store gets there.
	futureRev := live.Header.Revision + 3
	fut := cli.Watch(ctx, "h/k", clientv3.WithRev(futureRev), clientv3.WithCreatedNotify())
	if cr := watchNext(t, fut); !cr.Created || cr.Header.Revision != live.Header.Revision {
		t.Fatalf("created %+v, want revision %d", cr, live.Header.Revision)
	}
	for i := range 3 {
		if _, err := cli.Put(ctx, "h/k", fmt.Sprint("f", i)); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ = watchEvents(t, fut, 1)
	checkEvents(t, "future", evs, []evWant{{mvccpb.PUT, "h/k", "f2", futureRev, ""}})
}

func TestWatchCancel(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	wctx, wcancel := context.WithCancel(ctx)
	wch := cli.Watch(wctx, "c")
	keep := cli.Watch(ctx, "c") // same stream: it must survive the cancel
	if _, err := cli.Put(ctx, "c", "1"); err != nil {
		t.Fatal(err)
	}
	watchEvents(t, wch, 1)
	watchEvents(t, keep, 1)
	wcancel()
	// clientv3 closes the channel (after at most a final canceled response).
	closed := false
	for i := 0; i < 3 && !closed; i++ {
		select {
		case resp, ok := <-wch:
			closed = !ok
			if len(resp.Events) > 0 {
				t.Fatalf("events after cancel: %+v", resp)
			}
		case <-time.After(watchWait):
			t.Fatal("canceled watch channel not closed")
		}
	}
	if !closed {
		t.Fatal("canceled watch channel not closed")
	}
	if _, err := cli.Put(ctx, "c", "2"); err != nil {
		t.Fatal(err)
	}
	evs, _ := watchEvents(t, keep, 1)
	checkEvents(t, "kept", evs, []evWant{{mvccpb.PUT, "c", "2", evs[0].Kv.ModRevision, ""}})
}

// rawWatch opens a Watch stream on cli's connection, for what clientv3
// hides.
type rawWatch struct {
	t      *testing.T
	stream pb.Watch_WatchClient
	recvc  chan *pb.WatchResponse
	errc   chan error
}

func newRawWatch(t *testing.T, ctx context.Context, conn grpc.ClientConnInterface) *rawWatch {
	t.Helper()
	stream, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rw := &rawWatch{t: t, stream: stream, recvc: make(chan *pb.WatchResponse, 1024), errc: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				rw.errc <- err
				return
			}
			select {
			case rw.recvc <- resp:
			case <-ctx.Done():
				rw.errc <- ctx.Err()
				return
			}
		}
	}()
	t.Cleanup(func() { <-done })
	return rw
}

func (rw *rawWatch) send(req *pb.WatchRequest) {
	rw.t.Helper()
	if err := rw.stream.Send(req); err != nil {
		rw.t.Fatal(err)
	}
}

func (rw *rawWatch) create(cr *pb.WatchCreateRequest) {
	rw.t.Helper()
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}})
}

func (rw *rawWatch) next() *pb.WatchResponse {
	rw.t.Helper()
	select {
	case resp := <-rw.recvc:
		return resp
	case err := <-rw.errc:
		rw.t.Fatalf("watch stream ended: %v", err)
	case <-time.After(watchWait):
		rw.t.Fatalf("no watch response within %v", watchWait)
	}
	panic("unreachable")
}

func TestWatchProtocol(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn := cli.ActiveConnection()

	// No watchers: a progress request is answered at once.
	empty := newRawWatch(t, ctx, conn)
	empty.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	cur := c.nodes[0].Store().Revision()
	if r := empty.next(); r.WatchId != invalidWatchID || r.Header.Revision != cur || r.Created || r.Canceled || len(r.Events) > 0 {
		t.Fatalf("progress without watchers: %+v (revision %d)", r, cur)
	}

	rw := newRawWatch(t, ctx, conn)
	rw.create(&pb.WatchCreateRequest{Key: []byte("a")})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 0 || r.Header.Revision != cur {
		t.Fatalf("first watch: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 7 {
		t.Fatalf("chosen id: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("c"), WatchId: 7})
	if r := rw.next(); !r.Created || !r.Canceled || r.WatchId != invalidWatchID || r.CancelReason != reasonDuplicateID {
		t.Fatalf("duplicate id: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("c")})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 1 {
		t.Fatalf("second auto id: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("z"), RangeEnd: []byte("a")})
	if r := rw.next(); !r.Created || !r.Canceled || r.WatchId != invalidWatchID || r.CancelReason != reasonEmptyRange {
		t.Fatalf("empty range: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	if r := rw.next(); !r.Created || !r.Canceled || r.WatchId != invalidWatchID || r.CancelReason != rpctypes.ErrCompacted.Error() {
		t.Fatalf("negative start revision: %+v", r)
	}
	// An empty key is "\x00": with range_end "\x00", everything.
	rw.create(&pb.WatchCreateRequest{RangeEnd: []byte{0}})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 2 {
		t.Fatalf("watch all: %+v", r)
	}

	put, err := cli.Put(ctx, "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]*pb.WatchResponse{}
	for range 2 {
		r := rw.next()
		got[r.WatchId] = r
	}
	for _, id := range []int64{0, 2} {
		r := got[id]
		if r == nil || len(r.Events) != 1 || string(r.Events[0].Kv.Key) != "a" || r.Header.Revision != put.Header.Revision || r.Fragment {
			t.Fatalf("event for watch %d: %+v", id, r)
		}
	}

	// Cancel of an unknown ID: no answer (the progress answer comes next).
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 99}}})
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}})
	if r := rw.next(); !r.Canceled || r.WatchId != 0 || r.Created {
		t.Fatalf("cancel: %+v", r)
	}
	put2, err := cli.Put(ctx, "a", "2")
	if err != nil {
		t.Fatal(err)
	}
	if r := rw.next(); r.WatchId != 2 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != put2.Header.Revision {
		t.Fatalf("after cancel: %+v (the canceled watch must be silent)", r)
	}
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	if r := rw.next(); r.WatchId != invalidWatchID || r.Header.Revision != put2.Header.Revision || len(r.Events) > 0 || r.Canceled {
		t.Fatalf("progress: %+v", r)
	}
	// WatchId 0 asks for an ID: the next automatic one, not a freed one.
	rw.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 0})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 3 {
		t.Fatalf("re-create: %+v", r)
	}
	// A freed ID can be chosen again.
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}})
	if r := rw.next(); !r.Canceled || r.WatchId != 7 {
		t.Fatalf("cancel 7: %+v", r)
	}
	rw.create(&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7})
	if r := rw.next(); !r.Created || r.Canceled || r.WatchId != 7 {
		t.Fatalf("re-use 7: %+v", r)
	}
	if err := rw.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// A half-closed stream goes on sending, as etcd's.
	put3, err := cli.Put(ctx, "a", "3")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for range 2 {
		r := rw.next()
		if len(r.Events) != 1 || r.Events[0].Kv.ModRevision != put3.Header.Revision {
			t.Fatalf("after CloseSend: %+v", r)
		}
		seen[r.WatchId] = true
	}
	if !seen[2] || !seen[3] {
		t.Fatalf("after CloseSend: events for %v, want 2 and 3", seen)
	}
	cancel()
}

func TestWatchProgress(t *testing.T) {
	c := newAPICluster(t, 1, func(_ int, o *accord.Options, _ *Options) {
		o.WatchProgressNotifyInterval = 100 * time.Millisecond
	})
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	t.Run("request", func(t *testing.T) {
		// The watches share clientv3's stream for ctx (same metadata).
		wa := cli.Watch(ctx, "pa/", clientv3.WithPrefix())
		wb := cli.Watch(ctx, "pb")
		const n = 50
		for i := range n {
			if _, err := cli.Put(ctx, fmt.Sprintf("pa/%02d", i), "v"); err != nil {
				t.Fatal(err)
			}
		}
		last, err := cli.Put(ctx, "other", "x")
		if err != nil {
			t.Fatal(err)
		}
		R := last.Header.Revision
		// A watch replaying history, created just before the request: the
		// answer must wait for its replay.
		wr := cli.Watch(ctx, "pa/", clientv3.WithPrefix(), clientv3.WithRev(1))
		if err := cli.RequestProgress(ctx); err != nil {
			t.Fatal(err)
		}
		for name, w := range map[string]clientv3.WatchChan{"prefix": wa, "replay": wr} {
			evs, _ := watchEvents(t, w, n)
			if evs[n-1].Kv.ModRevision != R-1 {
				t.Fatalf("%s: last event at %d, want %d", name, evs[n-1].Kv.ModRevision, R-1)
			}
			p := watchNext(t, w)
			if !p.IsProgressNotify() || p.Header.Revision != R {
				t.Fatalf("%s: want progress notification at %d, got %+v", name, R, p)
			}
		}
		p := watchNext(t, wb)
		if !p.IsProgressNotify() || p.Header.Revision != R {
			t.Fatalf("idle watch: want progress notification at %d, got %+v", R, p)
		}
		// Requests in a row each get an answer, the last one current.
		for range 3 {
			if err := cli.RequestProgress(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Put(ctx, "other", "y"); err != nil {
			t.Fatal(err)
		}
		R++
		for range 3 {
			if err := cli.RequestProgress(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; ; i++ {
			p := watchNext(t, wb)
			if !p.IsProgressNotify() {
				t.Fatalf("want progress notification, got %+v", p)
			}
			if p.Header.Revision == R {
				break
			}
			if p.Header.Revision > R || i >= 6 {
				t.Fatalf("progress at %d after %d notifications, want %d", p.Header.Revision, i+1, R)
			}
		}
	})

	t.Run("notify", func(t *testing.T) {
		nctx, ncancel := context.WithCancel(ctx)
		defer ncancel()
		w := cli.Watch(nctx, "pn", clientv3.WithProgressNotify())
		rev := c.nodes[0].Store().Revision()
		p := watchNext(t, w)
		if !p.IsProgressNotify() || p.Header.Revision < rev {
			t.Fatalf("want a periodic progress notification at >= %d, got %+v", rev, p)
		}
		put, err := cli.Put(ctx, "pn", "1")
		if err != nil {
			t.Fatal(err)
		}
		// Events, then notifications that are at least as current.
		for i := 0; ; i++ {
			r := watchNext(t, w)
			if len(r.Events) > 0 {
				if r.Events[0].Kv.ModRevision != put.Header.Revision {
					t.Fatalf("event %+v", r.Events[0].Kv)
				}
				break
			}
			if !r.IsProgressNotify() || i > 50 {
				t.Fatalf("response %+v", r)
			}
		}
		p = watchNext(t, w)
		if !p.IsProgressNotify() || p.Header.Revision < put.Header.Revision {
			t.Fatalf("notification after the event: %+v", p)
		}
	})
}

func TestWatchCompacted(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	var revs []int64
	for i := range 5 {
		r, err := cli.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	if _, err := cli.Compact(ctx, revs[3]); err != nil {
		t.Fatal(err)
	}
	w := cli.Watch(ctx, "k", clientv3.WithRev(revs[1]))
	resp := watchNext(t, w)
	if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != revs[3] || !resp.Canceled {
		t.Fatalf("watch below compaction: %+v, err %v", resp, resp.Err())
	}
	select {
	case r, ok := <-w:
		if ok {
			t.Fatalf("response after compaction: %+v", r)
		}
	case <-time.After(watchWait):
		t.Fatal("channel not closed after compaction")
	}
	// Resuming from the compaction revision works.
	w = cli.Watch(ctx, "k", clientv3.WithRev(resp.CompactRevision))
	evs, _ := watchEvents(t, w, 2)
	if evs[0].Kv.ModRevision != revs[3] || evs[1].Kv.ModRevision != revs[4] {
		t.Fatalf("resume: %v %v", evs[0].Kv, evs[1].Kv)
	}
}

func TestWatchFragment(t *testing.T) {
	const valSize = 700 << 10
	c := newAPICluster(t, 1, func(_ int, o *accord.Options, _ *Options) {
		o.MaxRequestBytes = 8 << 20 // the store takes the big txn; the API keeps etcd's limit
	})
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	wFrag := cli.Watch(ctx, "big/", clientv3.WithPrefix(), clientv3.WithFragment())
	wWhole := cli.Watch(ctx, "big/", clientv3.WithPrefix())
	raw := newRawWatch(t, ctx, cli.ActiveConnection())
	raw.create(&pb.WatchCreateRequest{Key: []byte("big/"), RangeEnd: []byte("big0"), Fragment: true})
	if r := raw.next(); !r.Created {
		t.Fatalf("created: %+v", r)
	}

	vals := make([][]byte, 3)
	var ops []accord.Op
	for i := range vals {
		vals[i] = bytes.Repeat([]byte{byte('a' + i)}, valSize)
		ops = append(ops, accord.OpPut(fmt.Sprintf("big/%d", i), vals[i]))
	}
	txn, err := c.nodes[0].Store().Txn(ctx).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}

	for name, w := range map[string]clientv3.WatchChan{"fragment": wFrag, "whole": wWhole} {
		resp := watchNext(t, w)
		if resp.Err() != nil || len(resp.Events) != 3 || resp.Header.Revision != txn.Revision {
			t.Fatalf("%s: %d events, err %v", name, len(resp.Events), resp.Err())
		}
		for i, ev := range resp.Events {
			if string(ev.Kv.Key) != fmt.Sprintf("big/%d", i) || !bytes.Equal(ev.Kv.Value, vals[i]) || ev.Kv.ModRevision != txn.Revision {
				t.Fatalf("%s: event %d: key %q, %d bytes", name, i, ev.Kv.Key, len(ev.Kv.Value))
			}
		}
	}
	// On the wire: two events, then the last one.
	first, second := raw.next(), raw.next()
	if !first.Fragment || len(first.Events) != 2 || second.Fragment || len(second.Events) != 1 ||
		first.WatchId != second.WatchId || first.Header.Revision != txn.Revision || second.Header.Revision != txn.Revision {
		t.Fatalf("fragments: %d events (fragment %v), %d events (fragment %v)", len(first.Events), first.Fragment, len(second.Events), second.Fragment)
	}
}

// TestWatchSlowClient checks that a stream whose client does not read
// holds up neither the store nor other streams, and that it gets every
// event once it reads again.
func TestWatchSlowClient(t *testing.T) {
	c := newAPICluster(t, 1, nil)
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// A small, fixed receive window: the server's sends block quickly.
	conn, err := grpc.NewClient(c.nodes[0].clientAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slow, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("s/"), RangeEnd: []byte("s0"), StartRevision: 1,
	}}}); err != nil {
		t.Fatal(err)
	}
	fast := cli.Watch(ctx, "s/", clientv3.WithPrefix())

	// More than accord buffers per watcher, so that the slow watch falls
	// back to replaying history.
	const writers, perWriter, n = 8, 20, 8 * 20
	val := strings.Repeat("x", 4<<10)
	var mu sync.Mutex
	var revs []int64
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r, err := cli.Put(ctx, fmt.Sprintf("s/%d/%03d", w, i), val)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				revs = append(revs, r.Header.Revision)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	slices.Sort(revs)
	evs, _ := watchEvents(t, fast, n)
	if evs[n-1].Kv.ModRevision != revs[n-1] {
		t.Fatalf("fast watch ends at %d, want %d", evs[n-1].Kv.ModRevision, revs[n-1])
	}

	// Now the slow client reads: everything, in order.
	r, err := slow.Recv()
	if err != nil || !r.Created {
		t.Fatalf("slow created: %+v %v", r, err)
	}
	var got []int64
	for len(got) < n {
		r, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range r.Events {
			got = append(got, ev.Kv.ModRevision)
		}
	}
	for i := range revs {
		if got[i] != revs[i] {
			t.Fatalf("slow stream event %d at %d, want %d", i, got[i], revs[i])
		}
	}
}

// watchRecord is an event as the resume tests compare them.
type watchRecord struct {
	rev      int64
	typ      mvccpb.Event_EventType
	key, val string
}

func TestWatchCluster(t *testing.T) {
	c := newAPICluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	followers := func() []*apiNode {
		leader := c.leaderNode()
		var out []*apiNode
		for _, nd := range c.nodes {
			if nd != leader && nd.Store() != nil {
				out = append(out, nd)
			}
		}
		return out
	}

	t.Run("follower", func(t *testing.T) {
		leader := c.leaderNode()
		f := followers()[0]
		lcli := newClient(t, leader.Endpoint())
		fcli := newClient(t, f.Endpoint())
		w := fcli.Watch(ctx, "f/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if cr := watchNext(t, w); !cr.Created || cr.Header.MemberId != MemberID(f.Store().NodeID()) {
			t.Fatalf("created %+v, want member %x", cr, MemberID(f.Store().NodeID()))
		}
		var revs []int64
		for i := range 5 {
			r, err := lcli.Put(ctx, fmt.Sprintf("f/%d", i), "v")
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, r.Header.Revision)
		}
		evs, _ := watchEvents(t, w, 5)
		for i, ev := range evs {
			if ev.Kv.ModRevision != revs[i] || string(ev.Kv.Key) != fmt.Sprintf("f/%d", i) {
				t.Fatalf("event %d: %+v", i, ev.Kv)
			}
		}
	})

	// resume kills the member serving a watch halfway through a stream of
	// writes and checks the watch, continued elsewhere, saw exactly the
	// store's history.
	resume := func(t *testing.T, allEndpoints bool) {
		writer := newClient(t, c.Endpoints()...)
		start, err := writer.Get(ctx, "r/")
		if err != nil {
			t.Fatal(err)
		}
		from := start.Header.Revision + 1
		prefix := fmt.Sprintf("r%v/", allEndpoints)

		var serving *apiNode
		var wcli *clientv3.Client
		if allEndpoints {
			wcli = newClient(t, c.Endpoints()...)
		} else {
			serving = followers()[0]
			wcli = newClient(t, serving.Endpoint())
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w := wcli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithCreatedNotify())
		cr := watchNext(t, w)
		if !cr.Created {
			t.Fatalf("created %+v", cr)
		}
		for _, nd := range c.nodes {
			if s := nd.Store(); s != nil && MemberID(s.NodeID()) == cr.Header.MemberId {
				serving = nd
			}
		}
		if serving == nil {
			t.Fatalf("no member %x", cr.Header.MemberId)
		}

		const total = 100
		writeErr := make(chan error, 1)
		lastRev := make(chan int64, 1)
		go func() {
			var last int64
			for i := range total {
				deadline := time.Now().Add(15 * time.Second)
				for {
					pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
					r, err := writer.Put(pctx, fmt.Sprintf("%s%03d", prefix, i), fmt.Sprint(i))
					pcancel()
					if err == nil {
						last = r.Header.Revision
						break
					}
					if time.Now().After(deadline) {
						writeErr <- fmt.Errorf("put %d: %w", i, err)
						return
					}
				}
			}
			writeErr <- nil
			lastRev <- last
		}()

		var got []watchRecord
		add := func(evs []*clientv3.Event) {
			for _, ev := range evs {
				got = append(got, watchRecord{ev.Kv.ModRevision, ev.Type, string(ev.Kv.Key), string(ev.Kv.Value)})
			}
		}
		for len(got) < total/3 {
			add(watchSome(t, w))
		}
		serving.kill()
		t.Logf("killed node %d after %d events", serving.idx, len(got))
		if !allEndpoints {
			// The client knows only the dead member: continue through
			// another one from the next revision.
			wcancel()
			var other *apiNode
			for _, nd := range c.nodes {
				if nd != serving && nd.Store() != nil {
					other = nd
				}
			}
			ocli := newClient(t, other.Endpoint())
			w = ocli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(got[len(got)-1].rev+1))
		}
		// Otherwise clientv3 resumes the same watch on another member by
		// itself.
		if err := <-writeErr; err != nil {
			t.Fatal(err)
		}
		final := <-lastRev
		for got[len(got)-1].rev < final {
			add(watchSome(t, w))
		}

		// The store's history, from a member that stayed up.
		hcli := newClient(t, c.leaderNode().Endpoint())
		hw := hcli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		var want []watchRecord
		for len(want) == 0 || want[len(want)-1].rev < final {
			for _, ev := range watchSome(t, hw) {
				want = append(want, watchRecord{ev.Kv.ModRevision, ev.Type, string(ev.Kv.Key), string(ev.Kv.Value)})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("watch saw %d events, history has %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("event %d: got %+v, want %+v", i, got[i], want[i])
			}
		}
		if len(want) < total {
			t.Fatalf("history has %d events for %d writes", len(want), total)
		}

		serving.restart()
		c.waitLeader()
	}
	t.Run("resume single endpoint", func(t *testing.T) { resume(t, false) })
	t.Run("resume all endpoints", func(t *testing.T) { resume(t, true) })

	t.Run("require leader", func(t *testing.T) {
		survivor := followers()[0]
		cli := newClient(t, survivor.Endpoint())
		rctx := clientv3.WithRequireLeader(ctx)
		w := cli.Watch(rctx, "rl")
		if _, err := cli.Put(ctx, "rl", "1"); err != nil {
			t.Fatal(err)
		}
		watchEvents(t, w, 1)
		for _, nd := range c.nodes {
			if nd != survivor {
				nd.kill()
			}
		}
		// The established watch ends with "no leader".
		for i := 0; ; i++ {
			resp := watchNext(t, w)
			if err := resp.Err(); err != nil {
				if !errors.Is(err, rpctypes.ErrNoLeader) {
					t.Fatalf("watch ended with %v, want %v", err, rpctypes.ErrNoLeader)
				}
				break
			}
			if i > 10 {
				t.Fatalf("unexpected response %+v", resp)
			}
		}
		// A new one fails at once.
		eventually(t, 10*time.Second, "the survivor to lose its leader", func() error {
			st, err := survivor.Store().Status(ctx)
			if err != nil {
				return err
			}
			if st.Leader != "" {
				return fmt.Errorf("leader %s", st.Leader)
			}
			return nil
		})
		w2 := cli.Watch(clientv3.WithRequireLeader(ctx), "rl2")
		if resp := watchNext(t, w2); !errors.Is(resp.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("new watch: %+v, err %v", resp, resp.Err())
		}
	})
}

// TestWatchProgressNotBelowResumedStart: a watch created at a revision
// beyond what the member has (a watch resumed after revision R-1 that its
// client saw elsewhere, on a member that is behind) gets no progress
// notification, periodic or for the stream (WatchId -1), below R-1; once
// the member reaches it, both come (issue 17, item 3; etcd issue 20221).
func TestWatchProgressNotBelowResumedStart(t *testing.T) {
	const interval = 50 * time.Millisecond
	c := newAPICluster(t, 1, func(_ int, o *accord.Options, _ *Options) { o.WatchProgressNotifyInterval = interval })
	cli := newClient(t, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	put, err := cli.Put(ctx, "other", "x")
	if err != nil {
		t.Fatal(err)
	}
	cur := put.Header.Revision
	start := cur + 3 // the client has seen cur+2
	rw := newRawWatch(t, ctx, cli.ActiveConnection())
	rw.create(&pb.WatchCreateRequest{Key: []byte("rk"), StartRevision: start, ProgressNotify: true})
	if r := rw.next(); !r.Created {
		t.Fatalf("want Created, got %+v", r)
	}
	rw.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	select {
	case r := <-rw.recvc:
		t.Fatalf("at revision %d, with a watch resumed at %d: %+v", cur, start, r)
	case err := <-rw.errc:
		t.Fatal(err)
	case <-time.After(20 * interval):
	}
	for i := range 2 {
		if _, err := cli.Put(ctx, fmt.Sprintf("other%d", i), "y"); err != nil {
			t.Fatal(err)
		}
	}
	stream, periodic := false, false
	for !stream || !periodic {
		r := rw.next()
		if len(r.Events) > 0 || r.Canceled || r.Header.Revision < start-1 {
			t.Fatalf("after reaching revision %d: %+v", start-1, r)
		}
		if r.WatchId == invalidWatchID {
			stream = true
		} else {
			periodic = true
		}
	}
}
