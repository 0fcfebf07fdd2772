package accord

import (
	"context"
	"errors"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// AutoCompaction compacts history automatically, as etcd's
// --auto-compaction-mode and --auto-compaction-retention do. Set at most
// one field; the zero value (the default, as in etcd) never compacts on
// its own. Only the ready leader compacts: the compaction goes through the
// log to every member.
type AutoCompaction struct {
	// Period keeps at least this much history (etcd's periodic mode):
	// every Period/10 (at least a second) the leader notes the revision,
	// and compacts to the newest one it noted at least Period ago.
	// Minimum 1s.
	Period time.Duration

	// Revisions keeps this many revisions (etcd's revision mode): every
	// five minutes the leader compacts to the current revision minus
	// Revisions.
	Revisions int64
}

// revisionCompactionInterval is how often revision-mode auto compaction
// runs (etcd's interval).
const revisionCompactionInterval = 5 * time.Minute

// autoCompact is the loop of Options.AutoCompaction; it acts while this
// node is the ready leader.
func (s *Store) autoCompact() {
	p := s.opts.AutoCompaction
	interval := revisionCompactionInterval
	if p.Period > 0 {
		interval = max(p.Period/10, time.Second)
	}
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now, rev := time.Now(), s.ks.Rev()
		var target int64
		if p.Period > 0 {
			// Samples are taken on every member, so that a new leader
			// knows the revisions of the past period too.
			samples = append(samples, sample{now, rev})
			i := -1
			for j, sm := range samples {
				if now.Sub(sm.at) >= p.Period {
					i = j
				}
			}
			if i < 0 {
				continue
			}
			target = samples[i].rev
			samples = samples[i:]
		} else {
			target = rev - p.Revisions
		}
		if _, compacted := s.ks.Revs(); target <= compacted || target <= 1 || !s.isReady() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.opts.ElectionTimeout)
		_, err := s.proposeAsLeader(ctx, &wire.Command{Type: wire.CmdCompact, Compact: target})
		cancel()
		switch {
		case err == nil:
			s.log.Info("compacted history (auto compaction)", "revision", target)
		case errors.Is(err, ErrCompacted), errors.Is(err, ErrNotLeader), errors.Is(err, ErrClosed):
		default:
			s.log.Warn("auto compaction failed; will retry", "revision", target, "err", err)
		}
	}
}
