package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// openStores opens what raft keeps under DataDir: the stable store (bolt),
// the log store, and the snapshot store; and leaves the directory readable
// by this user only.
func (n *Node) openStores() (raft.LogStore, raft.SnapshotStore, error) {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("cluster: create data dir: %w", err)
	}
	if err := checkWritable(cfg.DataDir); err != nil {
		return nil, nil, err
	}
	var err error
	n.bolt, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{
			Timeout:        500 * time.Millisecond,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, nil, fmt.Errorf("%w: %s", ErrDataDirInUse, cfg.DataDir)
		}
		return nil, nil, fmt.Errorf("cluster: open raft log: %w", err)
	}
	if err := checkClusterName(n.bolt, cfg.ClusterName); err != nil {
		return nil, nil, err
	}
	logs, err := n.openLogStore()
	if err != nil {
		return nil, nil, err
	}
	// raft.db is locked: no other process of this node writes snapshots.
	removeUnfinishedSnapshots(filepath.Join(cfg.DataDir, "snapshots"), n.log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, newHCLog(n.log, "snapshot"))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	// After the stores opened, so that what they just created is covered.
	if err := restrictDataDir(cfg.DataDir); err != nil {
		return nil, nil, err
	}
	return logs, snaps, nil
}

// openPort listens on the node port and starts serving it: TLS, raft's
// transport and the forward server.
func (n *Node) openPort() error {
	cfg := n.cfg
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("cluster: listen on raft address %s: %w", cfg.RaftAddr, err)
	}
	adv, err := advertiseAddr(cfg.RaftAdvertise, ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}
	n.raftAddr = adv.String()
	portTLS, err := cfg.portTLS(time.Now())
	if err != nil {
		ln.Close()
		return err
	}
	n.mux = newMux(ln, adv, portTLS, n.log)
	if portTLS == nil && !isLoopback(ln.Addr()) {
		n.log.Warn("raft port listens beyond loopback WITHOUT authentication (Insecure): anyone who can reach it can read and write sessions", "addr", ln.Addr())
	}
	maxRequest := maxRequestFrame(cfg.Limits)
	n.client = newForwardClient(func(addr string, t time.Duration) (net.Conn, error) {
		return n.mux.dial(addr, protoForward, t)
	}, maxRequest, n.log)
	n.server = newForwardServer(n.handleForward, maxRequest, n.mux.log)
	n.mux.onForward = n.server.serve
	n.mux.allowRaft = n.allowRaft
	n.mux.refused = func() { n.metrics.Refused.Add(1) }
	n.mux.wg.Add(1)
	go n.mux.serve()

	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{n.mux}, MaxPool: 3, Timeout: 10 * time.Second,
		Logger: newHCLog(n.log, "raft-net"),
	})
	return nil
}

// raftConfig is hashicorp/raft's configuration for this node.
func (n *Node) raftConfig() *raft.Config {
	cfg := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = 20 * time.Millisecond
	rc.SnapshotInterval = cfg.Raft.SnapshotInterval
	rc.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	rc.TrailingLogs = cfg.Raft.TrailingLogs
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.ShutdownOnRemove = false
	rc.Logger = newHCLog(n.log, "raft")
	rc.NoLegacyTelemetry = true
	return rc
}
