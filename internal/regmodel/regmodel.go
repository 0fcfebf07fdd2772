// Package regmodel is the porcupine model of accord's keys as registers,
// shared by the root package's linearizability test and the fault
// harness (cmd/internal/chaos): Get, Put, Delete and a CAS on the mod
// revision, partitioned by key.
//
// Revisions make the model stricter than a plain register: every write to
// a key gets a revision above all earlier writes to it, and a read reports
// the revision of the value it saw. A write of unknown outcome (Unknown)
// may or may not have taken effect; a value written that way has no known
// revision until a read shows one. Values are unique in a history, so when
// the revision of the current value is not known, a CAS's expected value
// says which write it saw.
package regmodel

import (
	"fmt"
	"slices"

	"github.com/anishathalye/porcupine"
)

// Kind is an operation's kind.
type Kind uint8

const (
	Get Kind = iota
	Put
	Delete
	CAS
)

// Input is one operation on one key.
type Input struct {
	Kind     Kind
	Key      string
	Value    string // Put, CAS: the new value (unique in the history)
	ExpRev   int64  // CAS: the mod revision compared (0: the key is absent)
	ExpValue string // CAS: the value the client saw at ExpRev
}

// Output is what an operation returned. Each field is comparable, so that
// outputs can be compared with ==.
type Output struct {
	Unknown bool   // a write that may or may not have taken effect
	OK      bool   // CAS: the compare held
	Exists  bool   // Get, failed CAS: the key was present
	Value   string // Get, failed CAS
	// Get, failed CAS: the key's mod revision; Put, successful CAS: the
	// revision written; Delete: the revision of the delete if it deleted.
	Rev     int64
	Deleted int64 // Delete: keys deleted
}

func (o Output) String() string {
	if !o.Exists {
		return "<absent>"
	}
	return fmt.Sprintf("%q@%d", o.Value, o.Rev)
}

// state is the state of one key.
type state struct {
	exists bool
	value  string
	rev    int64 // mod revision of value; 0 when absent or not known (written by an op of unknown outcome)
	floor  int64 // the highest known revision of a write to this key: every later write is above it
}

// observe checks what a read returned against the state, and learns the
// mod revision if it was not known.
func (s state) observe(o Output) (bool, any) {
	if o.Exists != s.exists || o.Value != s.value {
		return false, s
	}
	switch {
	case !o.Exists:
		return true, s
	case s.rev != 0:
		return o.Rev == s.rev, s
	case o.Rev <= s.floor:
		return false, s
	}
	s.rev, s.floor = o.Rev, o.Rev
	return true, s
}

// casHolds tells whether ModRevision(key) == in.ExpRev holds in s.
func (s state) casHolds(in Input) bool {
	switch {
	case in.ExpRev == 0:
		return !s.exists
	case !s.exists:
		return false
	case s.rev != 0:
		return s.rev == in.ExpRev
	}
	return s.value == in.ExpValue
}

func step(st, input, output any) (bool, any) {
	s, in, o := st.(state), input.(Input), output.(Output)
	switch in.Kind {
	case Get:
		return s.observe(o)
	case Put:
		if o.Unknown {
			return true, state{exists: true, value: in.Value, floor: s.floor}
		}
		if o.Rev <= s.floor {
			return false, s
		}
		return true, state{exists: true, value: in.Value, rev: o.Rev, floor: o.Rev}
	case Delete:
		switch {
		case o.Unknown:
			return true, state{floor: s.floor}
		case !s.exists:
			return o.Deleted == 0, s
		case o.Deleted != 1 || o.Rev <= s.floor:
			return false, s
		}
		return true, state{floor: o.Rev}
	case CAS:
		holds := s.casHolds(in)
		switch {
		case o.Unknown && holds:
			return true, state{exists: true, value: in.Value, floor: s.floor}
		case o.Unknown:
			return true, s
		case o.OK:
			if !holds || o.Rev <= s.floor {
				return false, s
			}
			return true, state{exists: true, value: in.Value, rev: o.Rev, floor: o.Rev}
		case holds:
			return false, s
		}
		return s.observe(o)
	}
	return false, s
}

// Model checks histories of Input and Output, partitioned by key.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return state{} },
	Step: step,
	DescribeOperation: func(input, output any) string {
		in, o := input.(Input), output.(Output)
		var res string
		switch {
		case o.Unknown:
			res = "?"
		case in.Kind == Get || in.Kind == CAS && !o.OK:
			res = o.String()
		case in.Kind == Delete:
			res = fmt.Sprintf("deleted %d @%d", o.Deleted, o.Rev)
		default:
			res = fmt.Sprintf("ok @%d", o.Rev)
		}
		switch in.Kind {
		case Get:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case Put:
			return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
		case Delete:
			return fmt.Sprintf("delete(%s) -> %s", in.Key, res)
		}
		return fmt.Sprintf("cas(%s, mod=%d(%q) -> %q) -> %s", in.Key, in.ExpRev, in.ExpValue, in.Value, res)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		if !s.exists {
			return fmt.Sprintf("<absent> (writes above %d)", s.floor)
		}
		return fmt.Sprintf("%q@%d (writes above %d)", s.value, s.rev, s.floor)
	},
}
