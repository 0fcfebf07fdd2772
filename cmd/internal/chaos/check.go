package chaos

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/accordkv/accord/internal/regmodel"
	"github.com/anishathalye/porcupine"
)

// check runs every check of a run against the committed history.
func (r *run) check(watchers []*watcher, members []*node) {
	h, rep := r.hist, r.rep
	ops := r.rec.all()
	r.rec.count(rep)

	checkHistory(h, rep)
	r.checkWrites(ops)
	r.checkReads(ops)
	r.checkLists(ops)
	r.checkLeases(ops)
	r.checkRevisions(ops)
	r.checkLinearizable(ops)
	for _, op := range ops {
		if op.checked {
			rep.OpsChecked++
		}
	}

	for _, w := range watchers {
		complete := w.node == nil || slices.Contains(members, w.node)
		rep.WatchEvents += w.check(h, complete, rep)
		w.mu.Lock()
		rep.WatchProgress += len(w.progress)
		w.mu.Unlock()
		if complete && w.node != nil && w.last() >= h.last {
			w.node.mu.Lock()
			rep.WatchResumes += w.node.starts - 1
			w.node.mu.Unlock()
		}
	}
	r.cfg.Logf("  checked: %d ops, %d events in the committed history, %d watch events; %d violations, %d acked writes lost",
		rep.OpsChecked, len(h.events), rep.WatchEvents, rep.NumViolations, rep.LostWrites)
}

// checkHistory checks the committed history itself: revisions dense from
// 2, and each key's create revision, mod revision and version consistent.
func checkHistory(h *history, rep *Report) {
	for rev := int64(2); rev <= h.last; rev++ {
		if len(h.byRev[rev]) == 0 {
			rep.violate("history", "revision %d has no event: the committed history has a gap", rev)
			return
		}
	}
	prev := int64(0)
	for i := range h.events {
		ev := &h.events[i]
		if ev.Rev < prev {
			rep.violate("history", "event %d at revision %d after revision %d", i, ev.Rev, prev)
			return
		}
		prev = ev.Rev
		before := h.before(ev.Key, ev.Rev)
		bad := func(what string) {
			rep.violate("history", "event %d (%s %s at revision %d): %s (previous version %+v)", i, evType(ev.Delete), ev.Key, ev.Rev, what, before)
		}
		switch {
		case ev.Mod != ev.Rev:
			bad(fmt.Sprintf("mod revision %d", ev.Mod))
		case ev.Delete && before == nil:
			bad("deletes a key that does not exist")
		case ev.Delete:
		case before == nil && (ev.Create != ev.Rev || ev.Version != 1):
			bad(fmt.Sprintf("creates the key with create revision %d, version %d", ev.Create, ev.Version))
		case before != nil && (ev.Create != before.Create || ev.Version != before.Version+1):
			bad(fmt.Sprintf("updates the key with create revision %d, version %d", ev.Create, ev.Version))
		}
	}
}

// appended is where the history shows the id of an append transaction.
type appended struct {
	rev  int64
	keys []string
}

// listAppends reads the append transactions out of the history: every
// write to a list must append exactly one id to the previous value, and
// the writes of one revision must append the same id.
func (r *run) listAppends() map[string]*appended {
	h := r.hist
	out := map[string]*appended{}
	for i := range h.events {
		ev := &h.events[i]
		if !strings.HasPrefix(ev.Key, listPrefix) {
			continue
		}
		if ev.Delete {
			r.rep.violate("append", "list %s deleted at revision %d (nobody deletes lists)", ev.Key, ev.Rev)
			continue
		}
		prev := ""
		if b := h.before(ev.Key, ev.Rev); b != nil {
			prev = b.Value
		}
		id, ok := strings.CutPrefix(ev.Value, prev)
		if prev != "" {
			id, ok = strings.CutPrefix(id, " ")
		}
		if !ok || id == "" || strings.Contains(id, " ") {
			r.rep.violate("append", "list %s at revision %d is %q, which does not extend %q by one id", ev.Key, ev.Rev, tailOf(ev.Value), tailOf(prev))
			continue
		}
		a := out[id]
		if a == nil {
			a = &appended{rev: ev.Rev}
			out[id] = a
		}
		if a.rev != ev.Rev {
			r.rep.violate("append", "id %s appended to %v at revision %d and to %s at revision %d: one transaction, two revisions (or appended twice)", id, a.keys, a.rev, ev.Key, ev.Rev)
		}
		a.keys = append(a.keys, ev.Key)
	}
	return out
}

func tailOf(s string) string {
	if len(s) > 40 {
		return "..." + s[len(s)-40:]
	}
	return s
}

// checkWrites checks every write against the history: an acknowledged
// write is there at its revision (or it is lost), a write that certainly
// failed is not, a write of unknown outcome is there at most once and is
// resolved for porcupine; and every write in the history was made by
// someone (no phantom or duplicated writes).
func (r *run) checkWrites(ops []*Op) {
	h, rep := r.hist, r.rep
	appends := r.listAppends()
	// Register values: value -> revisions where a put wrote it.
	written := map[string][]int64{}
	for i := range h.events {
		ev := &h.events[i]
		if !ev.Delete && strings.HasPrefix(ev.Key, regPrefix) {
			written[ev.Key+"\x00"+ev.Value] = append(written[ev.Key+"\x00"+ev.Value], ev.Rev)
		}
	}
	issued := map[string]bool{}
	txns := map[string]*Op{}
	lost := func(op *Op, format string, args ...any) {
		rep.LostWrites++
		rep.violate("lost-write", "%s by client %d (called at t=%v, acknowledged at revision %d): %s", op.Kind, op.Client,
			time.Duration(op.Call).Round(time.Millisecond), op.Rev, fmt.Sprintf(format, args...))
	}
	at := func(key string, rev int64) *hevent {
		for _, i := range h.byRev[rev] {
			if h.events[i].Key == key {
				return &h.events[i]
			}
		}
		return nil
	}
	for _, op := range ops {
		switch op.Kind {
		case opPut, opCAS, opLeasePut, opCrashPut, opBarrier:
			if op.Kind == opPut || op.Kind == opCAS {
				issued[op.Key+"\x00"+op.Value] = true
			}
			if op.Status == statusOK && (op.Kind != opCAS || op.Succeeded) {
				rep.AckedWrites++
				op.checked = true
				if ev := at(op.Key, op.Rev); ev == nil || ev.Delete || ev.Value != op.Value {
					lost(op, "the history has %+v for %s at that revision", ev, op.Key)
				}
				continue
			}
			if op.Kind != opPut && op.Kind != opCAS {
				continue
			}
			revs := written[op.Key+"\x00"+op.Value]
			switch {
			case op.Status == statusOK: // a cas whose compare failed
				op.checked = true
				if len(revs) > 0 {
					rep.violate("failed-write", "cas %s = %q by client %d answered 'compare failed' at revision %d, yet the history writes it at revision %d", op.Key, op.Value, op.Client, op.Rev, revs[0])
				}
			case len(revs) > 0:
				op.Resolved = revs[0]
				op.checked = true
			default:
				op.Resolved = -1
				op.checked = true
			}
		case opDelete:
			if op.Status == statusOK && op.Deleted > 0 {
				rep.AckedWrites++
				op.checked = true
				if ev := at(op.Key, op.Rev); ev == nil || !ev.Delete {
					lost(op, "the history has %+v for %s at that revision, not its delete", ev, op.Key)
				}
			}
		case opTxnAppend:
			txns[op.Value] = op
			a := appends[op.Value]
			switch {
			case op.Status == statusOK && op.Succeeded:
				rep.AckedWrites++
				op.checked = true
				if a == nil || a.rev != op.Rev {
					lost(op, "id %s to %v: the history shows %+v", op.Value, op.Keys, a)
				}
			case op.Status == statusOK:
				op.checked = true
				if a != nil {
					rep.violate("failed-write", "append of %s to %v by client %d answered 'compare failed' at revision %d, yet the history appends it at revision %d", op.Value, op.Keys, op.Client, op.Rev, a.rev)
				}
			case a != nil:
				op.Resolved = a.rev
				op.checked = true
			default:
				op.Resolved = -1
				op.checked = true
			}
		}
	}
	for kv, revs := range written {
		key, value, _ := strings.Cut(kv, "\x00")
		if len(revs) > 1 {
			rep.violate("duplicate-write", "%s = %q written at revisions %v: one put, applied more than once", key, value, revs)
		}
		if !issued[kv] {
			rep.violate("phantom-write", "%s = %q at revision %d: no client wrote it", key, value, revs[0])
		}
	}
	for id, a := range appends {
		op := txns[id]
		switch {
		case op == nil:
			rep.violate("phantom-write", "id %s appended to %v at revision %d: no client appended it", id, a.keys, a.rev)
		case !slices.Equal(sorted(a.keys), op.Keys):
			rep.violate("atomicity", "append of %s was to %v, the history applies it to %v at revision %d", id, op.Keys, sorted(a.keys), a.rev)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// checkReads checks that every answered read returned exactly the
// committed state at its revision: linearizable and serializable reads,
// the reads of transactions and of failed compare-and-swaps.
func (r *run) checkReads(ops []*Op) {
	h, rep := r.hist, r.rep
	for _, op := range ops {
		if op.Status != statusOK {
			continue
		}
		var keys []string
		switch op.Kind {
		case opGet, opGetLocal, opFinalGet:
			keys = []string{op.Key}
		case opCAS:
			if op.Succeeded {
				continue
			}
			keys = []string{op.Key}
		case opTxnRead:
			keys = op.Keys
		case opLeaseGet:
		default:
			continue
		}
		op.checked = true
		if op.Rev > h.last {
			rep.violate("read", "%s by client %d answered at revision %d, beyond the committed history (%d)", op.Kind, op.Client, op.Rev, h.last)
			continue
		}
		var want []KV
		if op.Kind == opLeaseGet {
			want = h.rangeAt(op.Key, op.Rev)
		} else {
			for _, k := range keys {
				if ev := h.at(k, op.Rev); ev != nil {
					want = append(want, ev.kv())
				}
			}
		}
		got := slices.Clone(op.KVs)
		sort.Slice(got, func(i, j int) bool { return got[i].Key < got[j].Key })
		sort.Slice(want, func(i, j int) bool { return want[i].Key < want[j].Key })
		if !slices.Equal(got, want) {
			rep.violate("read", "%s %v by client %d at revision %d (called at t=%v): %s", op.Kind, keysOrKey(op), op.Client, op.Rev,
				time.Duration(op.Call).Round(time.Millisecond), diffKVs(got, want))
		}
	}
}

func keysOrKey(op *Op) any {
	if len(op.Keys) > 0 {
		return op.Keys
	}
	return op.Key
}

// checkLists checks the final lists: no id twice in a list, every id in
// all of its transaction's lists or in none, and any two ids in the same
// order in every list that holds both.
func (r *run) checkLists(ops []*Op) {
	h, rep := r.hist, r.rep
	final := h.rangeAt(listPrefix, h.last)
	pos := map[string]map[string]int{} // list -> id -> position
	for _, kv := range final {
		ids := listIDs(kv.Value)
		m := make(map[string]int, len(ids))
		for i, id := range ids {
			if _, dup := m[id]; dup {
				rep.violate("append", "list %s holds %s twice", kv.Key, id)
			}
			m[id] = i
		}
		pos[kv.Key] = m
	}
	for _, op := range ops {
		if op.Kind != opTxnAppend {
			continue
		}
		in := 0
		for _, k := range op.Keys {
			if _, ok := pos[k][op.Value]; ok {
				in++
			}
		}
		if in != 0 && in != len(op.Keys) {
			rep.violate("atomicity", "append of %s (%s) is in %d of its lists %v", op.Value, op.Status, in, op.Keys)
		}
	}
	lists := slices.Sorted(maps.Keys(pos))
	for i, a := range lists {
		for _, b := range lists[i+1:] {
			// The ids common to a and b, in a's order, must be in
			// increasing position in b.
			type pair struct{ pa, pb int }
			var common []pair
			for id, pa := range pos[a] {
				if pb, ok := pos[b][id]; ok {
					common = append(common, pair{pa, pb})
				}
			}
			sort.Slice(common, func(i, j int) bool { return common[i].pa < common[j].pa })
			for j := 1; j < len(common); j++ {
				if common[j].pb < common[j-1].pb {
					rep.violate("append", "lists %s and %s order their common ids differently", a, b)
					break
				}
			}
		}
	}
}

// checkLeases checks against the history that each lease's keys went in
// one revision, and not before the lease could expire: the deletion is
// committed before any answer at a later revision returns, so an answer
// at or after the deletion's revision that returned before the deadline
// the lease's acknowledged grant and keep-alives promise (and before any
// revoke of it was called) proves the keys went early.
func (r *run) checkLeases(ops []*Op) {
	h, rep := r.hist, r.rep
	deadline := map[int64]time.Duration{} // lease -> no expiry before (since the run started)
	revoked := map[int64]time.Duration{}  // lease -> first revoke call
	for _, op := range ops {
		switch {
		case op.Kind == opLeaseGrant && op.Status == statusOK, op.Kind == opKeepAlive && op.Status == statusOK:
			op.checked = true
			deadline[op.Lease] = max(deadline[op.Lease], time.Duration(op.Call)+time.Duration(op.TTL)*time.Second)
		case op.Kind == opLeaseRevoke:
			op.checked = true
			if t, ok := revoked[op.Lease]; !ok || time.Duration(op.Call) < t {
				revoked[op.Lease] = time.Duration(op.Call)
			}
		}
	}
	// Answers sorted by revision, with the earliest return at or above
	// each.
	type answer struct {
		rev int64
		ret int64
	}
	var answers []answer
	for _, op := range ops {
		if op.Status == statusOK && op.Rev > 0 {
			answers = append(answers, answer{op.Rev, op.Return})
		}
	}
	sort.Slice(answers, func(i, j int) bool { return answers[i].rev < answers[j].rev })
	for i := len(answers) - 2; i >= 0; i-- {
		answers[i].ret = min(answers[i].ret, answers[i+1].ret)
	}
	committedBy := func(rev int64) (time.Duration, bool) {
		i := sort.Search(len(answers), func(i int) bool { return answers[i].rev >= rev })
		if i == len(answers) {
			return 0, false
		}
		return time.Duration(answers[i].ret), true
	}

	goneAt := map[int64]map[int64][]string{} // lease -> delete revision -> keys
	for i := range h.events {
		ev := &h.events[i]
		if !ev.Delete || !strings.HasPrefix(ev.Key, leasePrefix) {
			continue
		}
		b := h.before(ev.Key, ev.Rev)
		if b == nil || b.Lease == 0 {
			continue
		}
		if goneAt[b.Lease] == nil {
			goneAt[b.Lease] = map[int64][]string{}
		}
		goneAt[b.Lease][ev.Rev] = append(goneAt[b.Lease][ev.Rev], ev.Key)
		dl, ok := deadline[b.Lease]
		if !ok {
			continue
		}
		by, ok := committedBy(ev.Rev)
		if !ok {
			continue
		}
		if rv, ok := revoked[b.Lease]; ok && rv < by {
			continue
		}
		if by+leaseMargin < dl {
			rep.violate("lease", "key %s of lease %x was deleted at revision %d, committed by t=%v, but the lease's acknowledged grant and keep-alives keep it until t=%v (not revoked)",
				ev.Key, b.Lease, ev.Rev, by.Round(time.Millisecond), dl.Round(time.Millisecond))
		}
	}
	for lease, byRev := range goneAt {
		if len(byRev) > 1 {
			rep.violate("lease", "the keys of lease %x went in %d revisions (%v): expiry and revoke delete them in one", lease, len(byRev), byRev)
		}
	}
	if left := h.rangeAt(leasePrefix, h.last); len(left) > 0 {
		rep.violate("lease", "%d lease keys outlive their leases at the end, e.g. %s (lease %x)", len(left), left[0].Key, left[0].Lease)
	}
}

// checkLinearizable checks the register operations with porcupine; a
// failing check writes its visualisation into the run directory.
func (r *run) checkLinearizable(ops []*Op) {
	history := regOperations(ops)
	for _, op := range ops {
		switch op.Kind {
		case opGet, opFinalGet, opPut, opDelete, opCAS:
			op.checked = op.checked || op.Status == statusOK || op.Kind == opDelete && op.Status == statusUnknown
		}
	}
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(regmodel.Model, history, r.cfg.CheckTimeout)
	r.cfg.Logf("  porcupine: %s for %d register operations in %v", res, len(history), time.Since(start).Round(time.Millisecond))
	if res == porcupine.Ok {
		return
	}
	res, info := porcupine.CheckOperationsVerbose(regmodel.Model, history, r.cfg.CheckTimeout)
	path := filepath.Join(r.dir, "porcupine.html")
	if err := porcupine.VisualizePath(regmodel.Model, info, path); err != nil {
		path = "(visualisation failed: " + err.Error() + ")"
	}
	if res == porcupine.Unknown {
		r.rep.violate("linearizability", "porcupine could not decide within %v; visualisation of the partial linearizations: %s", r.cfg.CheckTimeout, path)
		return
	}
	r.rep.violate("linearizability", "the register history is not linearizable; visualisation: %s", path)
}

// linearRev reports whether op's answer revision is linearizable: the
// revision of the state it read or wrote, at a point between its call and
// its return. Serializable reads answer from one member's state and
// keep-alive headers from the member that took the request (as etcd's
// do), so they are left out.
func linearRev(op *Op) bool {
	if op.Status != statusOK || op.Rev <= 0 {
		return false
	}
	switch op.Kind {
	case opGetLocal, opKeepAlive:
		return false
	}
	return true
}

// changedRev reports whether op made a new revision (op.Rev, or
// op.Resolved for a write of unknown outcome that the history shows).
func changedRev(op *Op) int64 {
	switch {
	case op.Status == statusUnknown && op.Resolved > 0:
		return op.Resolved
	case op.Status != statusOK:
		return 0
	}
	switch op.Kind {
	case opPut, opLeasePut, opCrashPut, opBarrier:
		return op.Rev
	case opDelete:
		if op.Deleted > 0 {
			return op.Rev
		}
	case opCAS, opTxnAppend:
		if op.Succeeded {
			return op.Rev
		}
	}
	return 0
}

// checkRevisions checks the revisions of the answers, beyond the writes
// that checkWrites finds at theirs:
//
//   - an acknowledged revoke answers with the revision that deleted its
//     lease's keys (the history has it), not a later one;
//   - a grant answers below the first write with its lease;
//   - every linearizable answer is at or above the revision of every
//     answer that returned before it was called, and below the revision
//     of every write that was called after it returned.
//
// A revision that is wrong this way sends a client that resumes a watch
// from it past writes it never saw, or back into ones it did.
func (r *run) checkRevisions(ops []*Op) {
	h, rep := r.hist, r.rep
	firstUse := map[int64]int64{} // lease -> first revision a key was put with it
	deleted := map[int64]int64{}  // lease -> revision its keys were deleted at
	for i := range h.events {
		ev := &h.events[i]
		if !ev.Delete && ev.Lease != 0 {
			if _, ok := firstUse[ev.Lease]; !ok {
				firstUse[ev.Lease] = ev.Rev
			}
		}
		if ev.Delete {
			if b := h.before(ev.Key, ev.Rev); b != nil && b.Lease != 0 {
				if _, ok := deleted[b.Lease]; !ok {
					deleted[b.Lease] = ev.Rev
				}
			}
		}
	}
	for _, op := range ops {
		if op.Status != statusOK {
			continue
		}
		switch op.Kind {
		case opLeaseRevoke:
			op.checked = true
			if del, ok := deleted[op.Lease]; ok && op.Rev != del {
				rep.violate("revision", "revoke of lease %x by client %d answered at revision %d; the history deletes its keys at revision %d", op.Lease, op.Client, op.Rev, del)
			}
		case opLeaseGrant:
			if use, ok := firstUse[op.Lease]; ok && op.Rev >= use {
				rep.violate("revision", "grant of lease %x by client %d answered at revision %d; the history puts a key with it at revision %d", op.Lease, op.Client, op.Rev, use)
			}
		}
	}

	// Real-time order. byReturn: the answers by return time, each with the
	// highest revision returned up to it; byCall: the writes by call time,
	// each with the lowest revision made from it on.
	type point struct{ t, rev int64 }
	var byReturn, byCall []point
	for _, op := range ops {
		if linearRev(op) {
			byReturn = append(byReturn, point{op.Return, op.Rev})
		}
		if rev := changedRev(op); rev > 0 {
			byCall = append(byCall, point{op.Call, rev})
		}
	}
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].t < byReturn[j].t })
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].t < byCall[j].t })
	for i := 1; i < len(byReturn); i++ {
		byReturn[i].rev = max(byReturn[i].rev, byReturn[i-1].rev)
	}
	for i := len(byCall) - 2; i >= 0; i-- {
		byCall[i].rev = min(byCall[i].rev, byCall[i+1].rev)
	}
	for _, op := range ops {
		if !linearRev(op) {
			continue
		}
		op.checked = true
		// The highest revision answered before op was called.
		if i := sort.Search(len(byReturn), func(i int) bool { return byReturn[i].t >= op.Call }); i > 0 && op.Rev < byReturn[i-1].rev {
			rep.violate("revision", "%s %v by client %d (called at t=%v) answered at revision %d, below revision %d answered before it was called",
				op.Kind, keysOrKey(op), op.Client, time.Duration(op.Call).Round(time.Millisecond), op.Rev, byReturn[i-1].rev)
		}
		// The lowest revision written by a write called after op returned.
		if i := sort.Search(len(byCall), func(i int) bool { return byCall[i].t > op.Return }); i < len(byCall) && op.Rev >= byCall[i].rev {
			rep.violate("revision", "%s %v by client %d (returned at t=%v) answered at revision %d, yet revision %d was written by a write called after that",
				op.Kind, keysOrKey(op), op.Client, time.Duration(op.Return).Round(time.Millisecond), op.Rev, byCall[i].rev)
		}
	}
}
