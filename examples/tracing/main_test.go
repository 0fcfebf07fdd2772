package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
		// clientv3's resolver and grpc's internal goroutines can take a
		// moment after Close; these are known to exit.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// span is the part of stdouttrace's JSON the test reads.
type span struct {
	Name        string
	SpanKind    trace.SpanKind
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s span) attr(key string) (any, bool) {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.Value, true
		}
	}
	return nil, false
}

// One run exports the parent span and, for the Put, a client span and a
// server span in the same trace, the server's child of the client's and
// tagged by the interceptor with the member that served it.
func TestRunExportsSpans(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, t.TempDir()); err != nil {
		t.Fatalf("run: %v", err)
	}
	var spans []span
	dec := json.NewDecoder(&out)
	for {
		var s span
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding the exported spans: %v", err)
		}
		spans = append(spans, s)
	}
	find := func(name string, kind trace.SpanKind) span {
		t.Helper()
		for _, s := range spans {
			if s.Name == name && s.SpanKind == kind {
				return s
			}
		}
		t.Fatalf("no %v span %q among %d spans", kind, name, len(spans))
		return span{}
	}
	parent := find("update-config", trace.SpanKindInternal)
	if rev, ok := parent.attr("accord.revision"); !ok || rev != float64(2) {
		t.Errorf("parent span's accord.revision: %v (%v), want 2", rev, ok)
	}
	for _, method := range []string{"etcdserverpb.KV/Put", "etcdserverpb.KV/Range"} {
		client := find(method, trace.SpanKindClient)
		server := find(method, trace.SpanKindServer)
		if client.Parent.SpanID != parent.SpanContext.SpanID {
			t.Errorf("%s: client span's parent %s, want the update-config span %s", method, client.Parent.SpanID, parent.SpanContext.SpanID)
		}
		if server.SpanContext.TraceID != parent.SpanContext.TraceID || server.Parent.SpanID != client.SpanContext.SpanID {
			t.Errorf("%s: server span in trace %s under %s; want trace %s under the client span %s",
				method, server.SpanContext.TraceID, server.Parent.SpanID, parent.SpanContext.TraceID, client.SpanContext.SpanID)
		}
		if m, ok := server.attr("accord.member"); !ok || m == "" {
			t.Errorf("%s: server span not tagged with the member: %+v", method, server.Attributes)
		}
	}
}
