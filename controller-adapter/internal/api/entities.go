package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/invoker/whisk"
)

// entityHandlers are one collection's operations (packages, triggers, rules): list on the
// collection, the others on one entity by name. A nil post means the collection has no POST.
type entityHandlers struct {
	list          func(c *gin.Context, ns string)
	get, put, del func(c *gin.Context, ns, name string)
	post          func(c *gin.Context, ns, name string)
}

// entityRoutes dispatches /namespaces/{ns}/{collection}[/{name}] to hs, answering OpenWhisk's
// errors for a method the collection or entity does not take and for an illegal name.
func (h *handler) entityRoutes(c *gin.Context, ns, entity string, hs entityHandlers) {
	m := c.Request.Method
	switch {
	case entity == "" && m == http.MethodGet:
		hs.list(c, ns)
		return
	case entity == "":
		h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET")
		return
	case !whisk.ValidEntityName(entity):
		h.fail(c, http.StatusBadRequest, msgNameIllegal)
		return
	}
	switch {
	case m == http.MethodGet:
		hs.get(c, ns, entity)
	case m == http.MethodPut:
		hs.put(c, ns, entity)
	case m == http.MethodDelete:
		hs.del(c, ns, entity)
	case m == http.MethodPost && hs.post != nil:
		hs.post(c, ns, entity)
	case hs.post != nil:
		h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET, PUT, DELETE, POST")
	default:
		h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET, PUT, DELETE")
	}
}
