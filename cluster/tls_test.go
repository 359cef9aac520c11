package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(tb testing.TB, name string) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate whose Common Name is the node ID (node-to-node
// requests are authorized by it) and whose DNS name is name.
func (ca *testCA) issue(tb testing.TB, nodeID, name string) *TLSConfig {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: nodeID}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return &TLSConfig{Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CA: ca.pool, AllowedNames: []string{"node-*.sessions.internal"}}
}

func TestMutualTLS(t *testing.T) {
	slow(t)
	ca := newTestCA(t, "raftsession test CA")
	i := 0
	nodes := startCluster(t, 3, func(c *Config) {
		i++
		c.TLS = ca.issue(t, c.NodeID, "node-"+string(rune('0'+i))+".sessions.internal")
	})
	id := session.NewID()
	r := create(t, followersOf(nodes)[0].Store(), id, "over", "tls")
	for _, n := range nodes {
		if _, err := n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index}); err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
	}

	for _, tc := range []struct {
		name string
		tls  *TLSConfig
	}{
		{"certificate from another CA", newTestCA(t, "rogue CA").issue(t, "intruder", "node-9.sessions.internal")},
		{"right CA, name not allowed", ca.issue(t, "intruder", "laptop.example.com")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "intruder", t.TempDir())
			cfg.TLS = tc.tls
			cfg.JoinOnly = true
			cfg.Join = []string{nodes[0].GossipAddr()}
			intruder := mustStart(t, cfg)
			// Its raft port cannot be dialled by the cluster, nor can it dial the cluster.
			leader := leaderOf(nodes)
			if c, err := leader.mux.dial(intruder.RaftAddr(), protoRaft, time.Second); err == nil {
				c.Close()
				t.Fatal("leader completed a TLS handshake with the intruder")
			}
			if c, err := intruder.mux.dial(leader.RaftAddr(), protoForward, time.Second); err == nil {
				// TLS 1.3 client handshakes can finish before the server
				// rejects the client certificate; the server then closes.
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, rerr := c.Read(make([]byte, 1)); rerr == nil {
					t.Fatal("leader accepted the intruder's connection")
				}
				c.Close()
			}
			// Gossip (plaintext here) tells the leader about it, but its
			// raft address cannot prove its ID, so it is never added and
			// never receives a log entry, while the cluster keeps committing.
			waitFor(t, 10*time.Second, "the leader to see the intruder in gossip", func() bool {
				_, ok := leader.memberState("intruder")
				return ok
			})
			create(t, leader.Store(), session.NewID())
			stayFalse(t, 2*time.Second, "the intruder was added to the configuration", func() bool {
				_, ok := suffrage(leader, "intruder")
				return ok
			})
			if got := intruder.raft.LastIndex(); got != 0 {
				t.Fatalf("intruder's raft log reached index %d", got)
			}
		})
	}
}
