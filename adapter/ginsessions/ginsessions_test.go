package ginsessions

import (
	"testing"

	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/tester"
	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/cluster/clustertest"
	"github.com/raftsession/raftsession/session"
)

func init() { gin.SetMode(gin.TestMode) }

// TestGinContribSuite runs gin-contrib/sessions' own store tests (its
// tester package, as its cookie, redis and memstore stores do) over a
// MemoryStore and over a three-node cluster read through a follower.
func TestGinContribSuite(t *testing.T) {
	factories := map[string]func(*testing.T) sessions.Store{
		"memory": func(t *testing.T) sessions.Store {
			mem := session.NewMemoryStore(session.MemoryOptions{})
			t.Cleanup(func() { mem.Close() })
			s, err := NewStore(mem, []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	if !testing.Short() {
		nodes := clustertest.Start(t, 3, nil)
		follower := clustertest.Follower(t, nodes).Store()
		factories["cluster"] = func(t *testing.T) sessions.Store {
			s, err := NewStore(follower) // keys from the cluster's keyring
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	for name, newStore := range factories {
		t.Run(name, func(t *testing.T) {
			t.Run("GetSet", func(t *testing.T) { tester.GetSet(t, newStore) })
			t.Run("DeleteKey", func(t *testing.T) { tester.DeleteKey(t, newStore) })
			t.Run("Flashes", func(t *testing.T) { tester.Flashes(t, newStore) })
			t.Run("Clear", func(t *testing.T) { tester.Clear(t, newStore) })
			t.Run("Options", func(t *testing.T) { tester.Options(t, newStore) })
			t.Run("Many", func(t *testing.T) { tester.Many(t, newStore) })
		})
	}
}
