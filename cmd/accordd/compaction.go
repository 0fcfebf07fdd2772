package main

import (
	"context"
	"errors"
	"time"

	"github.com/accordkv/accord"
)

// revisionCompactionInterval is how often revision-mode auto compaction
// runs (etcd's interval).
const revisionCompactionInterval = 5 * time.Minute

// autoCompact compacts the store's history as etcd's
// --auto-compaction-mode/--auto-compaction-retention do, on the leader
// only (the compaction goes through the log to every member):
//
//   - periodic, retention R: every R/10 (at least a second) it notes the
//     revision, and compacts to the newest revision noted at least R ago,
//     so that R of history stays readable;
//   - revision, retention N: every five minutes it compacts to the current
//     revision minus N.
//
// accord keeps history in memory, so a busy cluster needs this (or
// `etcdctl compact`) to bound its memory.
func (d *daemon) autoCompact() {
	p := d.s.compaction
	interval := revisionCompactionInterval
	if p.mode == "periodic" {
		interval = max(p.period/10, time.Second)
	}
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	var done int64
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		now, rev := time.Now(), d.store.Revision()
		target := int64(0)
		if p.mode == "periodic" {
			samples = append(samples, sample{now, rev})
			i := -1
			for j, s := range samples {
				if now.Sub(s.at) >= p.period {
					i = j
				}
			}
			if i < 0 {
				continue
			}
			target = samples[i].rev
			samples = samples[i:]
		} else {
			target = rev - p.revisions
		}
		if target <= done || target <= 1 {
			continue
		}
		ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		st, err := d.store.Status(ctx)
		if err != nil || st.Leader != st.ID {
			cancel()
			continue
		}
		if st.CompactRevision >= target {
			done = st.CompactRevision
			cancel()
			continue
		}
		err = d.store.Compact(ctx, target)
		cancel()
		switch {
		case err == nil:
			done = target
			d.log.Info("compacted history (auto compaction)", "revision", target, "mode", p.mode)
		case errors.Is(err, accord.ErrCompacted):
			done = target
		default:
			d.log.Warn("auto compaction failed; will retry", "revision", target, "err", err)
		}
	}
}
