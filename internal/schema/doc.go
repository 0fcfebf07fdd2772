// Package schema is etcd 3.7's bbolt layout, written and read by hand: the
// bucket names, the keys and values of each bucket, and the protobuf and JSON
// encodings etcd stores in them. It depends on neither protobuf nor etcd, so
// that the root module stays free of both; accord's on-disk keyspace uses it
// so that etcdutl can read accord's file and restore it into an etcd that
// serves the same keys.
//
// The encoders write the bytes etcd writes (proto.Marshal of etcd's
// generated types, encoding/json for the JSON values). The decoders accept
// what protobuf-go accepts, with one difference: a known field with the
// wrong wire type is refused (ErrWireType), not kept as an unknown field.
// Where etcd would panic on a bad value, they return a *DecodeError. The
// etcdapi module checks both directions against etcd's own types
// (etcdapi/schema_compat_test.go).
//
// The rest of this comment says what etcd 3.7.3 and etcdutl 3.7.3 require
// of such a file and what they do with it. File and function names refer to
// go.etcd.io/etcd/server/v3@v3.7.3 and go.etcd.io/etcd/etcdutl/v3@v3.7.3.
//
// # etcdutl snapshot status
//
// v3Manager.Status (etcdutl/snapshot/v3_snapshot.go):
//
//   - opens the file read-only with bbolt and runs tx.Check: any
//     inconsistency of the bbolt file fails the command. It does not look at
//     the sha256 trailer.
//   - reads meta/storageVersion (schema.ReadStorageVersionFromSnapshot,
//     storage/schema/version.go). That function dereferences the "meta"
//     bucket, so a file without "meta" makes etcdutl panic (nil pointer); an
//     absent or unparsable storageVersion shows as an empty VERSION.
//   - walks every top-level bucket, known or not, and hashes its name, keys
//     and values into a CRC-32C: the HASH column.
//   - in "key", parses every key with mvcc.BytesToRev (17 or 18 bytes, '_'
//     at byte 8, no negative revision; see ParseRevisionKey) and unmarshals
//     every value as mvccpb.KeyValue; either failure fails the command.
//     REVISION is the main revision of the last key, TOTAL KEYS the number
//     of keys whose last record is not a tombstone.
//
// # The sha256 trailer
//
// etcd's Maintenance.Snapshot (etcdserver/api/v3rpc/maintenance.go,
// maintenanceServer.Snapshot) streams backend.Snapshot, a bbolt tx.WriteTo
// of one read transaction, then one more message holding the SHA-256 of
// every byte it streamed. clientv3's snapshot.SaveWithVersion writes both to
// the file and refuses a file without the trailer. Whether a file has one is
// told by its size alone (hasChecksum, HasSnapshotTrailer): size % 512 ==
// 32. etcdutl's copyAndVerifyDB copies the file to member/snap/db, cuts the
// trailer, and then refuses a file without a trailer ("snapshot missing hash
// but --skip-hash-check=false") and a trailer that is not the SHA-256 of the
// rest ("expected sha256 [...], got [...]"). With --skip-hash-check (for a
// db copied out of a data directory) nothing is checked.
//
// # etcdutl snapshot restore
//
// v3Manager.Restore keeps the file as it is except for:
//
//   - membership: saveDB deletes every record of "members" and
//     "members_removed" (schema.TrimMembershipFromBackend; absent buckets
//     are fine), then saveWALAndSnap creates "members", "members_removed"
//     and "cluster" (RaftCluster.SetBackend) and stores the members of
//     --initial-cluster. It writes a new WAL: one ConfChangeAddNode per
//     member at term 1, commit = the number of members, and a raft snapshot
//     at that index.
//   - consistent_index and term: updateCIndex writes consistent_index = the
//     number of members and term = 1 (cindex.UpdateConsistentIndexForce),
//     whatever the file held. This needs the "meta" bucket: without it
//     etcdutl exits with "failed to find a bucket".
//   - with --bump-revision N --mark-compacted, modifyLatestRevision stores an
//     empty value under the revision key of the last main revision + N and
//     sets scheduledCompactRev to it.
//
// Everything else passes through byte for byte: "key", "lease", "alarm",
// the auth buckets, clusterVersion and downgrade, the compaction marks,
// storageVersion and confState, and buckets and meta keys etcd does not know.
// etcd never reads those, but keeps them: its defragmentation (defragdb,
// storage/backend/backend.go) copies every top-level bucket, and its
// snapshots copy the file. defragdb copies keys and values only, so a nested
// bucket inside an unknown bucket would come out as a key with an empty
// value.
//
// # What etcd does with the file at startup
//
//   - bootstrapBackend (etcdserver/bootstrap.go) creates "meta" if missing
//     and reads consistent_index and term (schema.UnsafeReadConsistentIndex:
//     8 bytes big-endian; a shorter value panics). When the WAL's last
//     snapshot is newer than consistent_index, recoverSnapshot swaps in
//     member/snap/<index>.snap.db (storage.RecoverSnapshotBackend; etcd
//     panics if it is missing) and refuses a db whose consistent_index is
//     still below the snapshot's and not zero. EtcdServer.apply then applies
//     WAL entries at or below consistent_index to membership only, never to
//     the keyspace: consistent_index is the applied index of the file.
//   - schema.Validate (storage/schema/schema.go) takes storageVersion, or
//     3.5 when it is absent and term is not zero, and refuses to start
//     unless there is a migration path to 3.7: 3.5, 3.6 and 3.7 pass, 3.4,
//     3.8 and 4.x do not. Once the cluster version is known,
//     version.Monitor.UpdateStorageVersionIfNeeded migrates storageVersion up
//     to it ("3.6.0" becomes "3.7.0").
//   - mvcc.NewStore creates "key" and "meta"; store.restore (storage/mvcc/
//     kvstore.go) takes finishedCompactRev as the compacted revision (reads
//     below it fail with ErrCompacted), reads "key" in order and unmarshals
//     every value (a failure is fatal), builds the key index from the
//     records themselves (the create revision and version of a key's first
//     record; tombstones end a generation) and sets the current revision to
//     the last main revision, raised to finishedCompactRev and
//     scheduledCompactRev if those are higher. When scheduledCompactRev is
//     above finishedCompactRev, the compaction was cut short and etcd runs
//     it again (compactLockfree: "resume scheduled compaction"). Keys are
//     attached to the lease their record names; a lease that is not in
//     "lease" is logged ("failed to attach a lease") and the key stays.
//   - lessor.initAndRecover (lease/lessor.go) creates "lease" and
//     unmarshals every value as leasepb.Lease (a failure panics); TTL is
//     raised to the minimum TTL, and the lease does not expire until a
//     leader promotes the lessor, which gives it its TTL, or its
//     RemainingTTL when a checkpoint recorded one, from then on.
//   - the alarm store creates "alarm" and unmarshals every key as an
//     AlarmMember; values are ignored. An alarm found there is active, for
//     whatever member ID it names: a NOSPACE alarm refuses writes ("mvcc:
//     database space exceeded") until `etcdctl alarm disarm`, a CORRUPT
//     alarm makes every request that goes through raft fail
//     (etcdserver/apply/corrupt.go), and either makes `etcdctl endpoint
//     health` report the member unhealthy.
//   - the auth store and the membership create their buckets when missing.
//     confState is written after every applied configuration change and
//     never read back by 3.7.
//
// # What a file must hold
//
// For `etcdutl snapshot status`, then `etcdutl snapshot restore`, then an
// etcd that serves the same keys, a file needs:
//
//   - a bbolt file that passes tx.Check, with a "meta" bucket;
//   - in "key" only revision keys and KeyValue values. After a compaction
//     at C, finishedCompactRev is C and the newest record at or below C of
//     every key that is not deleted stays: etcd rebuilds each key from these
//     records alone, so a key whose records were all removed is gone. Older
//     records may go, as etcd's compaction removes them;
//   - storageVersion 3.5, 3.6 or 3.7 ("3.6.0", which etcd 3.6 reads too),
//     or none and a non-zero term;
//   - leases in "lease" with TTL in seconds in field 2, keyed by
//     AppendLeaseKey, and the lease of each key in its KeyValue.Lease;
//   - for restore, the sha256 trailer (or --skip-hash-check).
//
// Everything else is optional: etcd creates the buckets it misses, and
// restore rewrites consistent_index, term and the members whatever they
// were. confState is not needed.
//
// # Fields etcd does not know
//
// protobuf-go keeps unknown fields of a stored KeyValue or Lease, so a
// writer may add fields (a checksum, say) and etcd still reads the record.
// etcd does not check or update them, drops them when it rewrites a lease,
// and sends them to its clients inside every KeyValue it serves from such a
// record (Range, Txn, watch); clientv3 ignores them.
package schema
