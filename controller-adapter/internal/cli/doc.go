// Package cli is bin/teemate's command line: parsing, the commands, their output and exit codes,
// over controller-adapter/client. It runs on the user's machine (the client side of the trust
// boundary); it keeps each sealed invocation's reply key private under $TEEMATE_HOME (default
// ~/.teemate).
package cli
