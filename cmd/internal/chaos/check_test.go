package chaos

import (
	"strings"
	"testing"
	"time"
)

// The checks must be able to fail: each case feeds a small committed
// history and client history with one planted anomaly and expects a
// violation of that kind (and the clean case none).
func TestChecksCatchAnomalies(t *testing.T) {
	ms := func(d int) int64 { return int64(time.Duration(d) * time.Millisecond) }
	put := func(rev int64, key, value string, create, version int64) hevent {
		return hevent{Rev: rev, Key: key, Value: value, Create: create, Mod: rev, Version: version}
	}
	// A clean history: r/00 = a, then b, then deleted; a/00 and a/01 get
	// id 7.1 together; a lease key comes and goes.
	cleanEvents := []hevent{
		put(2, "r/00", "r0.1", 2, 1),
		put(3, "r/00", "r0.2", 2, 2),
		{Rev: 4, Key: "r/00", Delete: true, Mod: 4},
		put(5, "a/00", "7.1", 5, 1), put(5, "a/01", "7.1", 5, 1),
		{Rev: 6, Key: "l/9/1/0", Value: "lease 63", Create: 6, Mod: 6, Version: 1, Lease: 99},
		{Rev: 7, Key: "l/9/1/0", Delete: true, Mod: 7},
	}
	cleanOps := func() []*Op {
		return []*Op{
			{Client: 0, Kind: opPut, Key: "r/00", Value: "r0.1", Call: ms(0), Return: ms(10), Status: statusOK, Rev: 2},
			{Client: 0, Kind: opPut, Key: "r/00", Value: "r0.2", Call: ms(20), Return: ms(30), Status: statusOK, Rev: 3},
			{Client: 1, Kind: opGet, Key: "r/00", Call: ms(25), Return: ms(35), Status: statusOK, Rev: 3,
				KVs: []KV{{Key: "r/00", Value: "r0.2", Create: 2, Mod: 3, Version: 2}}},
			{Client: 1, Kind: opDelete, Key: "r/00", Call: ms(40), Return: ms(50), Status: statusOK, Rev: 4, Deleted: 1},
			{Client: 2, Kind: opTxnAppend, Keys: []string{"a/00", "a/01"}, Value: "7.1", Call: ms(60), Return: ms(70), Status: statusOK, Rev: 5, Succeeded: true},
			{Client: 3, Kind: opLeaseGrant, Lease: 99, TTL: 1, Call: ms(80), Return: ms(90), Status: statusOK, Rev: 5},
			{Client: 3, Kind: opLeasePut, Key: "l/9/1/0", Value: "lease 63", Lease: 99, Call: ms(100), Return: ms(110), Status: statusOK, Rev: 6},
			{Client: 1, Kind: opFinalGet, Key: "r/00", Call: ms(2000), Return: ms(2010), Status: statusOK, Rev: 7},
		}
	}
	cases := []struct {
		name   string
		events func([]hevent) []hevent
		ops    func([]*Op) []*Op
		want   string // violation kind; "" for none
	}{
		{name: "clean"},
		{
			name:   "lost write",
			events: func(e []hevent) []hevent { e[1].Value = "r9.9"; return e },
			want:   "lost-write",
		},
		{
			name: "stale read",
			ops: func(o []*Op) []*Op {
				return append(o, &Op{Client: 4, Kind: opGet, Key: "r/00", Call: ms(32), Return: ms(38), Status: statusOK, Rev: 2,
					KVs: []KV{{Key: "r/00", Value: "r0.1", Create: 2, Mod: 2, Version: 1}}})
			},
			want: "linearizability",
		},
		{
			name: "read of a state that never was",
			ops: func(o []*Op) []*Op {
				o[2].KVs[0].Value = "r0.1"
				return o
			},
			want: "read",
		},
		{
			name: "write applied twice",
			events: func(e []hevent) []hevent {
				e = append(e, put(8, "r/00", "r0.2", 8, 1))
				return e
			},
			ops:  func(o []*Op) []*Op { o[len(o)-1].Rev = 8; return o },
			want: "duplicate-write",
		},
		{
			name:   "partial transaction",
			events: func(e []hevent) []hevent { return append(e[:4], e[5:]...) },
			want:   "atomicity",
		},
		{
			name: "lease key deleted while the lease was kept alive",
			ops: func(o []*Op) []*Op {
				return append(o, &Op{Client: 3, Kind: opKeepAlive, Lease: 99, TTL: 1, Call: ms(500), Return: ms(510), Status: statusOK, Rev: 6},
					&Op{Client: 1, Kind: opGetLocal, Key: "r/00", Call: ms(600), Return: ms(700), Status: statusOK, Rev: 7})
			},
			want: "lease",
		},
		{
			name:   "history gap",
			events: func(e []hevent) []hevent { return append(e[:2], e[3:]...) },
			want:   "history",
		},
		{
			name: "clean with a revoke",
			ops: func(o []*Op) []*Op {
				return append(o, &Op{Client: 3, Kind: opLeaseRevoke, Lease: 99, Call: ms(120), Return: ms(130), Status: statusOK, Rev: 7})
			},
		},
		{
			// LeaseRevoke with the revision of the answer, not of the revoke.
			name: "revoke answered at another revision than its deletion",
			ops: func(o []*Op) []*Op {
				return append(o, &Op{Client: 3, Kind: opLeaseRevoke, Lease: 99, Call: ms(120), Return: ms(130), Status: statusOK, Rev: 6})
			},
			want: "revision",
		},
		{
			// A follower's own revision, behind a write acknowledged before.
			name: "grant answered below a revision acknowledged before it",
			ops:  func(o []*Op) []*Op { o[5].Rev = 4; return o },
			want: "revision",
		},
		{
			name: "grant answered at the revision of a later write with its lease",
			ops:  func(o []*Op) []*Op { o[5].Rev = 6; return o },
			want: "revision",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events := append([]hevent(nil), cleanEvents...)
			if tc.events != nil {
				events = tc.events(events)
			}
			ops := cleanOps()
			if tc.ops != nil {
				ops = tc.ops(ops)
			}
			rep := newReport()
			rec := newRecorder()
			rec.ops = ops
			r := &run{cfg: &Config{CheckTimeout: 10 * time.Second, Logf: t.Logf}, rep: rep, rec: rec, dir: t.TempDir(), hist: newHistory(events)}
			r.check(nil, nil)
			var kinds []string
			for _, v := range rep.Violations {
				kinds = append(kinds, v.Kind)
			}
			switch {
			case tc.want == "" && rep.Failed():
				t.Fatalf("clean history: violations %v, %d lost", rep.Violations, rep.LostWrites)
			case tc.want != "" && !strings.Contains(strings.Join(kinds, " "), tc.want):
				t.Fatalf("want a %s violation, got %v", tc.want, rep.Violations)
			}
		})
	}
}

// The watch check must catch gaps, repeats, split revisions and progress
// notifications that go back.
func TestWatchCheck(t *testing.T) {
	h := newHistory([]hevent{
		{Rev: 2, Key: "a", Value: "1", Create: 2, Mod: 2, Version: 1},
		{Rev: 3, Key: "a", Value: "2", Create: 2, Mod: 3, Version: 2},
		{Rev: 3, Key: "b", Value: "1", Create: 3, Mod: 3, Version: 1},
		{Rev: 4, Key: "b", Delete: true, Mod: 4},
	})
	ev := func(i, resp int) wevent {
		e := h.events[i]
		return wevent{Rev: e.Rev, Key: e.Key, Delete: e.Delete, Hash: hashValue(e.Value), Create: e.Create, Mod: e.Mod, Version: e.Version, Lease: e.Lease, Resp: resp}
	}
	all := []wevent{ev(0, 1), ev(1, 3), ev(2, 3), ev(3, 5)}
	cases := []struct {
		name     string
		events   []wevent
		progress []wprogress
		complete bool
		bad      bool
	}{
		{"all", []wevent{ev(0, 1), ev(1, 2), ev(2, 2), ev(3, 3)}, nil, true, false},
		{"prefix of a removed member", []wevent{ev(0, 1), ev(1, 2), ev(2, 2)}, nil, false, false},
		{"stalled", []wevent{ev(0, 1), ev(1, 2), ev(2, 2)}, nil, true, true},
		{"gap", []wevent{ev(0, 1), ev(3, 2)}, nil, false, true},
		{"repeat", []wevent{ev(0, 1), ev(0, 2), ev(1, 3), ev(2, 3), ev(3, 3)}, nil, true, true},
		{"split revision", []wevent{ev(0, 1), ev(1, 2), ev(2, 3), ev(3, 4)}, nil, true, true},
		{"out of order", []wevent{ev(1, 1), ev(2, 1), ev(0, 2), ev(3, 3)}, nil, true, true},
		{"progress as bookmarks", all, []wprogress{{Rev: 1, After: 0, Resp: 0}, {Rev: 2, After: 1, Resp: 2}, {Rev: 3, After: 3, Resp: 4}, {Rev: 4, After: 4, Resp: 6}}, true, false},
		// A member behind the client's position announces its own
		// revision (etcd issue 20221).
		{"progress below a delivered event", all, []wprogress{{Rev: 1, After: 3, Resp: 4}}, true, true},
		{"progress going back", all, []wprogress{{Rev: 3, After: 3, Resp: 4}, {Rev: 4, After: 4, Resp: 6}, {Rev: 3, After: 4, Resp: 7}}, true, true},
		{"event at or below a progress before it", all, []wprogress{{Rev: 3, After: 1, Resp: 2}}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := newReport()
			w := &watcher{name: tc.name, events: tc.events, progress: tc.progress}
			w.check(h, tc.complete, rep)
			if got := rep.NumViolations > 0; got != tc.bad {
				t.Fatalf("violations %v, want bad=%v", rep.Violations, tc.bad)
			}
		})
	}
}
