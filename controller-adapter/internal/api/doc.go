// Package api is the controller-adapter's HTTP front door: the OpenWhisk REST
// API as the wsk CLI and the client libraries call it (/api/v1: namespaces,
// actions, invoke, activations, packages), web actions (/api/v1/web/...), the
// controller's invoker health endpoints (/invokers) and the internal
// endpoints the invokers use, guarded by the invoker token: reading an
// action (/internal/v1/actions/..., OpenWhisk's invoker reads the entity
// database) and storing a finished activation record
// (/internal/v1/activations/..., OpenWhisk's invoker writes the activations
// database). That PUT is how every record of an activation an invoker ran gets
// into the store: the controller learns results from acks (see
// controller-adapter/internal/balancer). It writes only what no invoker runs,
// as OpenWhisk's controller does: a sequence's or composition's own record, a
// trigger's activation and the built-in alarms feed's. A read of an activation whose
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
// Packages (packages.go) follow OpenWhisk's entitlements: a namespace is its
// owner's, except that another namespace's published packages (not its
// bindings) are readable, bindable and invocable by everyone, and a denied
// package is a 403 naming it, missing or not, so nothing leaks. An action of
// a package is resolved the way OpenWhisk's controller does it: a binding
// leads to its package, whose parameters the action inherits (package <
// binding < action < request); the message names the package's path and the
// binding. The invokers' read (/internal/v1/actions) takes the resolved path
// as it is. whisk.system, the shared namespace, starts with SystemPackages.
//
// Sequences and conductor actions (sequences.go, conductor.go) run here, in the
// controller, as OpenWhisk's do: each component is an ordinary blocking
// activation published through the same Invoker as any invoke, caused by the
// enclosing activation, whose record (logs: the components' ids) this package
// writes, being the only writer of that id. Creating a sequence checks what
// OpenWhisk checks (components exist and are the caller's to read, at most 50
// atomic actions with nested sequences inlined, no path back to itself).
//
// Triggers and rules (triggers.go, rules.go) are OpenWhisk's: a rule's state
// lives in its trigger; a fire runs each active rule's action non-blocking
// through the invoke path (with the trigger activation as its cause) and
// stores the trigger activation, whose logs hold one outcome line per rule;
// no active rule is a 204. The alarms feed (feeds.go, internal/alarms) is
// built in: its actions' invocations are served by the controller.
//
// Throttling (throttle.go) is OpenWhisk's entitlement throttling per namespace: invocations a
// clock minute and activations in flight (the balancer's count) for every REST and web action
// invocation, trigger fires a minute for a fire (admitFire, the hook the triggers route calls),
// 429 with OpenWhisk's texts; a namespace's own limits travel in its Identity from the store.
// The rest of OpenWhisk's controller surface lives beside it: GET / (info.go), the namespace's
// limits, CORS (cors.go), /metrics without tenant labels (metrics.go) and the OpenAPI document
// (apidocs.go), which TestAPIDocsCoverRoutes keeps equal to the routes.
//
// Not supported yet (answered with a clear error, not silently ignored):
// blackbox actions (400: only nodejs kinds run here).
//
// Trust boundary: untrusted host code. It authenticates callers with Basic
// auth against the store and isolates namespaces, but it sees parameters and
// results in whatever form the client sent them; confidential payloads are
// expected to be encrypted to the enclave before they get here.
package api
