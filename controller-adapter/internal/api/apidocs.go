package api

import (
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// apiOperation is one operation of the API document: a route template as routeLabel writes it,
// a method, whether it needs a key (Basic auth), and what it does.
type apiOperation struct {
	method, path string
	auth         bool
	summary      string
}

// apiOperations are every route the controller serves to clients (the invokers' /internal ones
// aside). TestAPIDocsCoverRoutes fails when a route is missing here or one listed here is not
// served.
var apiOperations = []apiOperation{
	{"GET", "/", false, "Platform information: API paths, system limits and runtimes"},
	{"GET", "/ping", false, "Liveness: answers pong"},
	{"GET", "/metrics", false, "Prometheus metrics of the controller (no tenant names in labels)"},
	{"GET", "/ready", false, "Readiness: 200 while the controller takes invocations, 503 while it drains"},
	{"GET", "/invokers", false, "Invokers and their health states"},
	{"GET", "/invokers/healthy/count", false, "Number of healthy invokers"},
	{"GET", "/invokers/ready", false, "200 when an invoker is healthy, else 503"},
	{"GET", "/invokers/{invoker}/drain", true, "An invoker's drain: images moved, pending, activations in flight (the operator's admin password)"},
	{"POST", "/invokers/{invoker}/drain", true, `Drain an invoker: {"to": N, "force": bool}; each image moves once another invoker has it warm and keyed (admin password)`},
	{"POST", "/invokers/{invoker}/undrain", true, "End an invoker's drain (admin password)"},
	{"GET", "/api/v1", false, "API version information"},
	{"GET", "/api/v1/api-docs", false, "This document"},
	{"GET", "/api/v1/namespaces", true, "Namespaces of the caller"},
	{"GET", "/api/v1/teemate/evidence", true, "Evidence of the enclave of an action's image (sealed invocations)"},

	{"GET", namespaceRoutePrefix + "actions", true, "List actions (limit, skip, count)"},
	{"GET", namespaceRoutePrefix + "actions/{name}", true, "Get an action"},
	{"PUT", namespaceRoutePrefix + "actions/{name}", true, "Create or update (overwrite=true) an action"},
	{"DELETE", namespaceRoutePrefix + "actions/{name}", true, "Delete an action"},
	{"POST", namespaceRoutePrefix + "actions/{name}", true, "Invoke an action (blocking, result, timeout)"},
	{"GET", namespaceRoutePrefix + "actions/{package}/", true, "List the actions of a package (limit, skip, count)"},
	{"GET", namespaceRoutePrefix + "actions/{package}/{name}", true, "Get an action of a package"},
	{"PUT", namespaceRoutePrefix + "actions/{package}/{name}", true, "Create or update an action of a package"},
	{"DELETE", namespaceRoutePrefix + "actions/{package}/{name}", true, "Delete an action of a package"},
	{"POST", namespaceRoutePrefix + "actions/{package}/{name}", true, "Invoke an action of a package or binding"},

	{"GET", namespaceRoutePrefix + "packages", true, "List packages (limit, skip, count)"},
	{"GET", namespaceRoutePrefix + "packages/{name}", true, "Get a package with its actions"},
	{"PUT", namespaceRoutePrefix + "packages/{name}", true, "Create or update a package or binding"},
	{"DELETE", namespaceRoutePrefix + "packages/{name}", true, "Delete a package (force=true with its actions)"},

	{"GET", namespaceRoutePrefix + "activations", true, "List activations (name, since, upto, limit, skip, docs, count)"},
	{"GET", namespaceRoutePrefix + "activations/{activationid}", true, "Get an activation"},
	{"GET", namespaceRoutePrefix + "activations/{activationid}/logs", true, "Get an activation's logs"},
	{"GET", namespaceRoutePrefix + "activations/{activationid}/result", true, "Get an activation's result"},

	{"GET", namespaceRoutePrefix + "triggers", true, "List triggers (limit, skip, count)"},
	{"GET", namespaceRoutePrefix + "triggers/{name}", true, "Get a trigger"},
	{"PUT", namespaceRoutePrefix + "triggers/{name}", true, "Create or update a trigger"},
	{"DELETE", namespaceRoutePrefix + "triggers/{name}", true, "Delete a trigger"},
	{"POST", namespaceRoutePrefix + "triggers/{name}", true, "Fire a trigger"},

	{"GET", namespaceRoutePrefix + "rules", true, "List rules (limit, skip, count)"},
	{"GET", namespaceRoutePrefix + "rules/{name}", true, "Get a rule"},
	{"PUT", namespaceRoutePrefix + "rules/{name}", true, "Create or update a rule"},
	{"DELETE", namespaceRoutePrefix + "rules/{name}", true, "Delete a rule"},
	{"POST", namespaceRoutePrefix + "rules/{name}", true, "Enable or disable a rule"},

	{"GET", namespaceRoutePrefix + "limits", true, "The namespace's limits"},

	{"GET", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action (any method; .json, .html, .text, .svg, .http extensions)"},
	{"POST", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action"},
	{"PUT", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action"},
	{"DELETE", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action"},
	{"PATCH", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action"},
	{"OPTIONS", "/api/v1/web/{namespace}/{package}/{action}", false, "Web action preflight (CORS) unless web-custom-options"},
}

var (
	apiDocOnce sync.Once
	apiDocJSON []byte
	apiDocErr  error
)

// apiDocument is the OpenAPI 3 document of apiOperations.
func apiDocument() ([]byte, error) {
	apiDocOnce.Do(func() {
		paths := map[string]map[string]any{}
		for _, op := range apiOperations {
			item := paths[op.path]
			if item == nil {
				item = map[string]any{}
				paths[op.path] = item
			}
			o := map[string]any{
				"summary":   op.summary,
				"responses": map[string]any{"default": map[string]any{"description": "OpenWhisk's answer; errors are {\"error\": text, \"code\": transaction id}"}},
			}
			if op.auth {
				o["security"] = []map[string][]string{{"basicAuth": {}}}
			} else {
				o["security"] = []map[string][]string{}
			}
			if params := pathParams(op.path); len(params) > 0 {
				o["parameters"] = params
			}
			item[strings.ToLower(op.method)] = o
		}
		apiDocJSON, apiDocErr = marshal(map[string]any{
			"openapi": "3.0.3",
			"info": map[string]any{
				"title":   "OpenWhisk API (TeeMate platform)",
				"version": "1.0.0",
				"description": "The OpenWhisk REST API as this controller serves it. Keys are OpenWhisk's uuid:key, " +
					"sent with Basic auth; {namespace} may be _ for the caller's own.",
			},
			"servers":    []map[string]string{{"url": "/"}},
			"paths":      paths,
			"components": map[string]any{"securitySchemes": map[string]any{"basicAuth": map[string]string{"type": "http", "scheme": "basic"}}},
		})
	})
	return apiDocJSON, apiDocErr
}

// pathParams are the OpenAPI parameters of a route template's {placeholders}, in order.
func pathParams(path string) []map[string]any {
	var out []map[string]any
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, map[string]any{"name": seg[1 : len(seg)-1], "in": "path", "required": true,
				"schema": map[string]string{"type": "string"}})
		}
	}
	return out
}

// apiDocs is GET /api/v1/api-docs.
func (h *handler) apiDocs(c *gin.Context) {
	b, err := apiDocument()
	if err != nil {
		h.internalError(c, "api document", err)
		return
	}
	c.Data(http.StatusOK, "application/json", b)
}
