package nodeproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Status is a node's GET /cluster/status.
type Status struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	GossipAddr   string    `json:"gossip_addr"`
	State        string    `json:"state"` // Leader, Follower, Candidate...
	Leader       string    `json:"leader"`
	LeaderAddr   string    `json:"leader_addr"`
	Term         uint64    `json:"term"`
	AppliedIndex uint64    `json:"applied_index"`
	CommitIndex  uint64    `json:"commit_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact"`
	Sessions     int       `json:"sessions"`
	Members      []Member  `json:"members"`
}

// Member is one entry of [Status.Members].
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Role    string `json:"role"` // voter, non-voter or none
	Health  string `json:"health"`
	Leader  bool   `json:"leader"`
}

// Voters returns the IDs of the voters in s's configuration.
func (s Status) Voters() []string {
	var ids []string
	for _, m := range s.Members {
		if m.Role == "voter" {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// statusTimeout bounds one status request, so that a wait asking several
// nodes moves on from one that does not answer.
const statusTimeout = 2 * time.Second

// GetStatus returns GET /cluster/status of the node whose admin listener
// has base URL admin ("http://host:port").
func GetStatus(admin string) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	url := admin + "/cluster/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Status{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return s, nil
}
