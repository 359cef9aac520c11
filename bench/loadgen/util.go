package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// cmdWait polls GET -path on -target until it answers 200.
func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	target := fs.String("target", "", "host:port")
	path := fs.String("path", "/", "path that must answer 200")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	fs.Parse(args)
	t0 := time.Now()
	req := buildRequest("GET", *target, *path, "", nil)
	cn := newConn(*target, 2*time.Second)
	defer cn.close()
	for {
		r, err := cn.do(req)
		if err == nil && r.status == 200 {
			fmt.Printf("%.0f\n", ms(time.Since(t0)))
			return nil
		}
		if time.Since(t0) > *timeout {
			if err == nil {
				err = fmt.Errorf("status %d", r.status)
			}
			return fmt.Errorf("%s%s not ready after %s: %w", *target, *path, *timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdPorts prints -n distinct ports that are free for both TCP and UDP on
// 127.0.0.1 (gossip needs both), one per line.
func cmdPorts(args []string) error {
	fs := flag.NewFlagSet("ports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for got := 0; got < *n; {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u.Close()
		fmt.Println(port)
		got++
	}
	return nil
}

// cmdStatus prints "state id leader sessions applied_index" from a node's
// admin GET /cluster/status, for shell scripts without jq.
func cmdStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	admin := fs.String("admin", "", "admin host:port")
	fs.Parse(args)
	st, err := clusterStatus(*admin)
	if err != nil {
		return err
	}
	fmt.Println(st.State, st.ID, st.Leader, st.Sessions, st.Applied)
	return nil
}

// nodeStatus is the part of a node's admin /cluster/status loadgen uses.
type nodeStatus struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Leader    string `json:"leader"`
	Sessions  int    `json:"sessions"`
	Applied   uint64 `json:"applied_index"`
	LastIndex uint64 `json:"last_index"`
}

func clusterStatus(admin string) (nodeStatus, error) {
	var st nodeStatus
	cn := newConn(admin, 3*time.Second)
	defer cn.close()
	r, err := cn.do(buildRequest("GET", admin, "/cluster/status", "", nil))
	if err != nil {
		return st, err
	}
	if r.status != 200 {
		return st, fmt.Errorf("%s/cluster/status: status %d", admin, r.status)
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		return st, err
	}
	if st.State == "" {
		return st, errors.New("no state in /cluster/status")
	}
	return st, nil
}

// cmdGet does one request and prints the first Set-Cookie (name=value) or,
// with -o, saves the body; it fails unless the answer is 2xx.
func cmdGet(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	target := fs.String("target", "", "host:port")
	method := fs.String("method", "GET", "HTTP method")
	path := fs.String("path", "/", "request path")
	body := fs.String("body", "", "request body")
	out := fs.String("o", "", "save the response body to this file instead of printing the cookie")
	timeout := fs.Duration("timeout", 60*time.Second, "request timeout")
	fs.Parse(args)
	var b []byte
	if *body != "" {
		b = []byte(*body)
	}
	cn := newConn(*target, *timeout)
	defer cn.close()
	r, err := cn.do(buildRequest(*method, *target, *path, "", b))
	if err != nil {
		return err
	}
	if r.status/100 != 2 {
		return fmt.Errorf("%s %s: status %d", *method, *path, r.status)
	}
	if *out != "" {
		return os.WriteFile(*out, r.body, 0o644)
	}
	fmt.Println(r.cookie)
	return nil
}

// cmdSection replaces the marked section of -doc with the file -body.
func cmdSection(args []string) error {
	fs := flag.NewFlagSet("section", flag.ExitOnError)
	doc := fs.String("doc", "", "Markdown file")
	marker := fs.String("marker", "bench", "marker name")
	body := fs.String("body", "", "file with the new section text")
	fs.Parse(args)
	b, err := os.ReadFile(*body)
	if err != nil {
		return err
	}
	return replaceSection(*doc, *marker, string(b))
}
