package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/whisk"
)

// routeUnmatched is the route label of a request no route serves (404 from the router, 405).
const routeUnmatched = "unmatched"

// keyUnrouted marks a request the router did not serve (noRoute).
const keyUnrouted = "teemate.unrouted"

// controllerMetrics are the controller's Prometheus metrics, served on GET /metrics without
// authentication, as OpenWhisk's controller serves its own when enabled. No label names a
// namespace, an action or an activation: a route label is the route's template
// (/api/v1/namespaces/{namespace}/actions/{name}), so anyone may scrape them and learn the volume
// of requests per route, not who made them.
type controllerMetrics struct {
	registry  prometheus.Gatherer
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	published *prometheus.CounterVec
	throttled *prometheus.CounterVec
}

// newMetrics registers the controller's collectors in reg; nil makes a registry of its own with
// the Go runtime's and the process's collectors.
func newMetrics(reg *prometheus.Registry) *controllerMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "teemate", Subsystem: "controller", Name: name, Help: help}
	}
	m := &controllerMetrics{
		registry: reg,
		requests: prometheus.NewCounterVec(opts("http_requests_total", "REST API requests answered, by method, route template and status code."),
			[]string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "teemate", Subsystem: "controller",
			Name: "http_request_duration_seconds", Help: "Time to answer a REST API request, by method and route template.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"method", "route"}),
		published: prometheus.NewCounterVec(opts("activations_published_total", "Activations published to an invoker, by blocking."),
			[]string{"blocking"}),
		throttled: prometheus.NewCounterVec(opts("throttled_total", "Invocations and trigger fires refused with 429, by the limit that refused them."),
			[]string{"limit"}),
	}
	reg.MustRegister(m.requests, m.latency, m.published, m.throttled)
	return m
}

// observe records every request's route, status and duration.
func (m *controllerMetrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := routeLabel(c)
	m.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
	m.latency.WithLabelValues(c.Request.Method, route).Observe(time.Since(start).Seconds())
}

// serve is GET /metrics.
func (m *controllerMetrics) serve() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}

// countingInvoker counts the activations published through it.
type countingInvoker struct {
	Invoker
	published *prometheus.CounterVec
}

func (ci countingInvoker) Publish(ctx context.Context, a *whisk.Action, msg *whisk.ActivationMessage) (<-chan balancer.Completion, error) {
	ch, err := ci.Invoker.Publish(ctx, a, msg)
	if err == nil {
		ci.published.WithLabelValues(strconv.FormatBool(msg.Blocking)).Inc()
	}
	return ch, err
}

// noRoute answers a request no route serves: 404 with OpenWhisk's text, marked for the metrics
// (and the API document's coverage test) as unmatched.
func (h *handler) noRoute(c *gin.Context) {
	c.Set(keyUnrouted, true)
	h.fail(c, http.StatusNotFound, msgNotFound)
}

// namespaceRoutePrefix is the template of every /api/v1/namespaces/{ns}/... route.
const namespaceRoutePrefix = "/api/v1/namespaces/{namespace}/"

// routeLabel is the template of the route that served c, as the API document writes it
// (apidocs.go), or routeUnmatched. The router's own routes give theirs (":x" and "*x" written
// "{x}"); the routes namespaceRoutes dispatches are read from the path the way it reads them.
func routeLabel(c *gin.Context) string {
	if c.GetBool(keyUnrouted) || c.Writer.Status() == http.StatusMethodNotAllowed {
		return routeUnmatched
	}
	switch fp := c.FullPath(); fp {
	case "":
		return routeUnmatched
	case "/api/v1/namespaces/:ns/*rest":
		return namespaceRouteLabel(c.Request.Method, c.Param("rest"))
	case "/api/v1/web/*path":
		return "/api/v1/web/{namespace}/{package}/{action}"
	default:
		parts := strings.Split(fp, "/")
		for i, p := range parts {
			if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
				parts[i] = "{" + p[1:] + "}"
			}
		}
		return strings.Join(parts, "/")
	}
}

// namespaceRouteLabel is the template of /api/v1/namespaces/{ns}{rest}.
func namespaceRouteLabel(method, rest string) string {
	rest = strings.TrimPrefix(rest, "/")
	collection, entity, _ := strings.Cut(rest, "/")
	if collection == "" {
		return routeUnmatched
	}
	base := namespaceRoutePrefix + collection
	switch {
	case collection == "actions" && method == http.MethodGet && strings.HasSuffix(entity, "/") &&
		strings.Count(entity, "/") == 1 && entity != "/":
		return base + "/{package}/"
	case collection == "activations":
		id, sub, _ := strings.Cut(strings.Trim(entity, "/"), "/")
		switch {
		case id == "":
			return base
		case sub == "":
			return base + "/{activationid}"
		case sub == "logs" || sub == "result":
			return base + "/{activationid}/" + sub
		}
		return routeUnmatched
	}
	entity = strings.Trim(entity, "/")
	switch {
	case entity == "":
		return base
	case collection == "actions" && strings.Count(entity, "/") == 1:
		return base + "/{package}/{name}"
	case strings.Contains(entity, "/") || collection == "limits":
		// Not a route's shape: the handler refuses the name (400).
		return routeUnmatched
	}
	return base + "/{name}"
}
