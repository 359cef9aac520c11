package cluster

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// ClusterKeySize is the length of a cluster key in bytes.
const ClusterKeySize = 32

// The labels that separate what is derived from one cluster key. A new
// use of the key gets a new label; a label is never reused for another
// purpose.
const (
	labelGossip  = "raftsession gossip keyring v1"
	labelCA      = "raftsession node CA v1"
	labelKeyring = "raftsession signing keyring v1"
)

// GenerateClusterKey returns a new random cluster key.
func GenerateClusterKey() ([]byte, error) {
	k := make([]byte, ClusterKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cluster: generate cluster key: %w", err)
	}
	return k, nil
}

// FormatClusterKey encodes a key as ParseClusterKey reads it (standard
// base64, as `head -c 32 /dev/urandom | base64` prints).
func FormatClusterKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// ParseClusterKey decodes a cluster key from standard or URL-safe base64,
// padded or not, surrounded by white space or not. It must decode to
// exactly ClusterKeySize bytes.
func ParseClusterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: cluster key is empty", ErrConfig)
	}
	var k []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: cluster key is not base64 (make one with: head -c 32 /dev/urandom | base64)", ErrConfig)
	}
	if len(k) != ClusterKeySize {
		return nil, fmt.Errorf("%w: cluster key decodes to %d bytes, want %d", ErrConfig, len(k), ClusterKeySize)
	}
	return k, nil
}

// deriveKey derives n bytes for one purpose (label) from a cluster key.
func deriveKey(clusterKey []byte, label string, n int) []byte {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, label, n)
	if err != nil {
		// Only an n beyond 255 hash lengths fails; every caller asks for
		// a constant 32 bytes.
		panic("cluster: hkdf: " + err.Error())
	}
	return k
}

// keyID is a short public fingerprint of a cluster key, for logs and for
// telling which key encrypted something. It reveals nothing usable.
func keyID(clusterKey []byte) string {
	h := sha256.Sum256(append([]byte("raftsession key id v1\x00"), clusterKey...))
	return fmt.Sprintf("%x", h[:4])
}

// caValidity is the fixed validity window of the derived CA. The CA
// certificate is a pure function of the cluster key, so every node builds
// the same certificate without talking to the others.
var (
	caNotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC)
)

// derivedCA is the certificate authority of one cluster key: an Ed25519
// key whose seed is derived from the cluster key, and its self-signed
// certificate.
type derivedCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func newDerivedCA(clusterKey []byte) (*derivedCA, error) {
	key := ed25519.NewKeyFromSeed(deriveKey(clusterKey, labelCA, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	skid := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "raftsession cluster CA " + keyID(clusterKey)},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid[:20],
	}
	// Ed25519 signatures are deterministic: no randomness is read.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("cluster: derive cluster CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster: derive cluster CA: %w", err)
	}
	return &derivedCA{cert: cert, key: key}, nil
}

// issue makes a certificate for nodeID (its Common Name) with a fresh
// key, valid from an hour ago (clock skew) for ten years; a node issues a
// new one at every start.
func (ca *derivedCA) issue(nodeID string, now time.Time) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// keyTLS builds the raft port's mutual TLS from cluster keys: this node's
// certificate comes from the CA of the first key; peers are accepted with
// a certificate from the CA of any of them.
func keyTLS(nodeID string, keys [][]byte, now time.Time) (*TLSConfig, error) {
	if len(keys) == 0 {
		return nil, errors.New("cluster: no cluster key")
	}
	pool := x509.NewCertPool()
	var cert tls.Certificate
	for i, k := range keys {
		ca, err := newDerivedCA(k)
		if err != nil {
			return nil, err
		}
		pool.AddCert(ca.cert)
		if i == 0 {
			if cert, err = ca.issue(nodeID, now); err != nil {
				return nil, err
			}
		}
	}
	return &TLSConfig{Certificate: cert, CA: pool}, nil
}

// gossipKeyring derives memberlist's keys: the first encrypts, all
// decrypt.
func gossipKeyring(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = deriveKey(k, labelGossip, 32)
	}
	return out
}
