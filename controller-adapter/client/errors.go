package client

import (
	"errors"
	"fmt"
)

// Failure classes. Every error the package returns for one of these cases wraps the sentinel, so
// that a caller (bin/teemate: its exit codes) can tell them apart with errors.Is.
var (
	// ErrUnreachable: no answer from the API host (connection refused, DNS, timeout).
	ErrUnreachable = errors.New("the API host is unreachable")
	// ErrUnauthorized: the API host refused the credentials (401, 403).
	ErrUnauthorized = errors.New("the API host refused the credentials")
	// ErrNotFound: no such action or activation (404).
	ErrNotFound = errors.New("not found")
	// ErrNoEvidence: no enclave of the action's image has published its evidence yet.
	ErrNoEvidence = errors.New("no evidence yet")
	// ErrEvidence: the evidence does not verify (binding, chain, policy, malformed); simulated
	// evidence refused by the policy is attest.ErrSimulated instead.
	ErrEvidence = errors.New("the evidence does not verify")
	// ErrIntegrity: the enclave refused the envelope (tampered, replayed, too old, unknown key),
	// or a sealed result does not open.
	ErrIntegrity = errors.New("integrity failure")
	// ErrReceipt: the receipt does not match the evidence, the envelope or the sealed result.
	ErrReceipt = errors.New("receipt mismatch")
	// ErrNotReady: the activation has not finished (a non-blocking invoke, or a blocking one that
	// outlived the controller's wait).
	ErrNotReady = errors.New("the activation has not finished yet")
	// ErrActionFailed: the activation finished with an error of the action or the platform; the
	// error value is in the returned result.
	ErrActionFailed = errors.New("the action failed")
)

// APIError is an answer of the API host that is not a success.
type APIError struct {
	Method, Path string
	Status       int
	// Message is OpenWhisk's "error" field when the body has one, else the body, truncated.
	Message string
	kind    error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// Unwrap gives the failure class (ErrUnauthorized, ErrNotFound, ...) when there is one.
func (e *APIError) Unwrap() error { return e.kind }
