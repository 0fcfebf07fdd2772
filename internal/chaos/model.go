package chaos

import (
	"fmt"
	"maps"
	"slices"

	"github.com/anishathalye/porcupine"
)

// The register model: every key is an independent register (the history
// is partitioned by key), read with a linearizable Get and written with
// Put, Delete and a compare-and-swap on the key's mod revision. Values are
// unique in a run, so a value names the write that produced it.
//
// Revisions are part of the answers and the model checks them too: the
// writes to a key take increasing revisions in their linearization order,
// and a read returns the revision of the write it observes. A write of
// unknown outcome whose value the committed history shows enters the
// model with that revision; one it does not show never took effect and is
// left out; a delete of unknown outcome stays open to the end of the
// history ("may have happened at any point after its call, or not at
// all").

type regKind uint8

const (
	regGet regKind = iota
	regPut
	regDelete
	regCAS
)

// regInput is one operation on one key.
type regInput struct {
	kind     regKind
	key      string
	value    string // put, cas: the new value
	expRev   int64  // cas: the mod revision compared (0: the key is absent)
	expValue string // cas: the value the client saw at expRev
}

// regOutput is an operation's answer; comparable with ==.
type regOutput struct {
	unknown bool   // a delete of unknown outcome
	ok      bool   // cas: the compare held
	exists  bool   // get, failed cas: the key was present
	value   string // get, failed cas
	// get, failed cas: the key's mod revision; put, successful cas: the
	// revision written; delete: the revision of the delete if it deleted.
	rev     int64
	deleted int64
}

func (o regOutput) String() string {
	if !o.exists {
		return "<absent>"
	}
	return fmt.Sprintf("%q@%d", o.value, o.rev)
}

// regState is the state of one key.
type regState struct {
	exists bool
	value  string
	rev    int64 // mod revision of value; 0 when not known (a delete of unknown outcome is the only write without one)
	floor  int64 // the highest revision of a write to this key so far: later writes are above it
}

// observe checks what a read returned against s.
func (s regState) observe(o regOutput) (bool, regState) {
	if o.exists != s.exists || o.value != s.value {
		return false, s
	}
	switch {
	case !o.exists:
		return true, s
	case s.rev != 0:
		return o.rev == s.rev, s
	case o.rev <= s.floor:
		return false, s
	}
	s.rev, s.floor = o.rev, o.rev
	return true, s
}

// casHolds tells whether ModRevision(key) == in.expRev holds in s.
func (s regState) casHolds(in regInput) bool {
	switch {
	case in.expRev == 0:
		return !s.exists
	case !s.exists:
		return false
	case s.rev != 0:
		return s.rev == in.expRev
	}
	return s.value == in.expValue
}

func regStep(state, input, output any) (bool, any) {
	s, in, o := state.(regState), input.(regInput), output.(regOutput)
	switch in.kind {
	case regGet:
		return s.observe(o)
	case regPut:
		if o.rev <= s.floor {
			return false, s
		}
		return true, regState{exists: true, value: in.value, rev: o.rev, floor: o.rev}
	case regDelete:
		switch {
		case o.unknown:
			return true, regState{floor: s.floor}
		case !s.exists:
			return o.deleted == 0, s
		case o.deleted != 1 || o.rev <= s.floor:
			return false, s
		}
		return true, regState{floor: o.rev}
	case regCAS:
		holds := s.casHolds(in)
		switch {
		case o.ok:
			if !holds || o.rev <= s.floor {
				return false, s
			}
			return true, regState{exists: true, value: in.value, rev: o.rev, floor: o.rev}
		case holds:
			return false, s
		}
		return s.observe(o)
	}
	return false, s
}

var regModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: regStep,
	DescribeOperation: func(input, output any) string {
		in, o := input.(regInput), output.(regOutput)
		var res string
		switch {
		case o.unknown:
			res = "?"
		case in.kind == regGet || in.kind == regCAS && !o.ok:
			res = o.String()
		case in.kind == regDelete:
			res = fmt.Sprintf("deleted %d @%d", o.deleted, o.rev)
		default:
			res = fmt.Sprintf("ok @%d", o.rev)
		}
		switch in.kind {
		case regGet:
			return fmt.Sprintf("get(%s) -> %s", in.key, res)
		case regPut:
			return fmt.Sprintf("put(%s, %q) -> %s", in.key, in.value, res)
		case regDelete:
			return fmt.Sprintf("delete(%s) -> %s", in.key, res)
		}
		return fmt.Sprintf("cas(%s, mod=%d(%q) -> %q) -> %s", in.key, in.expRev, in.expValue, in.value, res)
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.exists {
			return fmt.Sprintf("<absent> (writes above %d)", s.floor)
		}
		return fmt.Sprintf("%q@%d (writes above %d)", s.value, s.rev, s.floor)
	},
}

// regOperations converts the register operations of a run into porcupine
// operations: answered ones as they are; writes of unknown outcome as the
// committed history resolved them (a put or cas found there enters with
// its revision and no return time; one not found is left out); deletes of
// unknown outcome open to the end. Failed reads are left out.
func regOperations(ops []*Op) []porcupine.Operation {
	var out []porcupine.Operation
	last := int64(0)
	for _, op := range ops {
		last = max(last, op.Call, op.Return)
	}
	end := last + 1
	for _, op := range ops {
		in := regInput{key: op.Key, value: op.Value, expRev: op.ExpRev, expValue: op.ExpValue}
		var o regOutput
		ret := op.Return
		switch op.Kind {
		case opGet, opFinalGet:
			in.kind = regGet
		case opPut:
			in.kind = regPut
		case opDelete:
			in.kind = regDelete
		case opCAS:
			in.kind = regCAS
		default:
			continue
		}
		switch op.Status {
		case statusFailed:
			continue
		case statusUnknown:
			ret = end
			switch {
			case in.kind == regDelete:
				o.unknown = true
			case op.Resolved > 0:
				o.ok, o.rev = true, op.Resolved
			default:
				continue // never took effect
			}
		default:
			switch in.kind {
			case regGet:
				if len(op.KVs) > 0 {
					o.exists, o.value, o.rev = true, op.KVs[0].Value, op.KVs[0].Mod
				}
			case regPut:
				o.rev = op.Rev
			case regDelete:
				o.deleted = op.Deleted
				if op.Deleted > 0 {
					o.rev = op.Rev
				}
			case regCAS:
				o.ok = op.Succeeded
				if op.Succeeded {
					o.rev = op.Rev
				} else if len(op.KVs) > 0 {
					o.exists, o.value, o.rev = true, op.KVs[0].Value, op.KVs[0].Mod
				}
			}
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: in, Output: o, Call: op.Call, Return: ret})
	}
	return out
}
