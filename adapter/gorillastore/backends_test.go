package gorillastore

import (
	"testing"

	"github.com/raftsession/raftsession/cluster/clustertest"
)

// backend is one store the tests run over (see clustertest.Backends).
type backend = clustertest.Backend

func backends(t *testing.T) []backend { return clustertest.Backends(t) }
