package logbridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad record %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHCLogLevelsAndArgs(t *testing.T) {
	var buf bytes.Buffer
	l := HCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Debug("hidden", "a", 1)
	l.Info("entering leader state", "term", 3, "error", errors.New("boom"))
	l.Named("snap").With("id", "x").Warn("odd", "dangling")
	recs := records(t, &buf)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2 (debug must be filtered): %v", len(recs), recs)
	}
	if recs[0]["msg"] != "entering leader state" || recs[0]["level"] != "INFO" || recs[0]["component"] != "raft" ||
		recs[0]["term"] != float64(3) || recs[0]["err"] != "boom" {
		t.Errorf("record 0 = %v", recs[0])
	}
	if recs[1]["level"] != "WARN" || recs[1]["component"] != "raft.snap" || recs[1]["id"] != "x" || recs[1]["EXTRA_VALUE_AT_END"] != "dangling" {
		t.Errorf("record 1 = %v", recs[1])
	}
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("level queries wrong: debug=%v info=%v level=%v", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
}

func TestStandardWriterParsesLevelPrefix(t *testing.T) {
	var buf bytes.Buffer
	l := HCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "memberlist")
	std := l.StandardLogger(nil)
	std.Print("[WARN] memberlist: Was able to connect to node-2 over TCP but UDP probes failed")
	std.Print("[DEBUG] memberlist: Stream connection")
	std.Print("no prefix at all")
	recs := records(t, &buf)
	want := []struct{ level, msg string }{
		{"WARN", "memberlist: Was able to connect to node-2 over TCP but UDP probes failed"},
		{"DEBUG", "memberlist: Stream connection"},
		{"INFO", "no prefix at all"},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		if recs[i]["level"] != w.level || recs[i]["msg"] != w.msg {
			t.Errorf("record %d = %v, want level %s msg %q", i, recs[i], w.level, w.msg)
		}
	}
}
