package schema

// Bucket names, exactly as etcd 3.7 names its top-level bbolt buckets
// (server/storage/schema/bucket.go). etcd also numbers them (key 1, meta 2,
// lease 3, alarm 4, cluster 5, members 10, members_removed 11, auth 20,
// authUsers 21, authRoles 22); the numbers index its in-memory buffers and
// never reach the file. etcd's tests use one more bucket, "test", which is
// not part of the schema.
const (
	// BucketKey holds every revision of every key: revision key (17 bytes,
	// or 18 for a deletion) to encoded KeyValue.
	BucketKey = "key"
	// BucketMeta holds the Meta* keys below.
	BucketMeta = "meta"
	// BucketLease holds the leases: AppendLeaseKey(ID) to encoded Lease.
	BucketLease = "lease"
	// BucketAlarm holds the active alarms: encoded AlarmMember to an empty
	// value.
	BucketAlarm = "alarm"
	// BucketCluster holds ClusterVersionKey and ClusterDowngradeKey.
	BucketCluster = "cluster"
	// BucketMembers holds the members: AppendMemberKey(ID) to Member JSON.
	BucketMembers = "members"
	// BucketMembersRemoved holds the removed members: AppendMemberKey(ID)
	// to MembersRemovedValue.
	BucketMembersRemoved = "members_removed"
	// BucketAuth holds AuthEnabledKey and AuthRevisionKey.
	BucketAuth = "auth"
	// BucketAuthUsers holds the users: name to encoded User.
	BucketAuthUsers = "authUsers"
	// BucketAuthRoles holds the roles: name to encoded Role.
	BucketAuthRoles = "authRoles"
)

// Buckets returns the names of all of etcd's buckets in the order of etcd's
// schema.AllBuckets. It returns a new slice on every call.
func Buckets() []string {
	return []string{
		BucketKey, BucketMeta, BucketLease, BucketAlarm, BucketCluster,
		BucketMembers, BucketMembersRemoved,
		BucketAuth, BucketAuthUsers, BucketAuthRoles,
	}
}

// Keys of the "meta" bucket.
const (
	// MetaConsistentIndexKey holds the raft index of the last entry whose
	// effects the file holds, 8 bytes big-endian (AppendUint64).
	MetaConsistentIndexKey = "consistent_index"
	// MetaTermKey holds the raft term of that entry, 8 bytes big-endian.
	// Since etcd 3.5.
	MetaTermKey = "term"
	// MetaScheduledCompactKey holds the revision of the last compaction
	// requested (AppendCompactRev).
	MetaScheduledCompactKey = "scheduledCompactRev"
	// MetaFinishedCompactKey holds the revision of the last compaction
	// completed (AppendCompactRev).
	MetaFinishedCompactKey = "finishedCompactRev"
	// MetaConfStateKey holds the raft configuration as JSON
	// (AppendConfState). Since etcd 3.5.
	MetaConfStateKey = "confState"
	// MetaStorageVersionKey holds the storage schema version, "3.7.0"
	// (AppendStorageVersion). Since etcd 3.6.
	MetaStorageVersionKey = "storageVersion"
)

// Keys of the "cluster" bucket. Both since etcd 3.5.
const (
	// ClusterVersionKey holds the cluster version, such as "3.7.0"
	// (AppendVersion).
	ClusterVersionKey = "clusterVersion"
	// ClusterDowngradeKey holds the downgrade state as JSON
	// (AppendDowngradeInfo).
	ClusterDowngradeKey = "downgrade"
)

// Keys of the "auth" bucket.
const (
	// AuthEnabledKey holds one byte, 1 when auth is enabled and 0 when not
	// (AppendAuthEnabled).
	AuthEnabledKey = "authEnabled"
	// AuthRevisionKey holds the auth store's revision, 8 bytes big-endian
	// (AppendAuthRevision).
	AuthRevisionKey = "authRevision"
)
