package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/alarms"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/whisk"
)

// Invoker runs activations: *balancer.Balancer in production. Publish
// returns a channel that yields exactly one Completion and must be buffered
// (the API stops listening when a blocking wait expires or the caller goes
// away). It returns balancer.ErrNoInvokers when no invoker is healthy.
type Invoker interface {
	Publish(ctx context.Context, action *whisk.Action, msg *whisk.ActivationMessage) (<-chan balancer.Completion, error)
	Invokers() []balancer.InvokerHealth
	// Storing is balancer.Storing: non-nil while an answered activation's
	// record is being stored by the invoker.
	Storing(ns, id string) <-chan struct{}
	// ActiveActivationsFor is how many activations of namespace ns are in
	// flight (balancer.ActiveActivationsFor): the concurrent-invocations throttle.
	ActiveActivationsFor(ns string) int
}

// Config of the API. Zero values take the defaults noted.
type Config struct {
	// ControllerID is this controller's instance (rootControllerIndex.asString), default "0".
	ControllerID string
	// InvokerToken authenticates invokers writing activation records
	// (header X-Teemate-Invoker-Token). Empty rejects every write.
	InvokerToken string
	// BlockingWait is how long a blocking invoke waits for its result before
	// answering 202 (OpenWhisk's max-wait-for-blocking-activation, default 60 s).
	BlockingWait time.Duration
	// APIHost is the public base URL (e.g. http://localhost:3233). wsk
	// builds the web action URL it prints for action get --url from its own
	// apihost and the action's namespace, so no reply needs it yet; it is
	// kept for replies that will carry absolute URLs (API gateway routes).
	APIHost string
	// EvidencePolicy, when set, is the policy sgx-dcap evidence an invoker publishes must verify
	// under before the controller serves it (nil: only its structure and key binding are
	// checked; clients verify in any case).
	EvidencePolicy *attest.Policy
	// Gate, when set, admits invocations until the controller drains (drain.go).
	Gate *Gate
	// Alarms, when set, serves the built-in alarms feed (feeds.go): New starts its firing loop
	// into this API's trigger fire; its owner stops it (Stop) before closing the store. Without
	// it the feed's actions answer that the feed is not running.
	Alarms *alarms.Scheduler
	// Throttles are the system's limits per namespace (zero fields: OpenWhisk's 60 invocations a
	// minute, 30 concurrent, 60 trigger fires a minute); a namespace's own override them.
	Throttles Throttles
	// AdminPassword guards the operator's routes on invokers (drain, undrain: invokers.go) with
	// Basic auth as user AdminUser. Empty refuses every call.
	AdminPassword string
	// Metrics is the registry the controller's metrics register in and GET /metrics serves (nil:
	// one of its own, with the Go runtime's and the process's collectors).
	Metrics *prometheus.Registry
}

// Limits OpenWhisk applies to request bodies.
const (
	// MaxPayloadBytes bounds an invoke or web action request body
	// (whisk.activation.payload.max).
	MaxPayloadBytes = whisk.PayloadMaxBytes
	// MaxActionBytes bounds an action PUT body: OpenWhisk's 48 MiB code
	// limit plus room for parameters and annotations.
	MaxActionBytes = 50 << 20
	// MaxRecordBytes bounds an activation record an invoker stores: a
	// result up to the payload limit plus up to 10 MiB of logs, JSON-escaped.
	MaxRecordBytes = 32 << 20
	// maxWaitMs is the largest ?timeout= a blocking invoke accepts.
	maxWaitMs = 60000
)

// OpenWhisk's error texts (ErrorResponse.scala Messages, and the default
// messages of the HTTP statuses it terminates with).
const (
	msgNoCredentials      = "The resource requires authentication, which was not supplied with the request"
	msgBadCredentials     = "The supplied authentication is invalid"
	msgNotAuthorized      = "The supplied authentication is not authorized to access this resource."
	msgNotFound           = "The requested resource does not exist."
	msgConflict           = "resource already exists"
	msgUnavailable        = "The server is currently unavailable (because it is overloaded or down for maintenance)."
	msgInternal           = "There was an internal server error."
	msgParamsNotAllowed   = "Request defines parameters that are not allowed (e.g., reserved properties)."
	msgErrorProcessing    = "There was an error processing your request."
	msgResponseNotReady   = "Response not yet ready."
	msgNameIllegal        = "The name of the entity contains illegal characters."
	msgActivationIDBad    = "The activation id is not valid."
	msgDocsWithCount      = "The parameter 'docs' is not permitted with 'count'."
	msgPropertyNotFound   = "Response does not include requested property."
	msgContentTypeMisfit  = "Response type in header did not match generated content type."
	msgUnauthorizedWeb    = "The request has not been applied because it lacks valid authentication credentials for the target resource."
	msgRuleTriggerMissing = "Only rules with existing triggers can be activated"
)

func msgInvalidTimeout() string {
	return fmt.Sprintf("Timeout must be number of milliseconds up to %d.", maxWaitMs)
}

func msgEntityTooBig(field string, is, allowed int64) string {
	return fmt.Sprintf("%s larger than allowed: %d > %d bytes.", field, is, allowed)
}

func msgInvalidMedia(media string) string { return fmt.Sprintf("Response is not valid '%s'.", media) }

type handler struct {
	cfg   Config
	ctrl  whisk.ControllerInstanceID
	store *store.Store
	inv   Invoker
	log   *zap.Logger
	relay *keyRelay // the image key across invokers (keyrelay.go)
	// throttle refuses invocations and trigger fires over the namespace's limits (throttle.go).
	throttle *throttle
	metrics  *controllerMetrics
	// drainer drains invokers (invokers.go); nil when the Invoker cannot.
	drainer Drainer
}

func init() {
	// Debug mode only prints route tables and warnings to stdout.
	gin.SetMode(gin.ReleaseMode)
}

// New builds the HTTP handler.
func New(cfg Config, st *store.Store, inv Invoker, log *zap.Logger) http.Handler {
	if cfg.ControllerID == "" {
		cfg.ControllerID = "0"
	}
	if cfg.BlockingWait <= 0 {
		cfg.BlockingWait = 60 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	drainer, _ := inv.(Drainer) // a test's Invoker may drain nothing: the routes then say so
	if cfg.Gate != nil {
		inv = gatedInvoker{Invoker: inv, gate: cfg.Gate}
	}
	m := newMetrics(cfg.Metrics)
	h := &handler{cfg: cfg, ctrl: whisk.NewControllerInstanceID(cfg.ControllerID), store: st,
		inv: countingInvoker{Invoker: inv, published: m.published}, log: log, relay: newKeyRelay(time.Now), metrics: m, drainer: drainer,
		throttle: newThrottle(cfg.Throttles, inv.ActiveActivationsFor, time.Now, func(l string) { m.throttled.WithLabelValues(l).Inc() })}

	r := gin.New()
	// Paths are OpenWhisk's; never answer with redirects a POST client would not follow.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = false
	r.Use(h.transaction, h.recover, m.observe, h.cors, h.drainGate)
	r.NoRoute(h.noRoute)

	r.GET("/", h.rootInfo)
	r.GET("/ping", func(c *gin.Context) { c.String(http.StatusOK, "pong") })
	r.GET("/ready", h.ready)
	r.GET("/metrics", m.serve())
	r.GET("/invokers", h.invokers)
	r.GET("/invokers/healthy/count", h.invokersHealthyCount)
	r.GET("/invokers/ready", h.invokersReady)
	r.GET("/invokers/:invoker/drain", h.adminAuth, h.drainStatus)
	r.POST("/invokers/:invoker/drain", h.adminAuth, h.drainInvoker)
	r.POST("/invokers/:invoker/undrain", h.adminAuth, h.undrainInvoker)
	r.GET("/api/v1", h.info)
	r.GET("/api/v1/api-docs", h.apiDocs)
	r.GET("/api/v1/namespaces", h.authenticate, h.listNamespaces)
	r.Any("/api/v1/namespaces/:ns/*rest", h.authenticate, h.namespaceRoutes)
	r.Any("/api/v1/web/*path", h.web)
	// The invokers' endpoints: every one needs the invoker token (see internalAuth).
	internal := r.Group("/internal", h.internalAuth)
	internal.PUT("/v1/activations/:ns/:id", h.putActivation)
	internal.GET("/v1/activations/:ns/:id/content", h.getContent)
	internal.GET("/v1/actions/:ns/*entity", h.internalGetAction)
	internal.PUT("/v1/evidence/:image", h.putEvidence)
	internal.GET("/v1/evidence/:image", h.getInternalEvidence)
	internal.POST("/v1/keys/requests", h.postKeyRequest)
	internal.GET("/v1/keys/requests", h.pollKeyRequests)
	internal.PUT("/v1/keys/requests/:id", h.answerKeyRequest)
	internal.GET("/v1/keys/requests/:id", h.awaitKeyOffer)
	internal.GET("/v1/prepare", h.pollPrepare)
	r.GET("/api/v1/teemate/evidence", h.authenticate, h.getEvidence)
	if cfg.Alarms != nil {
		if err := cfg.Alarms.Start(alarmTarget{h}); err != nil {
			log.Error("alarms feed not started", zap.Error(err))
		}
	}
	return r
}

// Context keys.
const (
	keyTransID  = "teemate.transid"
	keyIdentity = "teemate.identity"
)

// transaction assigns the request's transaction id (X-Request-ID when a
// proxy set a sane one, as OpenWhisk takes nginx's, otherwise a random one)
// and logs the request when it is done.
func (h *handler) transaction(c *gin.Context) {
	start := time.Now()
	tid := whisk.NewRandomTransactionID(start)
	if rid := c.GetHeader("X-Request-ID"); validRequestID(rid) {
		tid = whisk.NewTransactionID(rid, start)
	}
	c.Set(keyTransID, tid)
	c.Next()
	h.log.Debug("request",
		zap.String("transid", tid.ID),
		zap.String("method", c.Request.Method),
		zap.String("path", c.Request.URL.Path),
		zap.Int("status", c.Writer.Status()),
		zap.Duration("elapsed", time.Since(start)))
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// recover turns a panic in a handler into a 500 with OpenWhisk's body; the
// process keeps serving.
func (h *handler) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("handler panic", zap.String("transid", tid(c).ID), zap.Any("panic", p),
				zap.String("path", c.Request.URL.Path), zap.Stack("stack"))
			if !c.Writer.Written() {
				h.fail(c, http.StatusInternalServerError, msgInternal)
			}
			c.Abort()
		}
	}()
	c.Next()
}

func tid(c *gin.Context) whisk.TransactionID {
	if v, ok := c.Get(keyTransID); ok {
		return v.(whisk.TransactionID)
	}
	return whisk.TransactionID{}
}

func identityOf(c *gin.Context) whisk.Identity {
	v, _ := c.Get(keyIdentity)
	id, _ := v.(whisk.Identity)
	return id
}

// fail writes OpenWhisk's error body and stops the handler chain.
func (h *handler) fail(c *gin.Context, status int, msg string) {
	writeJSON(c, status, errorBody{Error: msg, Code: tid(c).ID})
	c.Abort()
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// internalError logs err with the transaction id and answers 500.
func (h *handler) internalError(c *gin.Context, what string, err error) {
	h.log.Error(what, zap.String("transid", tid(c).ID), zap.Error(err))
	h.fail(c, http.StatusInternalServerError, msgInternal)
}

// writeJSON writes v as JSON without HTML escaping (as spray-json does), so
// results containing <, > or & come back byte for byte.
func writeJSON(c *gin.Context, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		// Only values built by this package get here; a failure is a bug. The
		// fallback, two strings, always encodes, so its error is not looked at.
		b, _ = marshal(errorBody{Error: msgInternal, Code: tid(c).ID})
		status = http.StatusInternalServerError
	}
	c.Data(status, "application/json", b)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

var errTooLarge = errors.New("request body too large")

// readBody reads at most limit bytes of the request body; a longer body
// gives errTooLarge (the caller answers 413) together with its size when
// the client declared it.
func readBody(c *gin.Context, limit int64) ([]byte, int64, error) {
	if cl := c.Request.ContentLength; cl > limit {
		return nil, cl, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, limit+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, int64(len(b)), errTooLarge
	}
	return b, int64(len(b)), nil
}

// readBodyOrFail reads the body and answers 413/400 itself on failure.
func (h *handler) readBodyOrFail(c *gin.Context, limit int64) ([]byte, bool) {
	b, n, err := readBody(c, limit)
	switch {
	case errors.Is(err, errTooLarge):
		h.fail(c, http.StatusRequestEntityTooLarge, msgEntityTooBig("Request", n, limit))
		return nil, false
	case err != nil:
		h.fail(c, http.StatusBadRequest, "Failed extracting request body.")
		return nil, false
	}
	return b, true
}

// info is GET /api/v1, what wsk property get shows.
func (h *handler) info(c *gin.Context) {
	writeJSON(c, http.StatusOK, map[string]any{
		"description":      "OpenWhisk API",
		"api_version":      "1.0.0",
		"api_version_path": "v1",
		"build":            "teemate",
		"buildno":          "teemate",
		"swagger_paths": map[string]string{
			"ui":       "/docs",
			"api-docs": "/api/v1/api-docs",
		},
	})
}

// invokers is GET /invokers: {"invoker0/0": "up", ...}; an up invoker an operator drains shows
// "draining", then "drained".
func (h *handler) invokers(c *gin.Context) {
	out := map[string]string{}
	for _, inv := range h.inv.Invokers() {
		out[inv.Name] = inv.State
		if inv.Drain != "" && inv.State == "up" {
			out[inv.Name] = inv.Drain
		}
	}
	writeJSON(c, http.StatusOK, out)
}

func (h *handler) healthy() int {
	n := 0
	for _, inv := range h.inv.Invokers() {
		if inv.State == "up" {
			n++
		}
	}
	return n
}

func (h *handler) invokersHealthyCount(c *gin.Context) {
	writeJSON(c, http.StatusOK, h.healthy())
}

// invokersReady answers 200 when at least one invoker is healthy, else 503.
func (h *handler) invokersReady(c *gin.Context) {
	n, total := h.healthy(), len(h.inv.Invokers())
	status := http.StatusOK
	if n == 0 {
		status = http.StatusServiceUnavailable
	}
	writeJSON(c, status, map[string]string{fmt.Sprintf("healthy %d/%d", n, total): map[bool]string{true: "ready", false: "notready"}[n > 0]})
}

// namespaceRoutes dispatches /api/v1/namespaces/{ns}/{collection}/... after
// resolving {ns} for the authenticated identity. Only the owner of a namespace
// reaches it, except where OpenWhisk shares: the packages collection and the
// actions of a package (their handlers check the package's entitlement).
func (h *handler) namespaceRoutes(c *gin.Context) {
	ns, ok := h.resolveNamespaceName(c, c.Param("ns"))
	if !ok {
		return
	}
	rest := strings.TrimPrefix(c.Param("rest"), "/")
	collection, entity, _ := strings.Cut(rest, "/")
	m := c.Request.Method
	// GET .../actions/{pkg}/ lists the package's actions; elsewhere a trailing slash is ignored.
	pkgList := collection == "actions" && m == http.MethodGet && strings.HasSuffix(entity, "/") &&
		strings.Count(entity, "/") == 1 && entity != "/"
	entity = strings.Trim(entity, "/")
	shared := collection == "packages" || collection == "actions" && (pkgList || strings.Contains(entity, "/"))
	if !shared && ns != identityOf(c).Namespace.Name {
		h.fail(c, http.StatusForbidden, msgNotAuthorized)
		return
	}
	switch collection {
	case "actions":
		switch {
		case pkgList:
			h.listPackageActions(c, ns, entity)
		case entity == "" && m == http.MethodGet:
			h.listActions(c, ns)
		case entity == "":
			h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET")
		case m == http.MethodGet:
			h.getAction(c, ns, entity)
		case m == http.MethodPut:
			h.putAction(c, ns, entity)
		case m == http.MethodDelete:
			h.deleteAction(c, ns, entity)
		case m == http.MethodPost:
			h.invoke(c, ns, entity)
		default:
			h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET, PUT, DELETE, POST")
		}
	case "packages":
		h.packageRoutes(c, ns, entity)
	case "activations":
		if m != http.MethodGet {
			h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET")
			return
		}
		h.activations(c, ns, entity)
	case "limits":
		h.namespaceLimits(c, entity)
	case "triggers":
		h.triggerRoutes(c, ns, entity)
	case "rules":
		h.ruleRoutes(c, ns, entity)
	default:
		h.noRoute(c)
	}
}
