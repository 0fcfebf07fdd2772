// Package logbridge adapts the standard library's log/slog to the logger
// interfaces of accord's dependencies (hclog for raft), so that accord's
// public API speaks only slog.
package logbridge

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger that writes to l. raft's Info level maps to
// slog's Info, Trace to Debug-4.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return &hcl{l: l, name: name}
}

type hcl struct {
	l       *slog.Logger
	name    string
	implied []any
}

const levelTrace = slog.LevelDebug - 4

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hcl) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, len(args)+len(h.implied)+2)
	if h.name != "" {
		attrs = append(attrs, "component", h.name)
	}
	attrs = append(attrs, h.implied...)
	attrs = append(attrs, fixArgs(args)...)
	h.l.Log(ctx, lv, msg, attrs...)
}

// fixArgs turns hclog's loose key/value list into one slog accepts: an odd
// trailing value gets a key, and errors become strings.
func fixArgs(args []any) []any {
	if len(args)%2 == 1 {
		args = append(args[:len(args):len(args)], nil)
		args[len(args)-1], args[len(args)-2] = args[len(args)-2], "EXTRA_VALUE_AT_END"
	}
	out := make([]any, len(args))
	for i := 0; i < len(args); i += 2 {
		k, _ := args[i].(string)
		if k == "" {
			k = "arg"
		}
		if k == "error" {
			k = "err"
		}
		out[i] = k
		if err, ok := args[i+1].(error); ok {
			out[i+1] = err.Error()
		} else if f, ok := args[i+1].(hclog.Format); ok && len(f) > 0 {
			// hclog.Fmt("%0.2f%%", x): raft's snapshot progress.
			format, _ := f[0].(string)
			out[i+1] = fmt.Sprintf(format, f[1:]...)
		} else {
			out[i+1] = args[i+1]
		}
	}
	return out
}

func (h *hcl) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcl) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcl) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcl) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcl) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcl) enabled(l hclog.Level) bool { return h.l.Enabled(context.Background(), toSlog(l)) }
func (h *hcl) IsTrace() bool              { return h.enabled(hclog.Trace) }
func (h *hcl) IsDebug() bool              { return h.enabled(hclog.Debug) }
func (h *hcl) IsInfo() bool               { return h.enabled(hclog.Info) }
func (h *hcl) IsWarn() bool               { return h.enabled(hclog.Warn) }
func (h *hcl) IsError() bool              { return h.enabled(hclog.Error) }

func (h *hcl) ImpliedArgs() []any { return h.implied }

func (h *hcl) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), fixArgs(args)...)
	return &c
}

func (h *hcl) Name() string { return h.name }

func (h *hcl) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hcl) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is a no-op: the slog handler decides what is enabled.
func (h *hcl) SetLevel(hclog.Level) {}

func (h *hcl) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hcl) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcl) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return writer{h} }

// writer turns lines from a *log.Logger into log records, reading the level
// from a "[LEVEL]" prefix as memberlist and raft's standard loggers write it.
type writer struct{ h *hcl }

func (w writer) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := hclog.Info
	for _, c := range []struct {
		prefix string
		level  hclog.Level
	}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
		if i := strings.Index(msg, c.prefix); i >= 0 {
			level = c.level
			msg = strings.TrimSpace(msg[i+len(c.prefix):])
			break
		}
	}
	w.h.Log(level, msg)
	return len(p), nil
}
