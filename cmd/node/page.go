package main

import (
	"bytes"
	"html/template"
	"net/http"
	"slices"

	"github.com/raftsession/raftsession/httpmw"
)

// pageData is what the demo page shows.
type pageData struct {
	Node     string
	New      bool
	User     string
	Views    string
	Values   []keyValue
	Sessions []ownedJSON
	Error    string
}

type keyValue struct{ Key, Value string }

// page renders the demo page. It only reads the session, so it never
// creates one. The element ids (#node, #user, #views, #login, #views-add,
// #logout, #logout-everywhere, #set, #values, #sessions) are stable for
// browser tests.
func (d *demo) page(w http.ResponseWriter, r *http.Request) {
	s := httpmw.FromContext(r.Context())
	data := pageData{Node: d.node, New: s.IsNew(), User: s.GetString("user"), Views: "0"}
	if s.Exists("views") {
		data.Views = valueText(s, "views")
	}
	for _, k := range s.Keys() {
		if k != "user" && k != "views" {
			data.Values = append(data.Values, keyValue{k, valueText(s, k)})
		}
	}
	if s.Owner() != "" {
		list, err := ownedSessions(r.Context(), s)
		if err != nil {
			data.Error = "could not list your sessions: " + http.StatusText(httpmw.StatusCode(err))
		}
		data.Sessions = list
	}
	slices.SortFunc(data.Values, func(a, b keyValue) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		d.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// The forms call the JSON API with fetch and reload the page, which then
// shows the state as the serving node sees it.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>raftsession demo — {{.Node}}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
code, .mono { font-family: ui-monospace, monospace; }
.node { background: #eef; padding: .1rem .4rem; border-radius: .3rem; }
form { margin: .4rem 0; } input { font: inherit; padding: .2rem .4rem; } button { font: inherit; padding: .2rem .8rem; }
table { border-collapse: collapse; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
.error { color: #a00; } .muted { color: #777; }
</style>
</head>
<body>
<h1>raftsession demo</h1>
<p>Served by node <span id="node" class="node mono">{{.Node}}</span>.
Reload to be served by another node behind a round-robin load balancer; the session follows you.</p>
<p class="error" id="error">{{.Error}}</p>

<h2>Who you are</h2>
{{if .User}}<p>Logged in as <strong id="user">{{.User}}</strong>.</p>
{{else}}<p>Not logged in<span id="user"></span>.{{if .New}} <span class="muted">(no session yet)</span>{{end}}</p>{{end}}
<form id="login" data-api="/api/login"><input name="user" placeholder="name" required maxlength="64" value="{{.User}}"> <button>Log in</button></form>
<form id="logout" data-api="/api/logout"><button>Log out</button></form>
<form id="logout-everywhere" data-api="/api/logout-everywhere"><button>Log out everywhere</button></form>

<h2>Views</h2>
<p>Counter: <strong id="views">{{.Views}}</strong></p>
<form id="views-add" data-api="/api/views"><button>+1</button></form>

<h2>Values</h2>
<table id="values">{{range .Values}}<tr><td class="mono">{{.Key}}</td><td>{{.Value}}</td></tr>{{else}}<tr><td class="muted">none</td></tr>{{end}}</table>
<form id="set"><input name="key" placeholder="key" required> <input name="value" placeholder="value"> <button>Set</button></form>

<h2>Your sessions</h2>
{{if .User}}<table id="sessions"><tr><th>session</th><th>created</th><th>last seen</th><th></th></tr>
{{range .Sessions}}<tr><td class="mono">{{.Key}}</td><td>{{.Created.Format "2006-01-02 15:04:05"}}</td><td>{{.LastSeen.Format "2006-01-02 15:04:05"}}</td><td>{{if .Current}}this one{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted" id="sessions">Log in to see your sessions.</p>{{end}}

<script>
for (const f of document.querySelectorAll("form")) {
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let url = f.dataset.api, method = "POST", body = null;
    if (f.id === "login") url += "?user=" + encodeURIComponent(f.elements.user.value);
    if (f.id === "set") {
      url = "/api/session/values/" + encodeURIComponent(f.elements.key.value);
      method = "PUT"; body = f.elements.value.value;
    }
    try {
      const r = await fetch(url, {method, body, credentials: "same-origin"});
      if (!r.ok) throw new Error(r.status + " " + (await r.text()).trim());
      location.reload();
    } catch (e) {
      document.getElementById("error").textContent = "Request failed: " + e.message;
    }
  });
}
</script>
</body>
</html>
`))
