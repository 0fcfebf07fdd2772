// Package boltcheck checks a bbolt file that may be damaged without
// letting bbolt panic the process.
//
// bbolt's Tx.Check runs its walk on a goroutine of its own, where a page
// that fails bbolt's assertions (a damaged page header, a page number past
// the file) panics out of reach of any recover. Check first walks every
// bucket, key and value on the caller's goroutine, where such a panic (or
// a fault on a page past the end of the mapping) is recovered and
// returned as an error, and runs Tx.Check only on a file whose pages that
// walk could all read.
package boltcheck

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"go.etcd.io/bbolt"
)

// maxProblems is how many of Tx.Check's findings an error lists.
const maxProblems = 5

// Check walks every page reachable in tx, then runs bbolt's consistency
// check. A nil error means bbolt found nothing wrong.
func Check(tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bolt database damaged: %v", p)
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	if err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error { return walk(b) }); err != nil {
		return err
	}
	var problems []string
	n := 0
	for e := range tx.Check() {
		n++
		if len(problems) < maxProblems {
			problems = append(problems, e.Error())
		}
	}
	if n > 0 {
		return fmt.Errorf("bolt consistency check failed: %d errors found: %w", n, errors.New(strings.Join(problems, "; ")))
	}
	return nil
}

// walk reads every key and value of b and of the buckets nested in it.
func walk(b *bbolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		nb := b.Bucket(k)
		if nb == nil {
			return fmt.Errorf("key %q has no value and is not a bucket", k)
		}
		return walk(nb)
	})
}
