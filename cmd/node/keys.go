package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/httpmw"
)

// Zero-config signing keys.
//
// Without -secret the cookie keys live in the replicated state machine:
// the first leader that finds none generates one; every node verifies
// cookies with all replicated keys. POST /cluster/rotate-key adds a new
// key, which becomes primary, and retires every key older than the two
// newest: a cookie keeps working across one rotation (it is re-signed with
// the new key on its next request), and stops at the second. Rotate less
// often than the session lifetime and nobody is logged out.
//
// A new primary key reaches each replica a moment after it is committed,
// and nodes notice it within keyPoll. So that a cookie signed with it is
// never shown to a node that does not know it yet, nodes keep signing with
// the previous key until the new one is signGrace old (by the leader's
// clock, which stamps Added).
const (
	keyPoll      = 200 * time.Millisecond
	signGrace    = 5 * time.Second
	keyBytes     = 32
	keepKeys     = 2
	keyOpTimeout = 5 * time.Second
)

// keyring keeps the session middleware's secrets in step with the
// replicated keys, and creates the middleware once a key exists.
type keyring struct {
	grace time.Duration // signGrace, shorter in tests
	node  *cluster.Node
	log   *slog.Logger
	build func(secrets [][]byte) (*httpmw.Manager, error) // makes the middleware on the first key

	mu    sync.Mutex
	mgr   *httpmw.Manager
	order []string // key IDs in the order last given to the middleware
	poke  chan struct{}
}

func newKeyring(node *cluster.Node, log *slog.Logger, build func([][]byte) (*httpmw.Manager, error)) *keyring {
	return &keyring{grace: signGrace, node: node, log: log, build: build, poke: make(chan struct{}, 1)}
}

// run watches the replicated keys until ctx ends.
func (k *keyring) run(ctx context.Context) {
	t := time.NewTicker(keyPoll)
	defer t.Stop()
	for {
		k.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.poke:
		}
	}
}

func (k *keyring) wake() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// refresh applies the current replicated keys, and makes the first key
// when this node leads a cluster that has none.
func (k *keyring) refresh(ctx context.Context) {
	keys := k.node.Store().SigningKeys()
	if len(keys) == 0 {
		if k.node.IsLeader() {
			k.generateFirst(ctx)
		}
		return
	}
	ordered := signOrder(keys, time.Now(), k.grace)
	ids := make([]string, len(ordered))
	secrets := make([][]byte, len(ordered))
	for i, key := range ordered {
		ids[i], secrets[i] = key.ID, key.Secret
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if slices.Equal(ids, k.order) {
		return
	}
	if k.mgr == nil {
		mgr, err := k.build(secrets)
		if err != nil {
			k.log.Error("cannot start the session middleware", "err", err)
			return
		}
		k.mgr = mgr
	} else if err := k.mgr.SetSecrets(secrets); err != nil {
		k.log.Error("cannot use the replicated signing keys", "err", err)
		return
	}
	k.order = ids
	k.log.Info("cookie signing keys updated", "signing", ids[0], "verifying", len(ids))
}

func (k *keyring) generateFirst(ctx context.Context) {
	// Only a leader whose replica has (nearly) caught up with the commit
	// index may decide that there is no key; before that it may simply
	// not have applied it yet. "Nearly": raft's no-op and barrier entries
	// never reach the state machine, so the applied index can stay a few
	// entries behind for good. Should a key be added twice anyway, both
	// verify and the newer signs: no harm done.
	st := k.node.Status()
	if st.AppliedIndex+readyMargin < st.CommitIndex {
		return
	}
	id, secret := newSigningKey()
	ctx, cancel := context.WithTimeout(ctx, keyOpTimeout)
	defer cancel()
	if _, err := k.node.Store().AddSigningKey(ctx, id, secret); err != nil {
		k.log.Warn("could not create the first signing key; will retry", "err", err)
		return
	}
	k.log.Info("created the cluster's cookie signing key", "key_id", id)
	k.wake()
}

// signing returns the ID of the key that signs cookies, or "".
func (k *keyring) signing() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.order) == 0 {
		return ""
	}
	return k.order[0]
}

// rotateResult is the answer of POST /cluster/rotate-key.
type rotateResult struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
	Retired []string `json:"retired"`
}

// errRotateTooSoon refuses a rotation while the previous one is within
// its grace period: its key has not started signing yet, so the key that
// signs now would be retired with the cookies it signed.
var errRotateTooSoon = errors.New("the previous rotation is still propagating; try again in a few seconds")

// rotate adds a new primary key and retires all but the keepKeys newest.
func (k *keyring) rotate(ctx context.Context) (rotateResult, error) {
	ctx, cancel := context.WithTimeout(ctx, keyOpTimeout)
	defer cancel()
	if keys := k.node.Store().SigningKeys(); len(keys) > 1 && time.Since(keys[0].Added) < k.grace {
		return rotateResult{}, errRotateTooSoon
	}
	id, secret := newSigningKey()
	index, err := k.node.Store().AddSigningKey(ctx, id, secret)
	if err != nil {
		return rotateResult{}, err
	}
	if err := k.node.FSM().WaitApplied(ctx, index); err != nil {
		return rotateResult{}, err
	}
	res := rotateResult{Primary: id, Retired: []string{}}
	keys := k.node.Store().SigningKeys()
	for _, old := range keys[min(keepKeys, len(keys)):] {
		if _, err := k.node.Store().RetireSigningKey(ctx, old.ID); err != nil {
			return res, err
		}
		res.Retired = append(res.Retired, old.ID)
	}
	for _, key := range keys[:min(keepKeys, len(keys))] {
		res.Keys = append(res.Keys, key.ID)
	}
	k.log.Info("rotated cookie signing key", "key_id", id, "retired", len(res.Retired))
	k.wake()
	return res, nil
}

// signOrder returns keys (primary first) reordered so that the key that
// should sign comes first: the primary, unless it is younger than grace
// and an older key exists.
func signOrder(keys []fsm.SigningKey, now time.Time, grace time.Duration) []fsm.SigningKey {
	if len(keys) < 2 || now.Sub(keys[0].Added) >= grace {
		return keys
	}
	out := make([]fsm.SigningKey, 0, len(keys))
	out = append(out, keys[1], keys[0])
	return append(out, keys[2:]...)
}

// newSigningKey returns a random key and an ID that says nothing about it.
func newSigningKey() (id string, secret []byte) {
	secret = make([]byte, keyBytes)
	rand.Read(secret)
	idb := make([]byte, 6)
	rand.Read(idb)
	return "k-" + hex.EncodeToString(idb), secret
}

// keyIDs lists the IDs of the replicated keys, primary first, never the
// secrets.
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

// waitingForKey answers requests that arrive before the cluster has a
// signing key (a new cluster still electing its first leader).
func waitingForKey(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "the cluster is starting: no session signing key yet", http.StatusServiceUnavailable)
}
