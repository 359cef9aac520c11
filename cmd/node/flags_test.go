package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseFlagsDefaults(t *testing.T) {
	m := NewMain()
	if err := m.ParseFlags(nil, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	c := m.Config
	for _, tc := range []struct{ name, got, want string }{
		{"id", c.ID, host},
		{"data", c.DataDir, filepath.Join("raftsession-data", host)},
		{"http", c.HTTPAddr, "127.0.0.1:8080"},
		{"admin", c.AdminAddr, "127.0.0.1:8081"},
		{"raft", c.RaftAddr, "127.0.0.1:7000"},
		{"raft-advertise", c.RaftAdvertise, ""},
		{"gossip", c.GossipAddr, "127.0.0.1:7946"},
		{"cluster-name", c.ClusterName, "raftsession"},
		{"consistency", c.Consistency.String(), "ryw"},
		{"log-store", c.LogStore, ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if c.BootstrapExpect != 1 || c.Voters != 3 || c.Secret != nil || c.GossipKey != nil || c.LeaveOnTerminate ||
		c.Join != nil || c.LogLevel != slog.LevelInfo || c.ShutdownTimeout != 10*time.Second ||
		c.SnapshotThreshold != 8192 || c.TrailingLogs != 10240 || c.ExpireInterval != 30*time.Second {
		t.Errorf("defaults: got %+v", c)
	}
}

func TestParseFlagsEnvAndPrecedence(t *testing.T) {
	env := envOf(map[string]string{
		"RAFTSESSION_ID":                 "from-env",
		"RAFTSESSION_HTTP":               "127.0.0.1:9000",
		"RAFTSESSION_RAFT_ADVERTISE":     "10.0.0.1:7000",
		"RAFTSESSION_JOIN":               "10.0.0.2:7946, 10.0.0.3:7946",
		"RAFTSESSION_LEAVE_ON_TERMINATE": "true",
		"RAFTSESSION_SECRET":             strings.Repeat("s", 32),
		"RAFTSESSION_GOSSIP_KEY":         "MDEyMzQ1Njc4OWFiY2RlZg==",
		"RAFTSESSION_CONSISTENCY":        "linearizable",
		"RAFTSESSION_SNAPSHOT_THRESHOLD": "100",
		"RAFTSESSION_LOG_LEVEL":          "debug",
	})
	m := NewMain()
	if err := m.ParseFlags([]string{"-id", "from-flag", "-consistency", "local"}, env); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.ID != "from-flag" {
		t.Errorf("id: got %q, want the flag to win over the env", c.ID)
	}
	if c.DataDir != filepath.Join("raftsession-data", "from-flag") {
		t.Errorf("data: got %q", c.DataDir)
	}
	if c.Consistency != session.Local {
		t.Errorf("consistency: got %v, want local (flag wins)", c.Consistency)
	}
	if c.HTTPAddr != "127.0.0.1:9000" || c.RaftAdvertise != "10.0.0.1:7000" || !c.LeaveOnTerminate ||
		len(c.Secret) != 32 || len(c.GossipKey) != 16 || c.SnapshotThreshold != 100 || c.LogLevel != slog.LevelDebug {
		t.Errorf("env values not applied: %+v", c)
	}
	if want := []string{"10.0.0.2:7946", "10.0.0.3:7946"}; strings.Join(c.Join, " ") != strings.Join(want, " ") {
		t.Errorf("join: got %q, want %q", c.Join, want)
	}
	// A switch flag alone means true, and false from the command line
	// overrides true from the environment.
	if err := m.ParseFlags([]string{"-leave-on-terminate=false"}, env); err != nil || m.Config.LeaveOnTerminate {
		t.Errorf("-leave-on-terminate=false over env true: got %v, err %v", m.Config.LeaveOnTerminate, err)
	}
	if err := m.ParseFlags([]string{"-leave-on-terminate"}, envOf(nil)); err != nil || !m.Config.LeaveOnTerminate {
		t.Errorf("-leave-on-terminate alone: got %v, err %v", m.Config.LeaveOnTerminate, err)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the error
	}{
		{"unknown flag", []string{"-nope"}, nil, "flag provided but not defined: -nope"},
		{"stray argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"bad id", []string{"-id", "a/b"}, nil, `-id "a/b"`},
		{"http without port", []string{"-http", "localhost"}, nil, `-http "localhost": want host:port`},
		{"admin bad port", []string{"-admin", "127.0.0.1:99999"}, nil, "-admin"},
		{"raft-advertise port 0", []string{"-raft-advertise", "10.0.0.1:0"}, nil, "-raft-advertise"},
		{"bad join", []string{"-join", "a:1,nope"}, nil, `-join "nope"`},
		{"bootstrap-expect negative", []string{"-bootstrap-expect", "-1"}, nil, "-bootstrap-expect"},
		{"bootstrap-expect text", []string{"-bootstrap-expect", "three"}, nil, "-bootstrap-expect"},
		{"voters zero", []string{"-voters", "0"}, nil, "-voters"},
		{"short secret", []string{"-secret", "short"}, nil, "-secret: is 5 bytes, need at least 32"},
		{"gossip key not base64", []string{"-gossip-key", "%%%"}, nil, "-gossip-key: not valid base64"},
		{"gossip key size", []string{"-gossip-key", "YWJj"}, nil, "-gossip-key: decodes to 3 bytes"},
		{"tls partial", []string{"-tls-cert", "c.pem"}, nil, "give all three or none"},
		{"consistency", []string{"-consistency", "strong"}, nil, `-consistency "strong"`},
		{"leave-on-terminate", []string{"-leave-on-terminate=maybe"}, nil, "-leave-on-terminate"},
		{"snapshot-threshold", []string{"-snapshot-threshold", "0"}, nil, "-snapshot-threshold"},
		{"trailing-logs", []string{"-trailing-logs", "x"}, nil, "-trailing-logs"},
		{"snapshot-interval", []string{"-snapshot-interval", "10"}, nil, "-snapshot-interval"},
		{"expire-interval", []string{"-expire-interval", "-1s"}, nil, "-expire-interval"},
		{"log-level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"log-store", []string{"-log-store", "rocks"}, nil, `-log-store "rocks": want wal or bolt`},
		{"cluster-name", []string{"-cluster-name", ""}, nil, "-cluster-name"},
		{"env value", nil, map[string]string{"RAFTSESSION_VOTERS": "many"}, "-voters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewMain().ParseFlags(tc.args, envOf(tc.env))
			if err == nil {
				t.Fatal("got no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q, want one line containing %q", msg, tc.want)
			}
		})
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	m := NewMain()
	m.Stderr = &out
	if err := m.ParseFlags([]string{"-h"}, envOf(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	var r rawFlags
	newFlagSet(&r).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "-"+f.Name) {
			t.Errorf("-h does not document -%s", f.Name)
		}
	})
	for _, want := range []string{"RAFTSESSION_", "/cluster/status", "/metrics", "/readyz", "SIGTERM"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h does not mention %s", want)
		}
	}
}
