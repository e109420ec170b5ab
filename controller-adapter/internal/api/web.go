package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// Web action media extensions; .http is the default.
var webExtensions = map[string]bool{"http": true, "json": true, "html": true, "svg": true, "text": true}

// webTarget is a parsed /api/v1/web/{ns}/{pkg}/{action}[.ext][/path].
type webTarget struct {
	Namespace string
	Package   string // "" for the default package
	Action    string
	Ext       string
	Path      string // the rest after the action segment, "" or "/a/b"
}

// parseWebPath splits the path after /api/v1/web. An unknown extension is
// part of the action name (names may contain dots).
func parseWebPath(p string) (webTarget, bool) {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 3 || segs[0] == "" || segs[1] == "" || segs[2] == "" {
		return webTarget{}, false
	}
	t := webTarget{Namespace: segs[0], Package: segs[1], Action: segs[2], Ext: "http"}
	if t.Package == "default" {
		t.Package = ""
	}
	if i := strings.LastIndexByte(t.Action, '.'); i > 0 && webExtensions[t.Action[i+1:]] {
		t.Action, t.Ext = t.Action[:i], t.Action[i+1:]
	}
	if len(segs) > 3 {
		t.Path = "/" + strings.Join(segs[3:], "/")
	}
	return t, true
}

// webRequest is what a web action sees of the HTTP request.
type webRequest struct {
	Method      string            // lower case
	Headers     map[string]string // lower-case names
	Path        string
	Query       url.Values
	RawQuery    string
	ContentType string
	Body        []byte
	User        string // the caller's namespace when valid Basic auth was sent
}

// mediaType is the lower-case media type of a Content-Type value.
func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
	}
	return strings.ToLower(strings.TrimSpace(mt))
}

func isJSONType(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

// isTextType reports whether a body of media type mt is text (passed as a
// string) rather than binary (passed as base64).
func isTextType(mt string, body []byte) bool {
	switch {
	case mt == "":
		return utf8.Valid(body)
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+xml"),
		mt == "application/xml", mt == "application/javascript", mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

// isBinaryType reports whether a string body of this type in an .http
// result is base64 to decode.
func isBinaryType(mt string) bool {
	switch {
	case strings.HasPrefix(mt, "image/") && mt != "image/svg+xml",
		strings.HasPrefix(mt, "audio/"), strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "font/"),
		mt == "application/octet-stream", mt == "application/pdf", mt == "application/zip", mt == "application/gzip":
		return true
	}
	return false
}

func jsonString(s string) json.RawMessage {
	b, _ := marshal(s) // encoding a string cannot fail
	return b
}

// webParams builds the parameters a web action receives on top of its own:
// the __ow_* context and, in normal mode, the query and body; in raw-http
// mode the raw query and body. A request may not set __ow_* parameters or
// override final parameters.
func webParams(a *whisk.Action, r webRequest, raw bool) (map[string]json.RawMessage, error) {
	client := map[string]json.RawMessage{} // parameters named by the request itself
	owBody := json.RawMessage(nil)
	mt := mediaType(r.ContentType)
	if raw {
		switch {
		case len(r.Body) == 0:
			owBody = jsonString("")
		case !isJSONType(mt) && isTextType(mt, r.Body):
			owBody = jsonString(string(r.Body))
		default:
			owBody = jsonString(base64.StdEncoding.EncodeToString(r.Body))
		}
	} else {
		for k, vs := range r.Query {
			if len(vs) > 0 {
				client[k] = jsonString(vs[0])
			}
		}
		if body := bytes.TrimSpace(r.Body); len(body) > 0 {
			switch {
			case isJSONType(mt):
				if !json.Valid(body) {
					return nil, badRequest("The request content was malformed: the body is not valid JSON.")
				}
				if body[0] != '{' {
					owBody = json.RawMessage(body)
					break
				}
				var m map[string]json.RawMessage
				if err := json.Unmarshal(body, &m); err != nil {
					return nil, badRequest("The request content was malformed: " + jsonErrorText(err))
				}
				for k, v := range m {
					client[k] = v
				}
			case mt == "application/x-www-form-urlencoded":
				form, err := url.ParseQuery(string(body))
				if err != nil {
					return nil, badRequest("The request content was malformed: the form body cannot be parsed.")
				}
				for k, vs := range form {
					if len(vs) > 0 {
						client[k] = jsonString(vs[0])
					}
				}
			case isTextType(mt, r.Body):
				owBody = jsonString(string(r.Body))
			default:
				owBody = jsonString(base64.StdEncoding.EncodeToString(r.Body))
			}
		}
	}
	for k := range client {
		if strings.HasPrefix(k, "__ow_") {
			return nil, badRequest(msgParamsNotAllowed)
		}
	}
	if finalViolation(a, client) {
		return nil, badRequest(msgParamsNotAllowed)
	}
	headers, err := marshal(r.Headers)
	if err != nil {
		return nil, fmt.Errorf("encode headers: %w", err)
	}
	p := client
	p["__ow_method"] = jsonString(r.Method)
	p["__ow_headers"] = headers
	p["__ow_path"] = jsonString(r.Path)
	if r.User != "" {
		p["__ow_user"] = jsonString(r.User)
	}
	if raw {
		p["__ow_query"] = jsonString(r.RawQuery)
	}
	if owBody != nil {
		p["__ow_body"] = owBody
	}
	return p, nil
}

// webOutcome turns the activation into the value the extension renders:
// the whole result on success, the value of "error" on an application
// error; developer and whisk errors are not rendered (400).
func webOutcome(a *whisk.WhiskActivation) (json.RawMessage, error) {
	switch a.Response.StatusCode {
	case whisk.StatusSuccess:
		if len(bytes.TrimSpace(a.Response.Result)) == 0 {
			return json.RawMessage("{}"), nil
		}
		return a.Response.Result, nil
	case whisk.StatusApplicationError:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(a.Response.Result, &m); err == nil {
			if v, ok := m["error"]; ok {
				return v, nil
			}
		}
		return a.Response.Result, nil
	}
	return nil, badRequest(msgErrorProcessing)
}

// webReply is an HTTP reply computed from a web action's result.
type webReply struct {
	Status int
	Header http.Header
	Body   []byte
}

// project follows path segments into nested objects (.json/a/b).
func project(v json.RawMessage, path string) (json.RawMessage, error) {
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if seg == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil || m == nil {
			return nil, badRequest(msgPropertyNotFound)
		}
		next, ok := m[seg]
		if !ok {
			return nil, badRequest(msgPropertyNotFound)
		}
		v = next
	}
	return v, nil
}

// webResponse renders a web action's value for the extension.
func webResponse(ext string, v json.RawMessage, path string) (webReply, error) {
	if ext == "http" {
		return httpResponse(v)
	}
	v, err := project(v, path)
	if err != nil {
		return webReply{}, err
	}
	switch ext {
	case "json":
		return webReply{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: bytes.TrimSpace(v)}, nil
	case "html":
		return textReply(v, []string{"html", "body"}, "text/html; charset=UTF-8", "text/html")
	case "svg":
		return textReply(v, []string{"svg", "body"}, "image/svg+xml", "image/svg+xml")
	case "text":
		return textReply(v, []string{"text", "body"}, "text/plain; charset=UTF-8", "text/plain")
	}
	return webReply{}, badRequest(fmt.Sprintf("Extension must be specified and one of [.http, .json, .html, .svg, .text]: %s", ext))
}

// textReply renders a string value, or the first string field of an object
// among fields.
func textReply(v json.RawMessage, fields []string, contentType, media string) (webReply, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var m map[string]json.RawMessage
		found := false
		if json.Unmarshal(v, &m) == nil {
			for _, f := range fields {
				if fv, ok := m[f]; ok && json.Unmarshal(fv, &s) == nil {
					found = true
					break
				}
			}
		}
		if !found {
			return webReply{}, badRequest(msgInvalidMedia(media))
		}
	}
	return webReply{Status: http.StatusOK, Header: http.Header{"Content-Type": {contentType}}, Body: []byte(s)}, nil
}

// httpResponse renders an .http result {statusCode?, headers?, body?}.
func httpResponse(v json.RawMessage) (webReply, error) {
	invalid := badRequest(msgInvalidMedia("message/http"))
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil || m == nil {
		return webReply{}, invalid
	}
	out := webReply{Header: http.Header{}}
	if hv, ok := m["headers"]; ok && !isNullJSON(hv) {
		var hs map[string]json.RawMessage
		if err := json.Unmarshal(hv, &hs); err != nil {
			return webReply{}, invalid
		}
		names := make([]string, 0, len(hs))
		for k := range hs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			vals, ok := headerValues(hs[k])
			if !ok || !validHeaderName(k) {
				return webReply{}, invalid
			}
			for _, s := range vals {
				out.Header.Add(k, s)
			}
		}
	}
	status := 0
	if sv, ok := m["statusCode"]; ok && !isNullJSON(sv) {
		n, ok := statusCode(sv)
		if !ok {
			return webReply{}, invalid
		}
		status = n
	}
	body, hasBody := m["body"]
	hasBody = hasBody && !isNullJSON(body)
	ct := out.Header.Get("Content-Type")
	mt := mediaType(ct)
	if hasBody {
		var s string
		if err := json.Unmarshal(body, &s); err == nil {
			switch {
			case ct == "":
				out.Header.Set("Content-Type", "text/html; charset=UTF-8")
				out.Body = []byte(s)
			case isBinaryType(mt):
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return webReply{}, invalid
				}
				out.Body = b
			case isJSONType(mt):
				// A JSON-family body given as base64 is decoded when it
				// decodes to JSON; otherwise it is sent as written.
				if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(s) > 0 && json.Valid(b) {
					out.Body = b
				} else {
					out.Body = []byte(s)
				}
			default:
				out.Body = []byte(s)
			}
		} else {
			switch {
			case ct == "":
				out.Header.Set("Content-Type", "application/json")
			case !isJSONType(mt):
				return webReply{}, badRequest(msgContentTypeMisfit)
			}
			out.Body = bytes.TrimSpace(body)
		}
	}
	switch {
	case status != 0:
		out.Status = status
	case hasBody:
		out.Status = http.StatusOK
	default:
		out.Status = http.StatusNoContent
	}
	return out, nil
}

func isNullJSON(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	return len(t) == 0 || string(t) == "null"
}

// headerValues reads a header value: a string, number or boolean, or an
// array of them (a repeated header).
func headerValues(v json.RawMessage) ([]string, bool) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return nil, false
	}
	if t[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(t, &items); err != nil {
			return nil, false
		}
		var out []string
		for _, it := range items {
			s, ok := scalarString(it)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	s, ok := scalarString(t)
	if !ok {
		return nil, false
	}
	return []string{s}, true
}

func scalarString(v json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return "", false
	}
	switch {
	case t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil || strings.ContainsAny(s, "\r\n") {
			return "", false
		}
		return s, true
	case string(t) == "true" || string(t) == "false":
		return string(t), true
	case t[0] == '-' || t[0] >= '0' && t[0] <= '9':
		var n json.Number
		if err := json.Unmarshal(t, &n); err != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// statusCode reads statusCode: an integer or a numeric string, 100..599.
func statusCode(v json.RawMessage) (int, bool) {
	t := bytes.TrimSpace(v)
	var s string
	if len(t) > 0 && t[0] == '"' {
		if json.Unmarshal(t, &s) != nil {
			return 0, false
		}
	} else {
		s = string(t)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		f, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if ferr != nil || f != float64(int(f)) {
			return 0, false
		}
		n = int(f)
	}
	return n, n >= 100 && n <= 599
}

// authCheck is the check the require-whisk-auth annotation asks for: a
// string or number is a secret for the X-Require-Whisk-Auth header, true
// asks for any valid user's Basic auth.
type authCheck int

const (
	authNone   authCheck = iota
	authSecret           // header X-Require-Whisk-Auth must equal the secret
	authBasic            // any valid user's Basic auth
)

func requireWhiskAuth(a *whisk.Action) (authCheck, string) {
	v, ok := a.Annotations.Get(annRequireWhiskAuth)
	t := bytes.TrimSpace(v)
	if !ok || len(t) == 0 {
		return authNone, ""
	}
	switch {
	case t[0] == '"' || t[0] == '-' || t[0] >= '0' && t[0] <= '9':
		s, ok := scalarString(t)
		if !ok || s == "" {
			return authNone, ""
		}
		return authSecret, s
	case string(t) == "true":
		return authBasic, ""
	}
	return authNone, ""
}

// corsHeaders are added to web action replies unless the action handles
// OPTIONS itself (web-custom-options).
func corsHeaders(h http.Header, requested string) {
	allow := "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
	if requested != "" {
		allow = requested
	}
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH")
	h.Set("Access-Control-Allow-Headers", allow)
}

// web serves /api/v1/web/{ns}/{pkg}/{action}[.ext][/path] for every method
// ({pkg} "default" for the default package; a binding runs its package's
// action with the binding's parameters). No login is needed; the action runs
// as the owner of {ns}.
func (h *handler) web(c *gin.Context) {
	t, ok := parseWebPath(c.Param("path"))
	if !ok || !whisk.ValidEntityName(t.Namespace) || !whisk.ValidEntityName(t.Action) ||
		t.Package != "" && !whisk.ValidEntityName(t.Package) {
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	}
	ctx := c.Request.Context()
	owner, err := h.store.IdentityForNamespace(ctx, t.Namespace)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "web action owner", err)
		return
	}
	// The owner must be entitled to run the action: a package's action through a binding of
	// another namespace's package only while that package stays public.
	if t.Package != "" {
		switch acc, err := h.packageReadable(ctx, owner.Namespace.Name, t.Namespace, t.Package); {
		case err != nil:
			h.internalError(c, "web action entitlement", err)
			return
		case acc == accessMissing:
			h.fail(c, http.StatusNotFound, msgNotFound)
			return
		case acc == accessDenied:
			h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(t.Namespace+"/"+t.Package))
			return
		}
	}
	a, binding, err := h.resolveAction(ctx, t.Namespace, t.Package, t.Action)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "web action", err)
		return
	}
	if !a.Annotations.IsTruthy(annWebExport, false) {
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	}
	// Throttled once the action is known to be exported, preflights too, on the owner's
	// namespace: OpenWhisk's verifyWebAction.
	if !h.admitInvoke(c, owner) {
		return
	}
	customOptions := a.Annotations.IsTruthy(annWebCustomOptions, false)
	if !customOptions {
		corsHeaders(c.Writer.Header(), c.GetHeader("Access-Control-Request-Headers"))
		if c.Request.Method == http.MethodOptions {
			c.Status(http.StatusOK)
			return
		}
	}
	caller, authed, err := h.optionalIdentity(c)
	if err != nil {
		h.internalError(c, "web action caller", err)
		return
	}
	switch check, secret := requireWhiskAuth(a); check {
	case authSecret:
		if !tokenOK(secret, c.GetHeader("X-Require-Whisk-Auth")) {
			h.fail(c, http.StatusUnauthorized, msgUnauthorizedWeb)
			return
		}
	case authBasic:
		if !authed {
			h.fail(c, http.StatusUnauthorized, msgUnauthorizedWeb)
			return
		}
	}
	body, ok := h.readBodyOrFail(c, MaxPayloadBytes)
	if !ok {
		return
	}
	req := webRequest{
		Method:      strings.ToLower(c.Request.Method),
		Headers:     webHeaders(c.Request),
		Path:        t.Path,
		Query:       c.Request.URL.Query(),
		RawQuery:    c.Request.URL.RawQuery,
		ContentType: c.GetHeader("Content-Type"),
		Body:        body,
	}
	if authed {
		req.User = caller.Namespace.Name
	}
	params, err := webParams(a, req, a.Annotations.IsTruthy(annRawHTTP, false))
	var br badRequest
	switch {
	case errors.As(err, &br):
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		h.internalError(c, "web action parameters", err)
		return
	}
	// The store keeps only a hash of the owner's key, so the action gets the key (when it asks for
	// it) only when the owner itself calls with one of its keys; anyone else's key never reaches
	// the owner's action.
	if authed && caller.Subject == owner.Subject && caller.Namespace.Name == owner.Namespace.Name {
		owner.AuthKey = caller.AuthKey
	}
	var act *whisk.WhiskActivation
	var ready bool
	if isComposed(a) {
		// A sequence or conductor action runs in the controller (sequences.go).
		act, _, ready, ok = h.runComposed(c, a, binding, owner, params, true, h.cfg.BlockingWait)
	} else {
		msg, err := buildMessage(h.ctrl, tid(c), a, owner, params, true)
		if err != nil {
			h.internalError(c, "build activation message", err)
			return
		}
		msg.Action.Binding = binding
		act, ready, ok = h.run(c, a, msg, true, h.cfg.BlockingWait)
	}
	if !ok {
		return
	}
	if !ready {
		h.fail(c, http.StatusAccepted, msgResponseNotReady)
		return
	}
	v, err := webOutcome(act)
	if err == nil {
		var reply webReply
		if reply, err = webResponse(t.Ext, v, t.Path); err == nil {
			for k, vs := range reply.Header {
				c.Writer.Header()[k] = vs
			}
			c.Status(reply.Status)
			if len(reply.Body) > 0 {
				_, _ = c.Writer.Write(reply.Body) // a failed write means the client went away
			}
			return
		}
	}
	if errors.As(err, &br) {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	h.internalError(c, "web action reply", err)
}

// webHeaders are the request headers as __ow_headers: lower-case names,
// repeated values joined with ", ". The Authorization header is left out so
// a caller's API key never reaches the action's owner.
func webHeaders(r *http.Request) map[string]string {
	out := map[string]string{}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "authorization" {
			continue
		}
		out[lk] = strings.Join(vs, ", ")
	}
	if r.Host != "" {
		out["host"] = r.Host
	}
	return out
}
