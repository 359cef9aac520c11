package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's and raft-autopilot's hclog output
// into the node's slog.Logger, so an application sees one log stream.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l.With("component", name), name: name}
}

func hcLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	a.l.Log(context.Background(), hcLevel(level), msg, hcArgs(args)...)
}

// hcArgs renders hclog's deferred-format values (hclog.Fmt, which raft
// uses for configurations, and the number formats) as hclog itself would,
// instead of printing their raw format verbs.
func hcArgs(args []any) []any {
	for i, v := range args {
		switch f := v.(type) {
		case hclog.Format:
			if len(f) > 0 {
				if format, ok := f[0].(string); ok {
					args[i] = fmt.Sprintf(format, f[1:]...)
				}
			}
		case hclog.Hex:
			args[i] = fmt.Sprintf("0x%x", int(f))
		case hclog.Octal:
			args[i] = fmt.Sprintf("0%o", int(f))
		case hclog.Binary:
			args[i] = fmt.Sprintf("0b%b", int(f))
		}
	}
	return args
}
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) enabled(l slog.Level) bool {
	return a.l.Enabled(context.Background(), l)
}
func (a *hclogAdapter) IsTrace() bool         { return a.enabled(slog.LevelDebug - 4) }
func (a *hclogAdapter) IsDebug() bool         { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool          { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool          { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool         { return a.enabled(slog.LevelError) }
func (a *hclogAdapter) ImpliedArgs() []any    { return a.args }
func (a *hclogAdapter) Name() string          { return a.name }
func (a *hclogAdapter) SetLevel(hclog.Level)  {}
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Info }
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l.With(args...), name: a.name, args: append(append([]any(nil), a.args...), args...)}
}
func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return &hclogAdapter{l: a.l.With("component", name), name: name, args: a.args}
}
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l.With("component", name), name: name, args: a.args}
}
func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdLogWriter{l: a.l}
}

// stdLogWriter turns "[LEVEL] text" lines from a standard *log.Logger (as
// memberlist writes them) into slog records at that level.
type stdLogWriter struct{ l *slog.Logger }

func (w *stdLogWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		s := strings.TrimSpace(string(line))
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{
			"[TRACE]": slog.LevelDebug - 4, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
			"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
		} {
			if rest, ok := strings.CutPrefix(s, prefix); ok {
				s, level = strings.TrimSpace(rest), l
				break
			}
		}
		if s != "" {
			w.l.Log(context.Background(), level, s)
		}
	}
	return len(p), nil
}
