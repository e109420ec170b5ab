// Package process is the "process" sandbox backend: every sandbox is a fresh child process running
// Spec.Command with Spec.Env only, in its own process group. It gives NO isolation (the child sees
// the host's filesystem, network and users, and no memory limit is enforced); it exists so the whole
// platform can run and be tested on a machine without Docker or an OCI runtime, and it says so in
// its logs. It runs on the untrusted host.
//
// When the spec names a proxy socket, the backend binds it itself before starting the command and
// hands the listening socket in as descriptor 3 (TEEMATE_PROXY_FD=3): the invoker can connect
// immediately instead of polling for the proxy to come up.
package process
