package accord

import (
	"os"
	"strings"
	"testing"
)

// TestRootModuleRequirements: the library's module must not require what
// only etcdapi, the daemon or the metrics module need. An embedder's
// `go mod tidy` takes the minimum versions of everything the root module
// requires, linked or not (issue: a service pinning grpc v1.60.0 found it
// raised by importing accord).
func TestRootModuleRequirements(t *testing.T) {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"go.etcd.io/etcd/",
		"github.com/prometheus/",
		"go.uber.org/zap",
		"github.com/grpc-ecosystem/",
		"go.opentelemetry.io/",
	} {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && f[0] == "require" {
				f = f[1:] // the one-line form
			}
			if len(f) > 0 && strings.HasPrefix(f[0], banned) {
				t.Errorf("go.mod requires %s: the root module is the library and must not", f[0])
			}
		}
	}
}
