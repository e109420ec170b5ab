package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// authenticate checks Basic auth ("uuid:key") against the store and puts the
// identity in the context. Without credentials the answer is 401 with a
// Basic challenge, as OpenWhisk's akka-http directive gives.
func (h *handler) authenticate(c *gin.Context) {
	uuid, key, ok := c.Request.BasicAuth()
	if !ok {
		c.Header("WWW-Authenticate", `Basic realm="whisk rest service"`)
		h.fail(c, http.StatusUnauthorized, msgNoCredentials)
		return
	}
	id, err := h.store.Authenticate(c.Request.Context(), uuid, key)
	switch {
	case errors.Is(err, store.ErrUnauthorized):
		h.fail(c, http.StatusUnauthorized, msgBadCredentials)
		return
	case err != nil:
		h.internalError(c, "authenticate", err)
		return
	}
	c.Set(keyIdentity, id)
	c.Next()
}

// optionalIdentity returns the identity of a valid Basic auth header, if
// any (web actions: __ow_user and require-whisk-auth true).
func (h *handler) optionalIdentity(c *gin.Context) (whisk.Identity, bool, error) {
	uuid, key, ok := c.Request.BasicAuth()
	if !ok {
		return whisk.Identity{}, false, nil
	}
	id, err := h.store.Authenticate(c.Request.Context(), uuid, key)
	switch {
	case errors.Is(err, store.ErrUnauthorized):
		return whisk.Identity{}, false, nil
	case err != nil:
		return whisk.Identity{}, false, err
	}
	return id, true, nil
}

// resolveNamespaceName maps "_" to the caller's namespace and checks the name.
// Whether the caller may use another namespace than its own is the route's
// decision (OpenWhisk's entitlement: its own, and the public packages of others).
func (h *handler) resolveNamespaceName(c *gin.Context, ns string) (string, bool) {
	if ns == "_" {
		return identityOf(c).Namespace.Name, true
	}
	if !whisk.ValidEntityName(ns) {
		h.fail(c, http.StatusBadRequest, "The namespace contains illegal characters.")
		return "", false
	}
	return ns, true
}

// listNamespaces is GET /api/v1/namespaces.
func (h *handler) listNamespaces(c *gin.Context) {
	nss, err := h.store.ListNamespaces(c.Request.Context(), identityOf(c))
	if err != nil {
		h.internalError(c, "list namespaces", err)
		return
	}
	writeJSON(c, http.StatusOK, nss)
}

// invokerTokenHeader carries the invoker token (whiskapi.TokenHeader on the
// invoker's side).
const invokerTokenHeader = "X-Teemate-Invoker-Token"

// internalAuth guards every /internal route with the invoker token. A
// missing or wrong token gets the same 401 as a wrong API key, before
// anything of the request is read, so a caller learns nothing (not even
// whether the activation or action exists).
func (h *handler) internalAuth(c *gin.Context) {
	if !tokenOK(h.cfg.InvokerToken, c.GetHeader(invokerTokenHeader)) {
		h.fail(c, http.StatusUnauthorized, msgBadCredentials)
		return
	}
	c.Next()
}

// internalGetAction is GET /internal/v1/actions/{ns}/{[pkg/]name}: an
// invoker reads the action of an activation message that carries no user
// key (the key is sent only to actions with provide-api-key).
func (h *handler) internalGetAction(c *gin.Context) {
	ns := c.Param("ns")
	if !whisk.ValidEntityName(ns) {
		h.fail(c, http.StatusBadRequest, "The namespace contains illegal characters.")
		return
	}
	// The message names the action by its resolved path: read that document as it is, with no
	// package or binding resolution and no caller to check.
	a, ok := h.loadAction(c, ns, strings.TrimPrefix(c.Param("entity"), "/"))
	if !ok {
		return
	}
	h.writeAction(c, a)
}

// tokenOK compares an invoker token in constant time; an unset token
// accepts nothing.
func tokenOK(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
