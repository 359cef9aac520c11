package nodeproc

import (
	"errors"
	"net"
	"strconv"
	"sync"
)

// handedOut holds every port FreePorts returned in this process. The
// kernel may give a closed listener's port to the next bind to port 0, so
// without it two nodes of one cluster, picking their ports one after the
// other, could get the same one (it happened: two e2e nodes were given the
// same admin port).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePorts returns n distinct ports that were free on 127.0.0.1 for both
// TCP and UDP (gossip uses both) a moment ago, none of them returned by an
// earlier call in this process. For nodes whose addresses must be known
// before they start (to join each other, to stay the same across
// restarts); a node alone can take port 0 and report it
// ([Proc.WaitServing]).
func FreePorts(n int) ([]int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 20*n {
			return nil, errors.New("nodeproc: no free ports")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Listeners stay open until the end, so no port comes up twice.
		closers = append(closers, ln.Close)
		port := ln.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // the UDP side is taken
		}
		closers = append(closers, pc.Close)
		ports = append(ports, port)
	}
	for _, p := range ports {
		handedOut.ports[p] = true
	}
	return ports, nil
}
