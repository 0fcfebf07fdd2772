package chaos

import (
	"github.com/anishathalye/porcupine"

	"github.com/accordkv/accord/internal/regmodel"
)

// The register model (internal/regmodel, shared with the root package's
// linearizability test): every key is an independent register (the history
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
		in := regmodel.Input{Key: op.Key, Value: op.Value, ExpRev: op.ExpRev, ExpValue: op.ExpValue}
		var o regmodel.Output
		ret := op.Return
		switch op.Kind {
		case opGet, opFinalGet:
			in.Kind = regmodel.Get
		case opPut:
			in.Kind = regmodel.Put
		case opDelete:
			in.Kind = regmodel.Delete
		case opCAS:
			in.Kind = regmodel.CAS
		default:
			continue
		}
		switch op.Status {
		case statusFailed:
			continue
		case statusUnknown:
			ret = end
			switch {
			case in.Kind == regmodel.Delete:
				o.Unknown = true
			case op.Resolved > 0:
				o.OK, o.Rev = true, op.Resolved
			default:
				continue // never took effect
			}
		default:
			switch in.Kind {
			case regmodel.Get:
				if len(op.KVs) > 0 {
					o.Exists, o.Value, o.Rev = true, op.KVs[0].Value, op.KVs[0].Mod
				}
			case regmodel.Put:
				o.Rev = op.Rev
			case regmodel.Delete:
				o.Deleted = op.Deleted
				if op.Deleted > 0 {
					o.Rev = op.Rev
				}
			case regmodel.CAS:
				o.OK = op.Succeeded
				if op.Succeeded {
					o.Rev = op.Rev
				} else if len(op.KVs) > 0 {
					o.Exists, o.Value, o.Rev = true, op.KVs[0].Value, op.KVs[0].Mod
				}
			}
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: in, Output: o, Call: op.Call, Return: ret})
	}
	return out
}
