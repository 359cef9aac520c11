package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/raftsession/raftsession/cluster"
)

// Secret is key material from a flag. It prints as "[redacted]" with
// every fmt verb and in slog, so that logging a Config cannot leak it.
type Secret []byte

// Format implements fmt.Formatter.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// maxKeyFileBytes bounds what -cluster-key-file reads: a key file holds a
// few lines, and a path such as /dev/zero must not be read for ever.
const maxKeyFileBytes = 64 << 10

// minAdminToken is the shortest -admin-token accepted: a token guessed by
// a stranger would open leave and key rotation to them.
const minAdminToken = 16

func (r *rawFlags) validateClusterKeys(c *Config) error {
	var err error
	if c.Insecure, err = parseBool("insecure-cluster", r.insecure); err != nil {
		return err
	}
	var keys []Secret
	switch {
	case r.clusterKey != "" && r.clusterKeyFile != "":
		return errors.New("-cluster-key (or RAFTSESSION_CLUSTER_KEY) and -cluster-key-file: give one, not both")
	case r.clusterKey != "":
		keys, err = parseClusterKeys("-cluster-key", strings.Split(r.clusterKey, ","))
	case r.clusterKeyFile != "":
		var warning string
		keys, warning, err = readClusterKeyFile(r.clusterKeyFile)
		if warning != "" {
			c.Warnings = append(c.Warnings, warning)
		}
	}
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	if c.Insecure {
		return errors.New("-insecure-cluster with a cluster key: the key already secures the cluster; drop -insecure-cluster")
	}
	c.ClusterKey, c.AcceptClusterKeys = keys[0], keys[1:]
	return nil
}

// parseClusterKeys decodes keys from their base64 forms. Errors never
// repeat a key: they go to logs and terminals.
func parseClusterKeys(src string, texts []string) ([]Secret, error) {
	keys := make([]Secret, 0, len(texts))
	for i, s := range texts {
		k, err := cluster.ParseClusterKey(s)
		if err != nil {
			which := src
			if len(texts) > 1 {
				which = fmt.Sprintf("%s: key %d of %d", src, i+1, len(texts))
			}
			return nil, fmt.Errorf("%s: %s", which, strings.TrimPrefix(err.Error(), cluster.ErrConfig.Error()+": "))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// readClusterKeyFile reads one key a line, ignoring blank lines and
// everything after a '#'. A file that group or others may read is used,
// with a warning rather than a refusal: Kubernetes secret volumes (0644
// by default) and Docker secrets (0444) are such files, protected by the
// container around them instead.
func readClusterKeyFile(path string) (keys []Secret, warning string, err error) {
	name := "-cluster-key-file " + path
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", name, pathErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", name, pathErr(err))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", name, pathErr(err))
	}
	if len(b) > maxKeyFileBytes {
		return nil, "", fmt.Errorf("%s: larger than %d KiB; want one base64 key a line", name, maxKeyFileBytes>>10)
	}
	var texts []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			texts = append(texts, line)
		}
	}
	if len(texts) == 0 {
		return nil, "", fmt.Errorf("%s: holds no key (make one with: node -gen-cluster-key)", name)
	}
	if keys, err = parseClusterKeys(name, texts); err != nil {
		return nil, "", err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		warning = fmt.Sprintf("%s: group or others may access it (mode %04o); unless a secret mount manages it, chmod 600 it",
			name, perm)
	}
	return keys, warning, nil
}

// pathErr drops the path an *os.PathError repeats.
func pathErr(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

func (r *rawFlags) validateAdmin(c *Config) error {
	if t := r.adminToken; t != "" {
		if len(t) < minAdminToken {
			return fmt.Errorf("-admin-token: is %d characters, need at least %d (for example: openssl rand -base64 32)", len(t), minAdminToken)
		}
		for i := 0; i < len(t); i++ {
			if t[i] <= ' ' || t[i] > '~' {
				return errors.New("-admin-token: use printable ASCII without spaces (for example: openssl rand -base64 32)")
			}
		}
		c.AdminToken = Secret(t)
	}
	for h := range strings.SplitSeq(r.adminHosts, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err == nil || strings.ContainsAny(h, "/ ") {
			return fmt.Errorf("-admin-allowed-hosts %q: want host names without ports, comma-separated", h)
		}
		c.AdminAllowedHosts = append(c.AdminAllowedHosts, h)
	}
	return nil
}

func (r *rawFlags) validateHTTP(c *Config) error {
	l := &c.HTTPLimits
	if err := parseDurations(map[string]durationFlag{
		"http-read-header-timeout": {r.readHeaderTimeout, &l.ReadHeaderTimeout},
		"http-read-timeout":        {r.readTimeout, &l.ReadTimeout},
		"http-write-timeout":       {r.writeTimeout, &l.WriteTimeout},
		"http-idle-timeout":        {r.idleTimeout, &l.IdleTimeout},
	}); err != nil {
		return err
	}
	var err error
	if l.MaxHeaderBytes, err = parseInt("http-max-header-bytes", r.maxHeaderBytes, 1<<10, 16<<20); err != nil {
		return err
	}
	if l.MaxBodyBytes, err = parseInt64("http-max-body-bytes", r.maxBodyBytes, 1, math.MaxInt64); err != nil {
		return err
	}
	return nil
}

func (r *rawFlags) validateSessions(c *Config) error {
	maxSessions, err := parseCap("max-sessions", r.maxSessions)
	if err != nil {
		return err
	}
	c.MaxSessions = int(min(maxSessions, math.MaxInt))
	if c.MaxBytes, err = parseCap("max-bytes", r.maxBytes); err != nil {
		return err
	}
	if c.CookieSecure, err = parseBool("cookie-secure", r.cookieSecure); err != nil {
		return err
	}
	if c.TrustProxy, err = parseBool("trust-proxy", r.trustProxy); err != nil {
		return err
	}
	c.CookieName = r.cookieName
	if err := (&http.Cookie{Name: c.CookieName, Value: "x"}).Valid(); err != nil {
		return fmt.Errorf("-cookie-name %q: not a valid cookie name", c.CookieName)
	}
	// Browsers drop a __Host- or __Secure- cookie that lacks Secure; the
	// node never sets Domain and always Path=/, the other __Host- rules.
	for _, prefix := range []string{"__Host-", "__Secure-"} {
		if len(c.CookieName) >= len(prefix) && strings.EqualFold(c.CookieName[:len(prefix)], prefix) && !c.CookieSecure {
			return fmt.Errorf("-cookie-name %s: a %s cookie must be Secure; add -cookie-secure (and serve over HTTPS)", c.CookieName, prefix)
		}
	}
	return nil
}

// parseCap parses a quota: 0 for none, or a positive number.
func parseCap(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("-%s %q: want 0 (no cap) or a positive whole number", name, v)
	}
	return n, nil
}

func parseInt64(name, v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("-%s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// parseMemoryLimit parses -memory-limit: auto (0), off (-1), or a size in
// bytes with an optional KiB, MiB or GiB suffix.
func parseMemoryLimit(v string) (int64, error) {
	switch v {
	case "auto":
		return 0, nil
	case "off":
		return -1, nil
	}
	num, unit := v, int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			num, unit = n, u
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("-memory-limit %q: want auto, off or a size such as 1536MiB or 2GiB", v)
	}
	return n * unit, nil
}
