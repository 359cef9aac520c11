package nodeproc

import (
	"errors"
	"net"
	"strconv"
)

// FreePorts returns n distinct ports that were free on 127.0.0.1 for both
// TCP and UDP (gossip uses both) a moment ago. For nodes whose addresses
// must be known before they start (to join each other, to stay the same
// across restarts); a node alone can take port 0 and report it
// ([Proc.WaitServing]).
func FreePorts(n int) ([]int, error) {
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
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // the UDP side is taken
		}
		closers = append(closers, pc.Close)
		ports = append(ports, port)
	}
	return ports, nil
}
