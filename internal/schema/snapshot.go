package schema

import "crypto/sha256"

// SnapshotTrailerLen is the length of the integrity trailer etcd appends to
// a snapshot: the SHA-256 of every byte before it.
const SnapshotTrailerLen = sha256.Size

// HasSnapshotTrailer reports whether a snapshot file of size bytes ends with
// the trailer, by etcdutl's rule (etcdutl/snapshot/v3_snapshot.go,
// hasChecksum): size % 512 == 32. A bbolt file is a whole number of pages,
// and a page is a multiple of 512 bytes, so a bare database file never
// passes and a database followed by the trailer always does.
func HasSnapshotTrailer(size int64) bool { return size%512 == SnapshotTrailerLen }
