// Package examples holds runnable programs that use raftsession with
// common Go web frameworks, one per directory, each a main package with a
// test that runs it:
//
//   - chi: chi and httpmw in one process, with no secret to configure.
//   - gin-cluster: gin with adapter/ginmw on three cluster nodes.
//   - scs-cluster: an scs application moved onto a cluster by one line.
//   - echo: echo with echo-contrib/session over adapter/gorillastore.
//
// They are their own module so that the frameworks stay out of the core
// module's requirements.
package examples
