package e2e

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModel holds the session model to hand-made histories, so a model
// bug shows up here and not as a false violation in a scenario.
func TestModel(t *testing.T) {
	const inf = 1000
	get := func(call, ret int64, vals string) porcupine.Operation {
		out := output{New: vals == ""}
		if vals != "" {
			out.Values = vals
		}
		return porcupine.Operation{Input: input{Kind: opGet}, Output: out, Call: call, Return: ret}
	}
	getOwned := func(call, ret int64, owner, vals string) porcupine.Operation {
		return porcupine.Operation{Input: input{Kind: opGet}, Output: output{Owner: owner, Values: vals}, Call: call, Return: ret}
	}
	put := func(call, ret int64, k, v string) porcupine.Operation {
		out := output{Unknown: ret == inf}
		return porcupine.Operation{Input: input{Kind: opPut, Key: k, Value: v}, Output: out, Call: call, Return: ret}
	}
	write := func(call, ret int64, kind opKind, arg string) porcupine.Operation {
		return porcupine.Operation{Input: input{Kind: kind, Value: arg}, Output: output{Unknown: ret == inf}, Call: call, Return: ret}
	}
	views := func(call, ret int64, n int64) porcupine.Operation {
		return porcupine.Operation{Input: input{Kind: opViews}, Output: output{Views: n, Unknown: ret == inf}, Call: call, Return: ret}
	}
	tests := []struct {
		name string
		ok   bool
		h    []porcupine.Operation
	}{
		{"put then read", true, []porcupine.Operation{put(0, 1, "a", "1"), get(2, 3, `{"a":"1"}`)}},
		{"stale read after ack", false, []porcupine.Operation{put(0, 1, "a", "1"), put(2, 3, "a", "2"), get(4, 5, `{"a":"1"}`)}},
		{"no session before the first write", true, []porcupine.Operation{get(0, 1, ""), put(2, 3, "a", "1")}},
		{"unknown put seen", true, []porcupine.Operation{put(0, 1, "a", "1"), put(2, inf, "a", "2"), get(4, 5, `{"a":"2"}`)}},
		{"unknown put not seen", true, []porcupine.Operation{put(0, 1, "a", "1"), put(2, inf, "a", "2"), get(4, 5, `{"a":"1"}`)}},
		{"unknown put seen then lost", false, []porcupine.Operation{put(0, 1, "a", "1"), put(2, inf, "a", "2"), get(4, 5, `{"a":"2"}`), get(6, 7, `{"a":"1"}`)}},
		{"unknown create is invisible", true, []porcupine.Operation{put(0, inf, "a", "1"), get(2, 3, "")}},
		{"unknown create cannot be seen", false, []porcupine.Operation{put(0, inf, "a", "1"), get(2, 3, `{"a":"1"}`)}},
		{"logout ends the session", false, []porcupine.Operation{put(0, 1, "a", "1"), write(2, 3, opLogout, ""), get(4, 5, `{"a":"1"}`)}},
		{"logout then new session", true, []porcupine.Operation{put(0, 1, "a", "1"), write(2, 3, opLogout, ""), get(4, 5, ""), put(6, 7, "b", "2"), get(8, 9, `{"b":"2"}`)}},
		{"unknown logout either way", true, []porcupine.Operation{put(0, 1, "a", "1"), write(2, inf, opLogout, ""), get(4, 5, `{"a":"1"}`), get(6, 7, "")}},
		{"login keeps data", true, []porcupine.Operation{put(0, 1, "a", "1"), write(2, 3, opLogin, "u"), getOwned(4, 5, "user:u", `{"a":"1","user":"u"}`)}},
		{"unknown login may strand the cookie", true, []porcupine.Operation{put(0, 1, "a", "1"), write(2, inf, opLogin, "u"), get(4, 5, "")}},
		{"unknown login never half-applies", false, []porcupine.Operation{put(0, 1, "a", "1"), write(2, inf, opLogin, "u"), getOwned(4, 5, "user:u", `{"a":"1","user":"u"}`)}},
		{"logout-everywhere without owner keeps the session", true, []porcupine.Operation{put(0, 1, "a", "1"), write(2, 3, opLogoutAll, ""), get(4, 5, `{"a":"1"}`)}},
		{"logout-everywhere with owner ends it", false, []porcupine.Operation{write(0, 1, opLogin, "u"), write(2, 3, opLogoutAll, ""), getOwned(4, 5, "user:u", `{"user":"u"}`)}},
		{"views count", true, []porcupine.Operation{views(0, 1, 1), views(2, 3, 2)}},
		{"lost increment", false, []porcupine.Operation{views(0, 1, 1), views(2, 3, 1)}},
		{"unknown increment counted", true, []porcupine.Operation{views(0, 1, 1), views(2, inf, 0), views(4, 5, 3)}},
		{"concurrent tabs, different keys", true, []porcupine.Operation{put(0, 1, "t0", "x"), put(2, 5, "t0", "a"), put(3, 6, "t1", "b"), get(7, 8, `{"t0":"a","t1":"b"}`)}},
		{"concurrent tabs, one edit lost", false, []porcupine.Operation{put(0, 1, "t0", "x"), put(2, 5, "t0", "a"), put(3, 6, "t1", "b"), get(7, 8, `{"t0":"a"}`)}},
	}
	model := sessionModel.ToModel()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(model, tc.h); got != tc.ok {
				t.Errorf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}
