package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// conn is a minimal HTTP/1.1 keep-alive client for one server. It writes
// pre-built requests and parses only what the workloads need (status,
// Content-Length or chunked body, the first Set-Cookie), so the load
// generator spends little of the two shared cores on itself.
type conn struct {
	addr    string
	timeout time.Duration
	c       net.Conn
	br      *bufio.Reader
	body    []byte
}

func newConn(addr string, timeout time.Duration) *conn {
	return &conn{addr: addr, timeout: timeout}
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// response is valid until the next call on the same conn.
type response struct {
	status int
	cookie string // name=value of the first Set-Cookie, if any
	body   []byte
}

var errProtocol = errors.New("loadgen: malformed response")

// do sends req (a full HTTP/1.1 request) and reads the response. On any
// error the connection is dropped and redialled by the next call.
func (c *conn) do(req []byte) (response, error) {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return response{}, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		c.c = nc
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	if c.timeout > 0 {
		c.c.SetDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.c.Write(req); err != nil {
		c.close()
		return response{}, err
	}
	resp, keep, err := c.read()
	if err != nil || !keep {
		c.close()
	}
	return resp, err
}

func (c *conn) read() (response, bool, error) {
	var r response
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return r, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return r, false, errProtocol
	}
	r.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return r, false, errProtocol
	}
	length, chunked, keep := -1, false, true
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return r, false, err
		}
		if len(line) <= 2 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return r, false, errProtocol
		}
		name, val := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			length, err = strconv.Atoi(string(val))
			if err != nil {
				return r, false, errProtocol
			}
		case equalFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case equalFold(name, "connection"):
			keep = !bytes.EqualFold(val, []byte("close"))
		case equalFold(name, "set-cookie") && r.cookie == "":
			if semi := bytes.IndexByte(val, ';'); semi >= 0 {
				val = val[:semi]
			}
			r.cookie = string(val)
		}
	}
	c.body = c.body[:0]
	switch {
	case r.status == 204 || r.status == 304 || r.status/100 == 1:
	case chunked:
		for {
			line, err = c.br.ReadSlice('\n')
			if err != nil {
				return r, false, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
			if err != nil {
				return r, false, errProtocol
			}
			if n == 0 {
				// trailers until blank line
				for {
					line, err = c.br.ReadSlice('\n')
					if err != nil {
						return r, false, err
					}
					if len(line) <= 2 {
						break
					}
				}
				break
			}
			start := len(c.body)
			c.body = append(c.body, make([]byte, n)...)
			if _, err := io.ReadFull(c.br, c.body[start:]); err != nil {
				return r, false, err
			}
			if _, err := c.br.Discard(2); err != nil {
				return r, false, err
			}
		}
	case length >= 0:
		if cap(c.body) < length {
			c.body = make([]byte, length)
		}
		c.body = c.body[:length]
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			return r, false, err
		}
	default:
		return r, false, fmt.Errorf("loadgen: response without length")
	}
	r.body = c.body
	return r, keep, nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// buildRequest formats one HTTP/1.1 request.
func buildRequest(method, host, path, cookie string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: raftsession-loadgen\r\n", method, path, host)
	if cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", cookie)
	}
	if body != nil || method == "POST" || method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}
