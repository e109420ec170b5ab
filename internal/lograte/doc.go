// Package lograte keeps a warning that repeats once per request from flooding the log: the first
// occurrence of a message goes through with its fields, the ones that follow within an interval
// are counted, and the count is logged once when the interval ends ("overcommitting: 1992 more in
// the last 10s"). A steady stream thus costs one full line and then one summary per interval; a
// message that stops repeating is logged in full again the next time it happens.
//
// It is shared by the controller-adapter and the invoker and runs on the untrusted host. It
// imports only zap besides the standard library.
package lograte
