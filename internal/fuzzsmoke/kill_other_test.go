//go:build !unix

package fuzzsmoke

import "os/exec"

// killTree leaves cmd's cancel at killing the go command: without process
// groups its children end on their own, at -fuzztime or at the child's
// -timeout.
func killTree(cmd *exec.Cmd) {}
