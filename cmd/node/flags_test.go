package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/cluster"
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
		c.SnapshotThreshold != 8192 || c.TrailingLogs != 10240 || c.ExpireInterval != 30*time.Second ||
		c.GroupCommitWait != 2*time.Millisecond {
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
		{"group-commit-wait negative", []string{"-group-commit-wait", "-1ms"}, nil, "-group-commit-wait"},
		{"group-commit-wait unit", []string{"-group-commit-wait", "2"}, nil, "-group-commit-wait"},
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

func TestParseFlagsSecurityDefaults(t *testing.T) {
	m := NewMain()
	if err := m.ParseFlags(nil, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.HTTPLimits != DefaultHTTPLimits() {
		t.Errorf("HTTP limits: got %+v, want %+v", c.HTTPLimits, DefaultHTTPLimits())
	}
	if want := (HTTPLimits{5 * time.Second, 30 * time.Second, 30 * time.Second, 2 * time.Minute, 64 << 10, 1 << 20}); c.HTTPLimits != want {
		t.Errorf("HTTP limits: got %+v, want %+v", c.HTTPLimits, want)
	}
	if c.ClusterKey != nil || c.AcceptClusterKeys != nil || c.Insecure || c.AdminToken != nil || c.AdminAllowedHosts != nil ||
		c.MaxSessions != 0 || c.MaxBytes != 0 || c.CookieName != "sid" || c.CookieSecure || c.TrustProxy || c.Warnings != nil {
		t.Errorf("security defaults: got %+v", c)
	}
}

// testKeys are cluster keys in the forms people paste: standard base64
// as `head -c 32 /dev/urandom | base64` prints, and URL-safe unpadded.
var testKeys = []struct {
	text string
	raw  []byte
}{
	{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f")},
	{"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8", bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32]},
}

func TestParseFlagsGroupCommitWait(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration // in cluster.Config
	}{
		{nil, 2 * time.Millisecond},
		{[]string{"-group-commit-wait", "500us"}, 500 * time.Microsecond},
		{[]string{"-group-commit-wait", "0"}, -1}, // off
	} {
		m := NewMain()
		if err := m.ParseFlags(tc.args, envOf(nil)); err != nil {
			t.Fatal(err)
		}
		cfg, err := m.clusterConfig(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.GroupCommitWait != tc.want {
			t.Errorf("%q: cluster.Config.GroupCommitWait %v, want %v", tc.args, cfg.GroupCommitWait, tc.want)
		}
	}
}

func TestParseFlagsClusterKey(t *testing.T) {
	two := testKeys[0].text + ", " + testKeys[1].text
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"-cluster-key", two}, nil},
		{"env", nil, map[string]string{"RAFTSESSION_CLUSTER_KEY": two}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMain()
			if err := m.ParseFlags(tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			c := m.Config
			if !bytes.Equal(c.ClusterKey, testKeys[0].raw) || len(c.AcceptClusterKeys) != 1 || !bytes.Equal(c.AcceptClusterKeys[0], testKeys[1].raw) {
				t.Fatalf("got key %x, accepted %x; want the first used and the second accepted", []byte(c.ClusterKey), c.AcceptClusterKeys)
			}
			cfg, err := m.clusterConfig(slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cfg.ClusterKey, testKeys[0].raw) || len(cfg.AcceptClusterKeys) != 1 || !bytes.Equal(cfg.AcceptClusterKeys[0], testKeys[1].raw) {
				t.Fatal("cluster.Config did not get the keys")
			}
		})
	}
}

func TestParseFlagsClusterKeyFile(t *testing.T) {
	dir := t.TempDir()
	content := "# rolling change: new key first\n\n  " + testKeys[1].text + "  \n" + testKeys[0].text + " # the old one\n"
	private := filepath.Join(dir, "private")
	shared := filepath.Join(dir, "shared")
	for path, mode := range map[string]os.FileMode{private: 0o600, shared: 0o644} {
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"-cluster-key-file", private}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if !bytes.Equal(c.ClusterKey, testKeys[1].raw) || len(c.AcceptClusterKeys) != 1 || !bytes.Equal(c.AcceptClusterKeys[0], testKeys[0].raw) {
		t.Fatal("key file: want the first key used and the second accepted")
	}
	if len(c.Warnings) != 0 {
		t.Errorf("mode 0600: got warnings %q", c.Warnings)
	}
	if err := m.ParseFlags(nil, envOf(map[string]string{"RAFTSESSION_CLUSTER_KEY_FILE": shared})); err != nil {
		t.Fatal(err)
	}
	if w := m.Config.Warnings; len(w) != 1 || !strings.Contains(w[0], "0644") || !strings.Contains(w[0], "chmod 600") {
		t.Errorf("mode 0644: got warnings %q, want one naming the mode", w)
	}
	if !bytes.Equal(m.Config.ClusterKey, testKeys[1].raw) {
		t.Error("a loose mode is a warning, not a reason to drop the key")
	}
}

func TestParseFlagsSecurityErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty", "# nothing here\n\n")
	badLine := write("bad", testKeys[0].text+"\nnot-a-key-but-secret-looking\n")
	short := "c2hvcnQta2V5" // "short-key"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"key and key file", []string{"-cluster-key", testKeys[0].text, "-cluster-key-file", empty}, nil, "give one, not both"},
		{"env key and key file", []string{"-cluster-key-file", empty}, map[string]string{"RAFTSESSION_CLUSTER_KEY": testKeys[0].text}, "give one, not both"},
		{"key not base64", []string{"-cluster-key", "%%%%"}, nil, "-cluster-key: cluster key is not base64"},
		{"key too short", []string{"-cluster-key", short}, nil, "-cluster-key: cluster key decodes to 9 bytes, want 32"},
		{"second key bad", []string{"-cluster-key", testKeys[0].text + "," + short}, nil, "-cluster-key: key 2 of 2"},
		{"empty key in list", []string{"-cluster-key", testKeys[0].text + ","}, nil, "key 2 of 2: cluster key is empty"},
		{"key file missing", []string{"-cluster-key-file", filepath.Join(dir, "nope")}, nil, "no such file"},
		{"key file empty", []string{"-cluster-key-file", empty}, nil, "holds no key"},
		{"key file bad line", []string{"-cluster-key-file", badLine}, nil, "key 2 of 2: cluster key decodes to 21 bytes"},
		{"insecure with key", []string{"-insecure-cluster", "-cluster-key", testKeys[0].text}, nil, "drop -insecure-cluster"},
		{"insecure not bool", []string{"-insecure-cluster=perhaps"}, nil, "-insecure-cluster"},
		{"admin token short", []string{"-admin-token", "short"}, nil, "-admin-token: is 5 characters, need at least 16"},
		{"admin token space", []string{"-admin-token", "long enough but has spaces"}, nil, "printable ASCII without spaces"},
		{"admin host with port", []string{"-admin-allowed-hosts", "ops.example,node1:8081"}, nil, `-admin-allowed-hosts "node1:8081"`},
		{"read timeout", []string{"-http-read-timeout", "0s"}, nil, "-http-read-timeout"},
		{"read header timeout", []string{"-http-read-header-timeout", "soon"}, nil, "-http-read-header-timeout"},
		{"write timeout env", nil, map[string]string{"RAFTSESSION_HTTP_WRITE_TIMEOUT": "-1s"}, "-http-write-timeout"},
		{"idle timeout", []string{"-http-idle-timeout", "10"}, nil, "-http-idle-timeout"},
		{"max header bytes", []string{"-http-max-header-bytes", "10"}, nil, "-http-max-header-bytes"},
		{"max body bytes", []string{"-http-max-body-bytes", "0"}, nil, "-http-max-body-bytes"},
		{"max sessions", []string{"-max-sessions", "-1"}, nil, "-max-sessions \"-1\": want 0 (no cap) or a positive whole number"},
		{"max bytes", []string{"-max-bytes", "1GB"}, nil, "-max-bytes"},
		{"cookie name", []string{"-cookie-name", "a b"}, nil, `-cookie-name "a b"`},
		{"__Host- without Secure", []string{"-cookie-name", "__Host-sid"}, nil, "add -cookie-secure"},
		{"__Secure- without Secure", []string{"-cookie-name", "__secure-sid", "-trust-proxy"}, nil, "add -cookie-secure"},
		{"cookie-secure", []string{"-cookie-secure=sometimes"}, nil, "-cookie-secure"},
		{"trust-proxy", []string{"-trust-proxy=0.5"}, nil, "-trust-proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewMain().ParseFlags(tc.args, envOf(tc.env))
			if err == nil {
				t.Fatal("got no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q, want one line containing %q", msg, tc.want)
			}
			if strings.Contains(msg, "secret-looking") || strings.Contains(msg, short) {
				t.Fatalf("the error repeats key material: %q", msg)
			}
		})
	}
}

func TestParseFlagsCookies(t *testing.T) {
	m := NewMain()
	env := envOf(map[string]string{"RAFTSESSION_TRUST_PROXY": "true", "RAFTSESSION_MAX_SESSIONS": "1000", "RAFTSESSION_MAX_BYTES": "1048576"})
	if err := m.ParseFlags([]string{"-cookie-name", "__Host-sid", "-cookie-secure"}, env); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.CookieName != "__Host-sid" || !c.CookieSecure || !c.TrustProxy || c.MaxSessions != 1000 || c.MaxBytes != 1<<20 {
		t.Fatalf("got %+v", c)
	}
}

func TestGenClusterKey(t *testing.T) {
	var out, errOut bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &errOut
	if err := m.ParseFlags([]string{"-gen-cluster-key"}, envOf(nil)); !errors.Is(err, ErrDone) {
		t.Fatalf("got %v, want ErrDone", err)
	}
	k, err := cluster.ParseClusterKey(out.String())
	if err != nil || len(k) != cluster.ClusterKeySize || !strings.HasSuffix(out.String(), "\n") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("printed %q (%v); want one base64 key line", out.String(), err)
	}
	// A variable cannot turn a node into a key printer.
	m = NewMain()
	if err := m.ParseFlags(nil, envOf(map[string]string{"RAFTSESSION_GEN_CLUSTER_KEY": "true"})); err != nil {
		t.Fatalf("RAFTSESSION_GEN_CLUSTER_KEY: got %v, want it ignored", err)
	}
}

// TestSecretsNeverPrinted: printing the Config, as a debugging line
// might, shows no key material in any format.
func TestSecretsNeverPrinted(t *testing.T) {
	m := NewMain()
	if err := m.ParseFlags([]string{"-cluster-key", testKeys[0].text + "," + testKeys[1].text,
		"-admin-token", "admin-token-0123456789"}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "key", m.Config.ClusterKey, "token", m.Config.AdminToken)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out := fmt.Sprintf(format, m.Config) + logged.String()
		for _, leak := range []string{testKeys[0].text, testKeys[1].text, "admin-token-0123456789",
			fmt.Sprintf("%x", testKeys[0].raw), string(testKeys[0].raw[1:]), fmt.Sprint(testKeys[0].raw[:8])[1:10]} {
			if strings.Contains(out, leak) {
				t.Fatalf("%s shows key material %q:\n%s", format, leak, out)
			}
		}
	}
}
