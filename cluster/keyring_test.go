package cluster

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestSigningKeysFollowTheKeyring: the first leader creates a key that
// every node serves; a rotation through a follower keeps the old key
// signing for the grace period on every node, then switches them all,
// each woken by its keyring channel rather than by polling.
func TestSigningKeysFollowTheKeyring(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes and a full signing-key grace period")
	}
	nodes := startCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.WaitSigningKey(ctx); err != nil {
			t.Fatalf("%s: no signing key: %v", n.ID(), err)
		}
	}
	first, _ := nodes[0].Store().CookieSecrets()
	if len(first) != 1 || len(first[0]) != signingKeyBytes {
		t.Fatalf("first keyring: %d secrets, want one of %d bytes", len(first), signingKeyBytes)
	}

	f := followersOf(nodes)[0]
	rot, err := f.RotateSigningKey(ctx)
	if err != nil {
		t.Fatalf("rotate through a follower: %v", err)
	}
	if !slices.Equal(rot.Keys, []string{rot.Primary, nodes[0].Store().SigningKeys()[1].ID}) || len(rot.Retired) != 0 {
		t.Fatalf("first rotation: %+v", rot)
	}
	if _, err := f.RotateSigningKey(ctx); !errors.Is(err, ErrRotateTooSoon) {
		t.Fatalf("second rotation within the grace period: %v, want ErrRotateTooSoon", err)
	}

	// Within the grace period every node still signs with the old key.
	var changes []<-chan struct{}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.ID()+" to hold the new key", func() bool { return len(n.Store().SigningKeys()) == 2 })
		secrets, changed := n.Store().CookieSecrets()
		if len(secrets) != 2 || !bytes.Equal(secrets[0], first[0]) {
			t.Fatalf("%s within the grace period: the old key must still sign", n.ID())
		}
		changes = append(changes, changed)
	}
	for i, n := range nodes {
		select {
		case <-changes[i]:
		case <-ctx.Done():
			t.Fatalf("%s: no signal when the new key starts signing", n.ID())
		}
		if n.Store().SigningKeyID() != rot.Primary {
			t.Fatalf("%s signs with %s after the grace period, want %s", n.ID(), n.Store().SigningKeyID(), rot.Primary)
		}
		if secrets, _ := n.Store().CookieSecrets(); !bytes.Equal(secrets[1], first[0]) {
			t.Fatalf("%s: the old key no longer verifies after the grace period", n.ID())
		}
	}

	// A second rotation retires the first key everywhere.
	changed := nodes[2].fsm.KeyringChanged()
	rot2, err := nodes[0].RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rot2.Retired) != 1 || !slices.Equal(rot2.Keys, []string{rot2.Primary, rot.Primary}) {
		t.Fatalf("second rotation: %+v", rot2)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no keyring signal on another node")
	}
	waitFor(t, 5*time.Second, "the retirement to reach every node", func() bool {
		for _, n := range nodes {
			if secrets, _ := n.Store().CookieSecrets(); len(secrets) != 2 || slices.ContainsFunc(secrets, func(s []byte) bool { return bytes.Equal(s, first[0]) }) {
				return false
			}
		}
		return true
	})
}
