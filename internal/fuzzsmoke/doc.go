// Package fuzzsmoke has no code: its test gives every fuzz target of the
// module a short coverage-guided run inside a plain `go test ./...`.
//
// # Why
//
// CI runs only `go vet ./...` and `go test -race ./...`. Without -fuzz, go
// test runs a FuzzXxx function on its seed corpus alone, as a unit test:
// nothing mutates the inputs, so the fuzzers would never search in CI. And
// `go test -fuzz` takes one target of one package per run, so no single
// flag on the CI command could change that.
//
// TestFuzzShort finds every `func FuzzXxx(f *testing.F)` in the module's
// *_test.go files (go/parser; the tools/ module and any directory with its
// own go.mod are skipped), and runs, one after another, for each:
//
//	go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime 4s -parallel 1 ./pkg
//
// A new fuzz target is covered as soon as it exists, with no list to keep
// up to date, except in the packages slowFuzzBuild leaves out (the root
// package and etcdapi: instrumenting their dependencies takes minutes on a
// cold CI build cache); the decoders of internal/wire, which every peer
// message and log entry goes through, are fuzzed. When a run fails, go has written the failing input to that
// package's testdata/fuzz/FuzzXxx directory: commit it with the fix, and
// every later `go test` replays it as a regression seed.
//
// # Cost
//
// A few seconds of fuzzing per target, one target at a time with one fuzz
// worker, so that it fits a 2-core CI machine beside the other packages'
// tests: about a minute in all (56-83 s measured on a loaded 2-core
// machine) once the builds are cached. -fuzz instruments every dependency,
// so each fuzzed package is first built that way (go test -c -fuzz) under
// a timeout of its own: minutes on a cold build cache, not counted against
// a target's fuzzing timeout.
//
// The child `go test` runs without -race even when GOFLAGS asks for it:
// the race detector makes each execution several times slower, and the
// same targets already run under -race on their seed corpus (and on any
// input a fuzz run saved) as ordinary tests. GOFLAGS' build flags (-mod,
// -tags, -trimpath) are kept.
//
// Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a
// failure ("context deadline exceeded", go.dev/issue/75804, fixed in Go
// 1.27). A run that fails that way and only that way, at -fuzztime and
// without writing an input, is logged, not failed.
//
// The go test result cache keys the result on the module's files, which
// the test stats while it looks for targets, so a change to any source
// file fuzzes again; use -count=1 to fuzz again without one.
package fuzzsmoke
