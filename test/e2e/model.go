package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/anishathalye/porcupine"
)

type opKind uint8

const (
	opGet       opKind = iota // GET /api/session
	opGetKey                  // GET /api/session/values/{key}
	opPut                     // PUT /api/session/values/{key}
	opDel                     // DELETE /api/session/values/{key}
	opViews                   // POST /api/views
	opLogin                   // POST /api/login?user=
	opLogout                  // POST /api/logout
	opLogoutAll               // POST /api/logout-everywhere
)

var opNames = [...]string{"get", "getkey", "put", "del", "views", "login", "logout", "logout-all"}

func (k opKind) String() string { return opNames[k] }

func (k opKind) isWrite() bool { return k >= opPut }

// input is one operation as the browser asked it.
type input struct {
	Browser int
	Kind    opKind
	Key     string // getkey, put, del
	Value   string // put: the value; login: the user
}

// output is what the browser saw.
type output struct {
	Unknown bool // a write whose outcome is unknown

	New    bool   // get: the session did not exist
	Owner  string // get
	Values string // get: canonical JSON of the values map

	Found bool   // getkey: 200 rather than 404
	Value string // getkey: the value

	Views int64 // views: the counter after the increment
}

// state is the session the browser's cookie names, as the model knows it.
// It is comparable, so porcupine's default equality works.
type state struct {
	Exists bool
	Owner  string
	Values string // canonical JSON; "" when !Exists
}

var gone = state{}

func (s state) values() map[string]string {
	m := map[string]string{}
	if s.Values != "" {
		if err := json.Unmarshal([]byte(s.Values), &m); err != nil {
			panic(err) // the model wrote it
		}
	}
	return m
}

func canonical(m map[string]string) string {
	b, err := json.Marshal(m) // sorts keys
	if err != nil {
		panic(err)
	}
	return string(b)
}

// with returns s (a new empty session when it does not exist) with f
// applied to its values.
func (s state) with(f func(map[string]string)) state {
	if !s.Exists {
		s = state{Exists: true}
	}
	m := s.values()
	f(m)
	s.Values = canonical(m)
	return s
}

func (s state) views() int64 {
	n, _ := strconv.ParseInt(s.values()["views"], 10, 64)
	return n
}

// step returns the states the session may be in after the operation in
// with output out, starting from s; none when out is impossible.
func step(s state, in input, out output) []state {
	// maybe: an unknown write may or may not have happened. A write to a
	// session that does not exist creates one, but the browser only
	// learns its ID from the response, so from the browser's point of
	// view an unknown create never happened.
	maybe := func(next state) []state {
		if !out.Unknown {
			return []state{next}
		}
		if !s.Exists || next == s {
			return []state{s}
		}
		return []state{s, next}
	}
	switch in.Kind {
	case opGet:
		if out.New {
			if s.Exists {
				return nil
			}
			return []state{s}
		}
		if !s.Exists || out.Owner != s.Owner || out.Values != s.Values {
			return nil
		}
		return []state{s}
	case opGetKey:
		v, ok := s.values()[in.Key]
		if out.Found != ok || ok && out.Value != v {
			return nil
		}
		return []state{s}
	case opPut:
		return maybe(s.with(func(m map[string]string) { m[in.Key] = in.Value }))
	case opDel:
		if !s.Exists {
			return []state{s} // nothing to delete, nothing committed
		}
		return maybe(s.with(func(m map[string]string) { delete(m, in.Key) }))
	case opViews:
		next := s.with(func(m map[string]string) { m["views"] = strconv.FormatInt(s.views()+1, 10) })
		if !out.Unknown && out.Views != next.views() {
			return nil
		}
		return maybe(next)
	case opLogin:
		// Regenerate keeps the data under a new ID. When the outcome is
		// unknown and the rename happened, the browser's cookie still
		// names the old ID, which is gone.
		next := s.with(func(m map[string]string) { m["user"] = in.Value })
		next.Owner = "user:" + in.Value
		if out.Unknown {
			if !s.Exists {
				return []state{s}
			}
			return []state{s, gone}
		}
		return []state{next}
	case opLogout:
		return maybe(gone)
	case opLogoutAll:
		if s.Owner == "" {
			return []state{s} // no owner: the demo destroys nothing
		}
		return maybe(gone)
	}
	return nil
}

// sessionModel is the porcupine model of one browser's session,
// partitioned by browser.
var sessionModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byBrowser := map[int][]porcupine.Operation{}
		var order []int
		for _, op := range history {
			b := op.Input.(input).Browser
			if _, ok := byBrowser[b]; !ok {
				order = append(order, b)
			}
			byBrowser[b] = append(byBrowser[b], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, b := range order {
			out = append(out, byBrowser[b])
		}
		return out
	},
	Init: func() []any { return []any{gone} },
	Step: func(st, in, out any) []any {
		next := step(st.(state), in.(input), out.(output))
		res := make([]any, len(next))
		for i, s := range next {
			res[i] = s
		}
		return res
	},
	DescribeOperation: func(in, out any) string { return describe(in.(input), out.(output)) },
	DescribeState: func(st any) string {
		s := st.(state)
		if !s.Exists {
			return "no session"
		}
		return fmt.Sprintf("owner=%q %s", s.Owner, s.Values)
	},
}

func describe(in input, out output) string {
	var call, res string
	switch in.Kind {
	case opGet:
		call = "get"
		res = fmt.Sprintf("owner=%q %s", out.Owner, out.Values)
		if out.New {
			res = "new"
		}
	case opGetKey:
		call = "get " + in.Key
		res = "404"
		if out.Found {
			res = strconv.Quote(out.Value)
		}
	case opPut:
		call = fmt.Sprintf("put %s=%s", in.Key, in.Value)
	case opDel:
		call = "del " + in.Key
	case opViews:
		call = "views++"
		res = strconv.FormatInt(out.Views, 10)
	case opLogin:
		call = "login " + in.Value
	default:
		call = in.Kind.String()
	}
	switch {
	case out.Unknown:
		res = "unknown"
	case res == "":
		res = "ok"
	}
	return call + " → " + res
}
