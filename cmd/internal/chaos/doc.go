// Package chaos is accord's fault-injection harness: it runs real accordd
// processes on loopback, drives them with etcd clients (clientv3) while it
// kills, pauses, partitions, slows, reconfigures and moves the leadership of
// the cluster, and then checks everything the clients saw against the
// committed history.
//
// # Network
//
// Member i binds its peer listener on its own loopback address
// 127.0.0.(10+i) and advertises a proxy on the same address. accord dials
// loopback peers from the address its listener bound, so the proxy in front
// of a member knows which member each connection comes from, and applies
// faults per directed link: hold the bytes (a partition, or a one-way
// blackhole), reset connections, add delay and jitter, drop or stall
// connections at random. Clients reach members directly.
//
// # Checks
//
// After the faults stop, the cluster is healed, a barrier write is applied
// everywhere, and the committed history is read with a watch from revision 1
// (from two members, which must agree). Then:
//   - every acknowledged write is in the history at the revision it was
//     acknowledged with (otherwise it is a lost write); a write that
//     answered "compare failed" is not; a write of unknown outcome is there
//     at most once; nothing is there that no client wrote;
//   - the register operations (Get, Put, Delete, CAS on mod_revision),
//     partitioned by key, linearize (porcupine), with writes of unknown
//     outcome resolved from the history;
//   - every answered read, linearizable or serializable, returned exactly
//     the committed state at its header revision;
//   - every multi-key append transaction is in all of its lists or none, at
//     one revision, and lists agree on the order of their common ids;
//   - every watch (one per member from revision 1, and one over all
//     members) delivered the history in order, without repeats or gaps, each
//     revision in one response, and - on members that stayed - all of it,
//     resuming after its member was killed;
//   - lease keys vanished only after the lease could have expired (from the
//     client's acknowledged grant and keep-alives) or was revoked, all keys
//     of a lease in one revision, and all of them by the end;
//   - every member holds the same state (and HashKV) at the last revision
//     and at sampled older ones;
//   - no member exited by itself, and each restarted or added member served
//     again within Config.RecoverTimeout, with no operator action.
//
// CrashLoop SIGKILLs members (one, the leader, a majority, all) hundreds of
// times under writes and snapshots and checks that no acknowledged write is
// lost.
//
// Run and CrashLoop are seeded (Config.Seed) and bounded in time. A failing
// run keeps its directory: members' logs and data (a member that would not
// exit is made to dump its goroutines into its log), meta.json (the wall
// time that operation and fault times count from), ops.jsonl (every client
// operation), history.jsonl (the committed history), faults.jsonl,
// watch-*.jsonl, violations.txt and, for a linearizability failure,
// porcupine.html.
//
// The short version runs in `go test ./cmd/internal/chaos`; the long one is
// `go run ./cmd/accord-chaos`.
package chaos
