package regmodel

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
}

func TestModel(t *testing.T) {
	put := func(v string) Input { return Input{Kind: Put, Key: "k", Value: v} }
	get := Input{Kind: Get, Key: "k"}
	cases := []struct {
		name    string
		history []porcupine.Operation
		linear  bool
	}{
		{"read your write", []porcupine.Operation{
			op(0, 0, 1, put("a"), Output{Rev: 2}),
			op(1, 2, 3, get, Output{Exists: true, Value: "a", Rev: 2}),
		}, true},
		{"stale read after a newer write returned", []porcupine.Operation{
			op(0, 0, 1, put("a"), Output{Rev: 2}),
			op(0, 2, 3, put("b"), Output{Rev: 3}),
			op(1, 4, 5, get, Output{Exists: true, Value: "a", Rev: 2}),
		}, false},
		{"revision going backwards", []porcupine.Operation{
			op(0, 0, 1, put("a"), Output{Rev: 5}),
			op(0, 2, 3, put("b"), Output{Rev: 4}),
		}, false},
		{"unknown put seen later, its revision learnt", []porcupine.Operation{
			op(0, 0, 10, put("a"), Output{Unknown: true}),
			op(1, 2, 3, get, Output{Exists: true, Value: "a", Rev: 7}),
			op(1, 4, 5, Input{Kind: CAS, Key: "k", Value: "b", ExpRev: 7}, Output{OK: true, Rev: 8}),
		}, true},
		{"cas that held but reports it failed", []porcupine.Operation{
			op(0, 0, 1, put("a"), Output{Rev: 2}),
			op(1, 2, 3, Input{Kind: CAS, Key: "k", Value: "b", ExpRev: 2}, Output{Exists: true, Value: "a", Rev: 2}),
		}, false},
		{"delete of a missing key", []porcupine.Operation{
			op(0, 0, 1, Input{Kind: Delete, Key: "k"}, Output{}),
			op(1, 2, 3, get, Output{}),
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(Model, tc.history); got != tc.linear {
				t.Errorf("linearizable: %v, want %v", got, tc.linear)
			}
		})
	}
}
