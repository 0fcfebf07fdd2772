package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	for _, sync := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		for _, content := range []string{"first", "second, longer", "3"} {
			if err := WriteFileAtomic(path, []byte(content), sync); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != content {
				t.Fatalf("sync=%v: read %q, %v; want %q", sync, b, err, content)
			}
		}
		if es, err := os.ReadDir(dir); err != nil || len(es) != 1 {
			t.Fatalf("sync=%v: directory holds %v (%v), want only f", sync, es, err)
		}
	}
}

// TestWriteFileAtomicFailure: a write that cannot complete leaves neither
// a changed file nor a temporary one.
func TestWriteFileAtomicFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFileAtomic(path, []byte("kept"), true); err != nil {
		t.Fatal(err)
	}
	// The rename fails: the target is now a non-empty directory.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new"), true); err == nil {
		t.Fatal("WriteFileAtomic over a non-empty directory succeeded")
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
