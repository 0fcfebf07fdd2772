package chaos

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Fault kinds, as Config.Faults names them and reports count them.
const (
	FaultKill          = "kill"           // SIGKILL a random member, restart it later
	FaultKillLeader    = "kill-leader"    // SIGKILL the leader, restart it later
	FaultPause         = "pause"          // SIGSTOP a random member for longer than the election timeout, then SIGCONT
	FaultPauseLeader   = "pause-leader"   // the same, on the leader
	FaultIsolateLeader = "isolate-leader" // cut the leader off from every other member, both ways
	FaultPartition     = "partition"      // split the members into a minority and a majority
	FaultBlackhole     = "blackhole"      // one-way: bytes in one direction only are held
	FaultDelay         = "delay"          // added latency (with jitter) on a member's links or on all
	FaultDrop          = "drop"           // connections on a member's links are closed or stalled at random
	FaultMemberAdd     = "member-add"     // MemberAdd + start a new member with --initial-cluster-state=existing
	FaultMemberRemove  = "member-remove"  // MemberRemove of a random member (possibly the leader)
	FaultMemberReplace = "member-replace" // remove a member, then add a new one
	FaultMoveLeader    = "move-leader"    // Maintenance.MoveLeader on the leader to a random follower
)

// AllFaults lists every fault kind, in the order reports print them.
var AllFaults = []string{
	FaultKill, FaultKillLeader, FaultPause, FaultPauseLeader,
	FaultIsolateLeader, FaultPartition, FaultBlackhole, FaultDelay, FaultDrop,
	FaultMemberAdd, FaultMemberRemove, FaultMemberReplace, FaultMoveLeader,
}

// Config holds every tunable of a run (Run) and of a crash loop
// (CrashLoop). A zero field takes the default written next to it.
type Config struct {
	// Accordd is the accordd binary (see Build). Required.
	Accordd string
	// Dir is where a run creates its directory (members' data and logs,
	// and the saved history of a failing run). Default os.TempDir().
	Dir string
	// KeepData keeps the run directory of a passing run too (a failing
	// run's is always kept).
	KeepData bool
	// Logf receives progress lines. Default: discarded.
	Logf func(format string, args ...any)

	// Seed seeds every random choice: the fault schedule (kinds, durations,
	// which member, which split), each client's operations and the crash
	// loop's kills. Which process is the leader when a fault strikes
	// depends on timing, so a replay repeats the schedule, not the exact
	// interleaving.
	Seed uint64
	// Members is the cluster size: 3 or 5. Default 3.
	Members int
	// Duration is how long clients run while faults are injected (a run
	// takes longer: start-up and the final checks). Default 20s.
	Duration time.Duration

	// ElectionTimeout is accordd's --election-timeout. Default 300ms.
	ElectionTimeout time.Duration
	// SnapshotCount is accordd's --snapshot-count. Default 300.
	SnapshotCount uint64
	// SnapshotInterval is passed as --snapshot-interval when accordd has
	// that flag (how often raft checks whether a snapshot is due; accord's
	// default is 30s, too slow for short runs). Default 1s.
	SnapshotInterval time.Duration
	// SnapshotCatchupEntries is passed as --snapshot-catchup-entries when
	// accordd has that flag (log entries kept after a snapshot, so that a
	// lagging or new member gets a snapshot rather than the log). Default 100.
	SnapshotCatchupEntries uint64
	// WatchProgressInterval is passed as --watch-progress-notify-interval
	// when accordd has that flag: the watchers ask for progress
	// notifications, whose revisions the checks follow. Default 250ms.
	WatchProgressInterval time.Duration
	// LogLevel is accordd's --log-level. Default "info".
	LogLevel string

	// RegisterClients run the per-key register workload (Get, Put, Delete,
	// CAS), checked with porcupine. Default 6.
	RegisterClients int
	// RegisterKeys is how many register keys they share. Default 12.
	RegisterKeys int
	// AppendClients run multi-key append transactions. Default 2.
	AppendClients int
	// AppendKeys is how many list keys they share. Default 6.
	AppendKeys int
	// LeaseClients grant leases, attach keys, keep them alive and revoke or
	// abandon them. Default 1.
	LeaseClients int
	// LeaseTTL is the TTL the lease clients ask for, whole seconds, at least
	// 1s. Default 2s.
	LeaseTTL time.Duration
	// OpTimeout bounds each client operation. Default 1.5s.
	OpTimeout time.Duration

	// Faults are the kinds injected, cycled in a seeded order so that every
	// kind comes up once per cycle. Default AllFaults.
	Faults []string
	// FaultHoldMin and FaultHoldMax bound how long a fault lasts before it
	// is healed. Default 500ms and 2s. Pauses last 1.5 to 10 election
	// timeouts whatever these say.
	FaultHoldMin, FaultHoldMax time.Duration
	// FaultGapMin and FaultGapMax bound the quiet time between faults
	// (after the cluster serves again). Default 200ms and 800ms.
	FaultGapMin, FaultGapMax time.Duration

	// RecoverTimeout bounds the wait for every member to serve a
	// linearizable read after a fault is healed or a member restarted; a
	// member that does not is a violation (a restart must need no operator
	// action). Default 30s.
	RecoverTimeout time.Duration
	// CheckTimeout bounds the porcupine check; an undecided check is a
	// violation. Default 60s.
	CheckTimeout time.Duration

	// CrashKills is how many SIGKILLs CrashLoop delivers. Default 200.
	CrashKills int
	// CrashWriters is how many clients write while CrashLoop kills.
	// Default 6.
	CrashWriters int
	// CrashSnapshotCount is --snapshot-count during CrashLoop, low so that
	// kills land during snapshots. Default 40.
	CrashSnapshotCount uint64
}

// withDefaults returns a copy of c with defaults filled in and checks it,
// reporting every problem at once.
func (c Config) withDefaults() (Config, error) {
	c.Faults = slices.Clone(c.Faults)
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	setDefault(&c.Members, 3)
	setDefault(&c.Duration, 20*time.Second)
	setDefault(&c.ElectionTimeout, 300*time.Millisecond)
	setDefault(&c.SnapshotCount, 300)
	setDefault(&c.SnapshotInterval, time.Second)
	setDefault(&c.SnapshotCatchupEntries, 100)
	setDefault(&c.WatchProgressInterval, 250*time.Millisecond)
	setDefault(&c.LogLevel, "info")
	setDefault(&c.RegisterClients, 6)
	setDefault(&c.RegisterKeys, 12)
	setDefault(&c.AppendClients, 2)
	setDefault(&c.AppendKeys, 6)
	setDefault(&c.LeaseClients, 1)
	setDefault(&c.LeaseTTL, 2*time.Second)
	setDefault(&c.OpTimeout, 1500*time.Millisecond)
	if len(c.Faults) == 0 {
		c.Faults = slices.Clone(AllFaults)
	}
	setDefault(&c.FaultHoldMin, 500*time.Millisecond)
	setDefault(&c.FaultHoldMax, 2*time.Second)
	setDefault(&c.FaultGapMin, 200*time.Millisecond)
	setDefault(&c.FaultGapMax, 800*time.Millisecond)
	setDefault(&c.RecoverTimeout, 30*time.Second)
	setDefault(&c.CheckTimeout, 60*time.Second)
	setDefault(&c.CrashKills, 200)
	setDefault(&c.CrashWriters, 6)
	setDefault(&c.CrashSnapshotCount, 40)

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("chaos: "+format, args...)) }
	if c.Accordd == "" {
		bad("Config.Accordd is empty (build accordd with Build)")
	}
	if c.Members < 1 || c.Members > 7 {
		bad("Members %d: want 1 to 7", c.Members)
	}
	if c.LeaseTTL < time.Second || c.LeaseTTL%time.Second != 0 {
		bad("LeaseTTL %v: want whole seconds, at least 1s", c.LeaseTTL)
	}
	if c.LeaseTTL < c.ElectionTimeout*3/2 {
		bad("LeaseTTL %v is below accord's minimum TTL (1.5 election timeouts, %v)", c.LeaseTTL, c.ElectionTimeout*3/2)
	}
	if c.RegisterClients+c.AppendClients+c.LeaseClients == 0 {
		bad("no clients")
	}
	if c.RegisterKeys < 1 || c.AppendKeys < 3 {
		bad("RegisterKeys %d, AppendKeys %d: want at least 1 and 3", c.RegisterKeys, c.AppendKeys)
	}
	for _, f := range c.Faults {
		if !slices.Contains(AllFaults, f) {
			bad("unknown fault kind %q (known: %v)", f, AllFaults)
		}
	}
	if c.FaultHoldMax < c.FaultHoldMin || c.FaultGapMax < c.FaultGapMin {
		bad("fault hold [%v, %v] or gap [%v, %v] is empty", c.FaultHoldMin, c.FaultHoldMax, c.FaultGapMin, c.FaultGapMax)
	}
	return c, errors.Join(errs...)
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}
