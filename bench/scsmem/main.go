// Command scsmem is the benchmark peer: the demo routes on
// github.com/alexedwards/scs/v2 with its in-process memstore.
package main

import (
	"flag"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"

	"github.com/raftsession/raftsession/bench/internal/scsapp"
)

func main() {
	scsapp.Main("scsmem", func(fs *flag.FlagSet) func() (*scs.SessionManager, func(), error) {
		return func() (*scs.SessionManager, func(), error) {
			store := memstore.New()
			sm := scs.New()
			sm.Store = store
			return sm, store.StopCleanup, nil
		}
	})
}
