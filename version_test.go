package accord

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// flagHandler sets flag when a record whose message contains msg passes
// through, and hands every record on to next.
type flagHandler struct {
	next slog.Handler
	msg  string
	flag *atomic.Bool
}

func (h *flagHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *flagHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.flag.Store(true)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *flagHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &flagHandler{next: h.next.WithAttrs(as), msg: h.msg, flag: h.flag}
}

func (h *flagHandler) WithGroup(g string) slog.Handler {
	return &flagHandler{next: h.next.WithGroup(g), msg: h.msg, flag: h.flag}
}

// TestClusterVersionGate: member attributes (a log command added in 0.2.0)
// stay unpublished while one member advertises 0.1.0, and are published
// by every member once that member is upgraded.
func TestClusterVersionGate(t *testing.T) {
	var below [3]atomic.Bool
	c := newTestCluster(t, 3, func(i int, o *Options) {
		o.NodeName = fmt.Sprintf("infra%d", i)
		o.ClientURLs = []string{fmt.Sprintf("http://127.0.0.1:%d", 12379+i)}
		if i == 2 {
			o.Version = "0.1.0"
		}
		o.Logger = slog.New(&flagHandler{next: o.Logger.Handler(), msg: "cluster version is below", flag: &below[i]})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The members that joined with the old one present held back (the old
	// one because its own version is too old). Node 0 may have published
	// while it was still alone, when the gate was open.
	eventually(t, 20*time.Second, "members notice the 0.1.0 member", func() error {
		for i := 1; i < len(below); i++ {
			if !below[i].Load() {
				return fmt.Errorf("node %d has not checked the cluster version", i)
			}
		}
		return nil
	})
	c.waitConverged()
	for _, nd := range c.running() {
		st, err := nd.store().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ClusterVersion != "0.1.0" {
			t.Fatalf("node %d: cluster version %q (own %q), want 0.1.0", nd.idx, st.ClusterVersion, st.Version)
		}
		for _, other := range c.nodes[1:] {
			if _, ok := nd.store().fsm.memberAttrs(other.store().NodeID()); ok {
				t.Fatalf("node %d applied node %d's attributes in a 0.1.0 cluster", nd.idx, other.idx)
			}
		}
	}
	ms, err := c.nodes[0].store().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID != c.nodes[0].store().NodeID() && (m.Name != "" || m.ClientURLs != nil) {
			t.Fatalf("member %s shows unpublished attributes %q %v", m.ID, m.Name, m.ClientURLs)
		}
	}

	// Rolling upgrade of the last member: restart it on the current build.
	c.nodes[2].kill()
	c.nodes[2].opts.Version = ""
	c.nodes[2].restart(false)
	want := func(nd *testNode) Member {
		return Member{ID: nd.store().NodeID(), Name: nd.opts.NodeName, ClientURLs: nd.opts.ClientURLs}
	}
	eventually(t, 30*time.Second, "every member publishes its attributes", func() error {
		for _, viewer := range c.running() {
			ms, err := viewer.store().Members(ctx)
			if err != nil {
				return err
			}
			for _, nd := range c.nodes {
				w := want(nd)
				i := slices.IndexFunc(ms, func(m Member) bool { return m.ID == w.ID })
				if i < 0 {
					return fmt.Errorf("node %d does not list %s", viewer.idx, w.ID)
				}
				if ms[i].Name != w.Name || !slices.Equal(ms[i].ClientURLs, w.ClientURLs) {
					return fmt.Errorf("node %d lists %s as %q %v", viewer.idx, w.ID, ms[i].Name, ms[i].ClientURLs)
				}
			}
			st, err := viewer.store().Status(ctx)
			if err != nil {
				return err
			}
			if st.ClusterVersion != ReleaseVersion {
				return fmt.Errorf("node %d: cluster version %q", viewer.idx, st.ClusterVersion)
			}
		}
		return nil
	})

	// Published attributes are replicated state: a member that restarts
	// still knows the others' without asking them.
	c.nodes[1].kill()
	c.nodes[1].restart(false)
	c.waitConverged()
	a, ok := c.nodes[1].store().fsm.memberAttrs(c.nodes[0].store().NodeID())
	if !ok || a.name != "infra0" {
		t.Fatalf("after restart node 1 knows node 0 as %+v (%v)", a, ok)
	}
}

func TestSnapshotMemberAttrs(t *testing.T) {
	want := snapSample()
	want.members = []snapMember{
		{id: "n1", attrs: memberAttrs{name: "infra1", clientURLs: []string{"http://127.0.0.1:2379"}}},
		{id: "n2", attrs: memberAttrs{}},
	}
	data := snapEncode(t, want)
	got, err := readSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got.members, want.members)
	}
	// Without attributes there is no member frame: 0.1.0 reads the
	// snapshots of a cluster that never opened the gate.
	plain := snapEncode(t, snapSample())
	if bytes.Contains(plain, []byte("infra1")) || len(plain) >= len(data) {
		t.Fatal("a snapshot without member attributes changed size")
	}

	member := func(id string) func(e *wire.Encoder) {
		return func(e *wire.Encoder) {
			e.Byte(frameMember)
			e.String(id)
			e.String("name")
			e.Uvarint(0)
		}
	}
	base := func() *snapBuilder {
		return newSnapBuilder().header(2, 0, 1, 0).version("k", snapPut(2, 2, 1, "v"))
	}
	for name, data := range map[string][]byte{
		"EmptyID":     base().frame(member("")).end().bytes(),
		"DuplicateID": base().frame(member("a")).frame(member("a")).end().bytes(),
		"URLCountLies": base().frame(func(e *wire.Encoder) {
			e.Byte(frameMember)
			e.String("a")
			e.String("")
			e.Uvarint(3)
			e.String("u")
		}).end().bytes(),
		"AfterEnd": base().end().frame(member("a")).bytes(),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := readSnapshot(bytes.NewReader(data)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := readSnapshot(bytes.NewReader(base().frame(member("a")).frame(member("b")).end().bytes())); err != nil {
		t.Fatalf("two members: %v", err)
	}
}
