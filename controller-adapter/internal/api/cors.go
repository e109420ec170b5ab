package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// OpenWhisk's CORS headers (CorsSettings): the REST API's, and the controller's own routes'
// (/invokers...). Web actions send their own (web.go).
const (
	corsAllowOrigin      = "*"
	corsAllowHeaders     = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
	corsRESTMethods      = "GET, DELETE, POST, PUT, HEAD"
	corsControllerMethod = "OPTIONS, GET, POST"
)

// cors does what OpenWhisk's controller does: every answer under /api/v1 (web actions aside)
// carries the REST API's CORS headers, and a preflight (OPTIONS) anywhere is answered 200 with
// them, before and without authentication, so that a browser application can call the API with
// its key. The controller's own routes (/invokers...) carry the controller's headers. The
// invokers' /internal endpoints and the web actions are left alone: the first take no browser
// calls, the second answer OPTIONS by their action's rules.
func (h *handler) cors(c *gin.Context) {
	p := c.Request.URL.Path
	var methods string
	switch {
	case p == "/api/v1/web" || strings.HasPrefix(p, "/api/v1/web/") || p == "/internal" || strings.HasPrefix(p, "/internal/"):
		c.Next()
		return
	case p == "/api/v1" || strings.HasPrefix(p, "/api/v1/"):
		methods = corsRESTMethods
	case strings.HasPrefix(p, "/invokers") || c.Request.Method == http.MethodOptions:
		methods = corsControllerMethod
	default:
		c.Next()
		return
	}
	hdr := c.Writer.Header()
	hdr.Set("Access-Control-Allow-Origin", corsAllowOrigin)
	hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	hdr.Set("Access-Control-Allow-Methods", methods)
	if c.Request.Method == http.MethodOptions {
		// OpenWhisk's complete(OK): 200 with the status's text.
		c.Data(http.StatusOK, "text/plain; charset=UTF-8", []byte(http.StatusText(http.StatusOK)))
		c.Abort()
		return
	}
	c.Next()
}
