package main

import (
	"context"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/fsm"
)

// Cookie signing keys. Without -secret the session middleware follows the
// cluster's replicated keyring (httpmw over cluster.Store, which the first
// leader fills), and POST /cluster/rotate-key is
// cluster.Node.RotateSigningKey; the rules live in package cluster. This
// file only adapts them to the admin API.

// keyring is the admin API's handle on the replicated keys; nil with
// -secret.
type keyring struct {
	node  *cluster.Node
	grace time.Duration // how long a rotation takes to start signing
}

func newKeyring(node *cluster.Node) *keyring {
	return &keyring{node: node, grace: cluster.SigningKeyGrace}
}

// rotateResult is the answer of POST /cluster/rotate-key.
type rotateResult struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
	Retired []string `json:"retired"`
}

var errRotateTooSoon = cluster.ErrRotateTooSoon

func (k *keyring) rotate(ctx context.Context) (rotateResult, error) {
	r, err := k.node.RotateSigningKey(ctx)
	return rotateResult(r), err
}

// signing returns the ID of the key that signs cookies now, or "".
func (k *keyring) signing() string { return k.node.Store().SigningKeyID() }

// keyInfo describes one replicated key in /cluster/status: never the
// secret.
type keyInfo struct {
	ID      string    `json:"id"`
	Added   time.Time `json:"added"`
	Primary bool      `json:"primary"`
}

func keyInfos(keys []fsm.SigningKey) []keyInfo {
	out := make([]keyInfo, len(keys))
	for i, key := range keys {
		out[i] = keyInfo{ID: key.ID, Added: key.Added.UTC(), Primary: i == 0}
	}
	return out
}
