// Package httpstop lets an http.Server stop at once when some of its connections never began a
// request. http.Server.Shutdown counts a connection in http.StateNew as busy for its first 5 s,
// and a client's transport leaves one behind whenever it dialed ahead for a request it then did
// not send (a stopping invoker's next long poll, a health check that gave up), so a Shutdown
// with a deadline under 5 s failed and one without waited for nothing. Before Shutdown, Quiesce
// closes the listener and gives such connections a short grace to begin their request: one just
// dialed is usually being written to, and net/http drops a request it reads after Shutdown began,
// which its client cannot tell apart from a failure after the server took it.
//
// It is shared by the controller-adapter and the invoker and runs on the untrusted host. It
// imports only the standard library.
package httpstop
