// Package api is the controller-adapter's HTTP front door: the OpenWhisk REST
// API as the wsk CLI and the client libraries call it (/api/v1: namespaces,
// actions, invoke, activations), web actions (/api/v1/web/...), the
// controller's invoker health endpoints (/invokers) and the internal
// endpoints the invokers use, guarded by the invoker token: reading an
// action (/internal/v1/actions/..., OpenWhisk's invoker reads the entity
// database) and storing a finished activation record
// (/internal/v1/activations/..., OpenWhisk's invoker writes the activations
// database). That PUT is the only way a record gets into the store: the
// controller learns results from acks and never writes records itself (see
// controller-adapter/internal/balancer). A read of an activation whose
// blocking caller was just answered waits for the invoker's write (bounded),
// so the record is readable, with its logs, as soon as the answer is.
//
// Sizes are checked at the door (content.go): an action whose parameters
// could never be invoked is refused when it is created (413, OpenWhisk's
// text), and an invocation whose message would exceed Kafka's record limit
// keeps its content in the store for the invoker to read
// (/internal/v1/activations/{ns}/{id}/content) while the message carries a
// reference (whisk.ContentRef).
//
// TeeMate's one addition to the API is the evidence of each image's enclave: an invoker publishes
// what an owner serves (PUT /internal/v1/evidence/{image}), the store keeps the latest per image,
// and clients read it for an action (GET /api/v1/teemate/evidence?action=/NS/NAME), byte for byte,
// to verify it themselves (invoker/attest) before they seal anything to the key it names. The
// controller checks only that it parses and binds its key (and, with an evidence policy, that an
// sgx-dcap quote verifies): it is not a party clients have to trust. So that one image key serves
// every invoker, it keeps which invokers published which kid, refuses (409) another kid while a
// holder of the published one is healthy, and relays key requests and offers between invokers
// (/internal/v1/keys/requests, keyrelay.go): opaque evidence and ciphertext, in memory, bounded.
//
// Handlers are thin: each HTTP decision that is more than plumbing (merging
// an action update, building an ActivationMessage, mapping a status code,
// turning a web action's result into an HTTP reply, building web action
// parameters) is a pure function tested with tables. Error replies use
// OpenWhisk's {"error": text, "code": transaction id} body and its texts,
// because clients match on them.
//
// Not supported yet (answered with a clear error, not silently ignored):
// packages and package bindings (PUT/POST on packages answer 400, package
// entities 404, package lists are empty), triggers and rules (likewise),
// sequences and blackbox actions (400: only nodejs kinds run here), and
// per-namespace throttling (no 429s).
//
// Trust boundary: untrusted host code. It authenticates callers with Basic
// auth against the store and isolates namespaces, but it sees parameters and
// results in whatever form the client sent them; confidential payloads are
// expected to be encrypted to the enclave before they get here.
package api
