package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Violation is one broken guarantee: a history that does not linearize, a
// lost acknowledged write, a watch with a gap, a member that crashed or
// did not come back, ...
type Violation struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (v Violation) String() string { return v.Kind + ": " + v.Detail }

// OpCount counts the operations of one kind by outcome.
type OpCount struct {
	OK      int `json:"ok"`      // acknowledged (reads: answered)
	Failed  int `json:"failed"`  // definitely not applied (or a read that failed)
	Unknown int `json:"unknown"` // a write whose outcome the client never learned
}

// Report is what one or more runs (or crash loops) found. Reports of
// several runs add up with Add.
type Report struct {
	Runs     int           // runs (or crash loops) added up
	Seeds    []uint64      // their seeds
	Members  []int         // their cluster sizes
	Duration time.Duration // their client time, summed
	Elapsed  time.Duration // their wall time, summed

	Ops              map[string]*OpCount // by kind
	OpsChecked       int                 // operations that went into a check (porcupine, the committed history, the final state)
	WatchEvents      int                 // watch events compared with the committed history
	WatchResumes     int                 // watches seen to resume after their member was killed, paused or partitioned
	WatchProgress    int                 // progress notifications checked (periodic and requested)
	Faults           map[string]int      // faults injected, by kind
	Kills            int                 // SIGKILLs delivered (all kinds)
	Restarts         int                 // processes restarted (each came back serving or is a violation)
	Snapshots        int                 // raft snapshots the members logged
	SnapshotInstalls int                 // snapshots members installed from a leader
	AckedWrites      int                 // acknowledged writes checked against the final state

	// The crash loop's maintenance and what its kills interrupted, each
	// measured: see maint.go.
	Compactions           int // compactions acknowledged
	Defrags               int // defrags completed
	KillsDuringDefrag     int // SIGKILLs sent while a Defragment RPC to the member was in flight, which then failed
	KillsDefragFile       int // SIGKILLs that left kv.db.defrag half written
	KillsDuringInstall    int // SIGKILLs that left a leader's snapshot received but not swapped in (snapshots/, kv.db.install)
	KillsDuringCompaction int // SIGKILLs that left kv.db with a compaction scheduled but not finished
	KVChecked             int // members' kv.db that passed bbolt's consistency check after the loop
	LostWrites            int // acknowledged writes missing from it (must be 0)

	Violations    []Violation // the first few of each kind
	NumViolations int         // all of them
	Dirs          []string    // directories where failing runs saved their history

	mu      sync.Mutex     // guards the fields written while a run is going on
	perKind map[string]int // violations kept by kind
}

// maxKeptPerKind bounds the violations kept per kind (all are counted).
const maxKeptPerKind = 20

func newReport() *Report {
	return &Report{Ops: map[string]*OpCount{}, Faults: map[string]int{}, perKind: map[string]int{}}
}

func (r *Report) violate(kind, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.NumViolations++
	if r.perKind == nil {
		r.perKind = map[string]int{}
	}
	r.perKind[kind]++
	if r.perKind[kind] <= maxKeptPerKind {
		r.Violations = append(r.Violations, Violation{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
}

func (r *Report) fault(kind string) {
	r.mu.Lock()
	r.Faults[kind]++
	r.mu.Unlock()
}

func (r *Report) addKills(n int) {
	r.mu.Lock()
	r.Kills += n
	r.mu.Unlock()
}

func (r *Report) addRestarts(n int) {
	r.mu.Lock()
	r.Restarts += n
	r.mu.Unlock()
}

// Failed reports whether anything was found: a violation or a lost write.
func (r *Report) Failed() bool { return r.NumViolations > 0 || r.LostWrites > 0 }

// Add adds o's figures to r.
func (r *Report) Add(o *Report) {
	r.Runs += o.Runs
	r.Seeds = append(r.Seeds, o.Seeds...)
	r.Members = append(r.Members, o.Members...)
	r.Duration += o.Duration
	r.Elapsed += o.Elapsed
	if r.Ops == nil {
		r.Ops = map[string]*OpCount{}
	}
	for k, c := range o.Ops {
		if r.Ops[k] == nil {
			r.Ops[k] = &OpCount{}
		}
		r.Ops[k].OK += c.OK
		r.Ops[k].Failed += c.Failed
		r.Ops[k].Unknown += c.Unknown
	}
	r.OpsChecked += o.OpsChecked
	r.WatchEvents += o.WatchEvents
	r.WatchResumes += o.WatchResumes
	r.WatchProgress += o.WatchProgress
	if r.Faults == nil {
		r.Faults = map[string]int{}
	}
	for k, n := range o.Faults {
		r.Faults[k] += n
	}
	r.Kills += o.Kills
	r.Restarts += o.Restarts
	r.Snapshots += o.Snapshots
	r.SnapshotInstalls += o.SnapshotInstalls
	r.AckedWrites += o.AckedWrites
	r.Compactions += o.Compactions
	r.Defrags += o.Defrags
	r.KillsDuringDefrag += o.KillsDuringDefrag
	r.KillsDefragFile += o.KillsDefragFile
	r.KillsDuringInstall += o.KillsDuringInstall
	r.KillsDuringCompaction += o.KillsDuringCompaction
	r.KVChecked += o.KVChecked
	r.LostWrites += o.LostWrites
	r.Violations = append(r.Violations, o.Violations...)
	r.NumViolations += o.NumViolations
	r.Dirs = append(r.Dirs, o.Dirs...)
}

// Print writes the figures: runs x duration x members, operations by
// kind, faults by kind, violations and lost acknowledged writes.
func (r *Report) Print(w io.Writer) {
	sizes := map[int]int{}
	for _, m := range r.Members {
		sizes[m]++
	}
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(sizes)) {
		parts = append(parts, fmt.Sprintf("%d x %d members", sizes[m], m))
	}
	per := time.Duration(0)
	if r.Runs > 0 {
		per = r.Duration / time.Duration(r.Runs)
	}
	fmt.Fprintf(w, "runs:               %d (%s), %v of client time each on average, %v wall time in all\n",
		r.Runs, strings.Join(parts, ", "), per.Round(time.Second), r.Elapsed.Round(time.Second))
	total := 0
	var ops []string
	for _, k := range slices.Sorted(maps.Keys(r.Ops)) {
		c := r.Ops[k]
		n := c.OK + c.Failed + c.Unknown
		total += n
		s := fmt.Sprintf("%s %d", k, n)
		if c.Unknown > 0 || c.Failed > 0 {
			s += fmt.Sprintf(" (%d ok, %d failed, %d unknown)", c.OK, c.Failed, c.Unknown)
		}
		ops = append(ops, s)
	}
	fmt.Fprintf(w, "ops:                %d issued, %d checked\n", total, r.OpsChecked)
	for _, s := range ops {
		fmt.Fprintf(w, "                      %s\n", s)
	}
	if r.WatchEvents > 0 || r.WatchResumes > 0 {
		fmt.Fprintf(w, "watch events:       %d compared with the committed history; %d resumptions after the serving member failed; %d progress notifications checked\n", r.WatchEvents, r.WatchResumes, r.WatchProgress)
	}
	nf := 0
	var fs []string
	for _, k := range AllFaults {
		if n := r.Faults[k]; n > 0 {
			nf += n
			fs = append(fs, fmt.Sprintf("%s %d", k, n))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Faults)) {
		if !slices.Contains(AllFaults, k) && r.Faults[k] > 0 {
			nf += r.Faults[k]
			fs = append(fs, fmt.Sprintf("%s %d", k, r.Faults[k]))
		}
	}
	fmt.Fprintf(w, "faults injected:    %d: %s\n", nf, strings.Join(fs, ", "))
	fmt.Fprintf(w, "SIGKILLs:           %d (restarts %d, each serving again without operator action unless a violation says otherwise); snapshots logged by members: %d taken, %d installed from a leader\n", r.Kills, r.Restarts, r.Snapshots, r.SnapshotInstalls)
	if r.Compactions > 0 || r.Defrags > 0 || r.KVChecked > 0 {
		fmt.Fprintf(w, "maintenance:        %d compactions, %d defrags completed; kv.db of %d members passed bbolt's check after the loop\n", r.Compactions, r.Defrags, r.KVChecked)
		fmt.Fprintf(w, "SIGKILLs during:    a defrag %d (RPC in flight, then failed; %d left kv.db.defrag half written), a snapshot install %d, a compaction %d\n",
			r.KillsDuringDefrag, r.KillsDefragFile, r.KillsDuringInstall, r.KillsDuringCompaction)
	}
	fmt.Fprintf(w, "violations:         %d\n", r.NumViolations)
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  - %s\n", v)
	}
	fmt.Fprintf(w, "acked writes lost:  %d of %d acknowledged writes checked\n", r.LostWrites, r.AckedWrites)
	for _, d := range r.Dirs {
		fmt.Fprintf(w, "history saved in:   %s\n", d)
	}
}
