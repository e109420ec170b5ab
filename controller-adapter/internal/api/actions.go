package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// Annotation keys the REST API reads or writes.
const (
	annExec             = "exec"
	annProvideAPIKey    = "provide-api-key"
	annFinal            = "final"
	annWebExport        = "web-export"
	annRawHTTP          = "raw-http"
	annRequireWhiskAuth = "require-whisk-auth"
	annWebCustomOptions = "web-custom-options"
)

// putRequest is the body of PUT .../actions/{name}. Absent fields keep the
// stored value on overwrite.
type putRequest struct {
	Exec           *execRequest      `json:"exec"`
	Parameters     *whisk.Parameters `json:"parameters"`
	Annotations    *whisk.Parameters `json:"annotations"`
	DelAnnotations []string          `json:"delAnnotations"`
	Limits         *limitsRequest    `json:"limits"`
	Publish        *bool             `json:"publish"`
	Version        *string           `json:"version"`
}

type execRequest struct {
	Kind       string   `json:"kind"`
	Code       *string  `json:"code"`
	Image      string   `json:"image"`
	Main       string   `json:"main"`
	Components []string `json:"components"`
	Binary     *bool    `json:"binary"`
}

type limitsRequest struct {
	Timeout     *int `json:"timeout"`
	Memory      *int `json:"memory"`
	Logs        *int `json:"logs"`
	Concurrency *int `json:"concurrency"`
}

// badRequest is a decision error whose text goes to the client with 400.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// supportedKinds lists the kinds for error messages.
func supportedKinds() string {
	kinds := []string{}
	for _, r := range whisk.Runtimes {
		kinds = append(kinds, r.Kind)
	}
	return strings.Join(append(kinds, "nodejs:default"), ", ")
}

// unsupportedKind is OpenWhisk's text (Messages.invalidRuntimeError) for a kind its runtime
// manifest does not list.
func unsupportedKind(kind string) badRequest {
	valid := []string{}
	for _, r := range whisk.Runtimes {
		valid = append(valid, r.Kind)
	}
	return badRequest(fmt.Sprintf("The specified runtime '%s' is not supported by this platform. Valid values are: '%s'.",
		kind, strings.Join(valid, "', '")))
}

// buildExec validates an exec from a request and fills in what OpenWhisk
// infers: the resolved kind and whether the code is a base64 zip.
func buildExec(e *execRequest) (whisk.Exec, error) {
	switch {
	case e.Kind == "":
		return whisk.Exec{}, badRequest("exec.kind is required.")
	case e.Kind == whisk.KindSequence:
		return sequenceExec(e)
	case e.Kind == whisk.KindBlackbox, e.Image != "":
		return whisk.Exec{}, badRequest(fmt.Sprintf("kind '%s' is not supported: this platform runs Node.js actions only (%s).", e.Kind, supportedKinds()))
	}
	kind, err := whisk.ExecKind(e.Kind).Resolve()
	if err != nil || kind.Family() != "nodejs" {
		return whisk.Exec{}, unsupportedKind(e.Kind)
	}
	if e.Code == nil {
		return whisk.Exec{}, badRequest(fmt.Sprintf("exec.code is required for kind '%s'.", e.Kind))
	}
	code := *e.Code
	binary := isBase64Zip(code)
	if e.Binary != nil && *e.Binary && !binary {
		if _, err := base64.StdEncoding.DecodeString(strings.TrimSpace(code)); err != nil {
			return whisk.Exec{}, badRequest("exec.binary is true but exec.code is not valid base64.")
		}
		binary = true
	}
	return whisk.Exec{Kind: string(kind), Code: code, Binary: binary, Main: e.Main}, nil
}

// isBase64Zip reports whether code is base64 of a zip archive: OpenWhisk
// treats base64 code as a binary (zip) action, and checking the zip magic
// keeps a short JS source that happens to be valid base64 from being
// mistaken for one.
func isBase64Zip(code string) bool {
	s := strings.TrimSpace(code)
	if len(s) < 8 || len(s)%4 != 0 {
		return false
	}
	head, err := base64.StdEncoding.DecodeString(s[:8])
	if err != nil || !bytes.HasPrefix(head, []byte("PK\x03\x04")) {
		return false
	}
	_, err = base64.StdEncoding.DecodeString(s)
	return err == nil
}

// limitsError checks limits against the system bounds with a client-facing text.
func limitsError(l whisk.ActionLimits) error {
	check := func(what string, v, lo, hi int, unit string) error {
		if v < lo || v > hi {
			return badRequest(fmt.Sprintf("%s %d%s is outside the allowed range %d..%d%s.", what, v, unit, lo, hi, unit))
		}
		return nil
	}
	return errors.Join(
		check("timeout", l.Timeout, whisk.TimeoutMinMs, whisk.TimeoutMaxMs, " ms"),
		check("memory", l.Memory, whisk.MemoryMinMB, whisk.MemoryMaxMB, " MB"),
		check("logs", l.Logs, whisk.LogsMinMB, whisk.LogsMaxMB, " MB"),
		check("concurrency", l.Concurrency, whisk.ConcurrencyMin, whisk.ConcurrencyMax, ""),
	)
}

// mergeAction builds the document to store from the request and the stored
// action (nil on create), the way OpenWhisk's PUT does: on create exec is
// required and provide-api-key:false is added; on overwrite every absent
// field keeps its stored value, annotations are merged (request wins) after
// removing delAnnotations, and limits are merged field by field. The exec
// annotation is set to the kind on every write.
func mergeAction(ns, name string, req *putRequest, old *whisk.Action) (*whisk.Action, error) {
	a := &whisk.Action{Namespace: ns, Name: name, Limits: whisk.DefaultLimits(),
		Parameters: whisk.Parameters{}, Annotations: whisk.Parameters{}}
	if old != nil {
		a.Exec, a.Limits, a.Publish = old.Exec, old.Limits, old.Publish
		a.Parameters = append(whisk.Parameters{}, old.Parameters...)
		a.Annotations = append(whisk.Parameters{}, old.Annotations...)
	}
	switch {
	case req.Exec != nil:
		e, err := buildExec(req.Exec)
		if err != nil {
			return nil, err
		}
		a.Exec = e
	case old == nil:
		return nil, badRequest("exec undefined: an action needs exec.kind and exec.code.")
	}
	if req.Parameters != nil {
		a.Parameters = *req.Parameters
	}
	if old != nil {
		for _, k := range req.DelAnnotations {
			a.Annotations = without(a.Annotations, k)
		}
	}
	if req.Annotations != nil {
		a.Annotations = a.Annotations.Merge(*req.Annotations)
	}
	if old == nil {
		if _, ok := a.Annotations.Get(annProvideAPIKey); !ok {
			a.Annotations = append(a.Annotations, whisk.KeyValue{Key: annProvideAPIKey, Value: json.RawMessage("false")})
		}
	}
	if err := a.Annotations.Set(annExec, a.Exec.Kind); err != nil {
		return nil, fmt.Errorf("set exec annotation: %w", err)
	}
	if l := req.Limits; l != nil {
		for _, f := range []struct {
			src *int
			dst *int
		}{{l.Timeout, &a.Limits.Timeout}, {l.Memory, &a.Limits.Memory}, {l.Logs, &a.Limits.Logs}, {l.Concurrency, &a.Limits.Concurrency}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
	}
	if err := limitsError(a.Limits); err != nil {
		return nil, err
	}
	if req.Publish != nil {
		a.Publish = *req.Publish
	}
	if req.Version != nil {
		// OpenWhisk keeps an explicit version as given; without one the store counts up.
		if !validSemVer(*req.Version) {
			return nil, badRequest(fmt.Sprintf("The request content was malformed: version '%s' is not major.minor.patch.", *req.Version))
		}
		a.Version = *req.Version
	}
	return a, nil
}

func without(p whisk.Parameters, key string) whisk.Parameters {
	out := p[:0:0]
	for _, kv := range p {
		if kv.Key != key {
			out = append(out, kv)
		}
	}
	return out
}

// entityName validates the {name} of an action URL: "name", or "pkg/name"
// (reported with isPackage).
func entityName(s string) (name string, isPackage bool, err error) {
	parts := strings.Split(s, "/")
	for _, p := range parts {
		if !whisk.ValidEntityName(p) {
			return "", false, badRequest(msgNameIllegal)
		}
	}
	if len(parts) > 2 {
		return "", false, badRequest(msgNameIllegal)
	}
	return s, len(parts) == 2, nil
}

// putAction is PUT /namespaces/{ns}/actions/{name}[?overwrite=true].
func (h *handler) putAction(c *gin.Context, ns, entity string) {
	name, isPkg, err := entityName(entity)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	docNS, docName := ns, name
	if isPkg {
		pkg, act, _ := strings.Cut(name, "/")
		if !h.checkPackageWrite(c, ns, pkg, act) {
			return
		}
		docNS, docName = ns+"/"+pkg, act
	}
	overwrite := c.Query("overwrite") == "true"
	body, ok := h.readBodyOrFail(c, MaxActionBytes)
	if !ok {
		return
	}
	var req putRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
			return
		}
	}
	ctx := c.Request.Context()
	var old *whisk.Action
	if overwrite {
		old, err = h.store.GetAction(ctx, ns, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			old = nil
		case err != nil:
			h.internalError(c, "read action for update", err)
			return
		}
	}
	doc, err := mergeAction(docNS, docName, &req, old)
	var br badRequest
	switch {
	case errors.As(err, &br):
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		h.internalError(c, "build action", err)
		return
	}
	if !h.checkSequencePut(c, ns, doc, old, &req) {
		return
	}
	// What could never be invoked is refused here rather than at every invoke.
	if msg, err := entitySizeError(req.Parameters, req.Annotations, doc.Parameters, doc.Name); err != nil || msg != "" {
		if err != nil {
			h.internalError(c, "measure action", err)
		} else {
			h.fail(c, http.StatusRequestEntityTooLarge, msg)
		}
		return
	}
	saved, err := h.store.PutAction(ctx, doc, overwrite)
	switch {
	case errors.Is(err, store.ErrConflict):
		h.fail(c, http.StatusConflict, msgConflict)
		return
	case errors.Is(err, store.ErrNotFound):
		// The package went away since checkPackageWrite.
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case errors.Is(err, store.ErrIsBinding):
		h.fail(c, http.StatusBadRequest, msgNotAllowedOnBinding)
		return
	case err != nil:
		h.internalError(c, "store action", err)
		return
	}
	h.log.Info("action stored", zap.String("transid", tid(c).ID), zap.String("action", ns+"/"+name),
		zap.String("rev", saved.Revision), zap.Bool("update", old != nil))
	writeJSON(c, http.StatusOK, saved)
}

// jsonErrorText is a decoder error without Go type names where possible.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type (%s)", te.Field, te.Value)
	}
	return strings.TrimPrefix(err.Error(), whisk.ErrMalformed.Error()+": ")
}

// getAction is GET /namespaces/{ns}/actions/{[pkg/]name}[?code=false]: an
// action of a package comes with the parameters it inherits.
func (h *handler) getAction(c *gin.Context, ns, entity string) {
	a, _, ok := h.lookupAction(c, ns, entity)
	if !ok {
		return
	}
	h.writeAction(c, a)
}

// writeAction answers with the action, without its code for ?code=false. The
// document carries "rev", which the invoker caches by.
func (h *handler) writeAction(c *gin.Context, a *whisk.Action) {
	if c.Query("code") == "false" {
		writeJSON(c, http.StatusOK, withoutCode(a))
		return
	}
	writeJSON(c, http.StatusOK, a)
}

// loadAction reads the action document ns/entity as stored, answering
// 400/404/500 itself.
func (h *handler) loadAction(c *gin.Context, ns, entity string) (*whisk.Action, bool) {
	name, _, err := entityName(entity)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return nil, false
	}
	a, err := h.store.GetAction(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return nil, false
	case err != nil:
		h.internalError(c, "read action", err)
		return nil, false
	}
	return a, true
}

// actionView is an action as the API shows it without its code.
type actionView struct {
	Namespace   string             `json:"namespace"`
	Name        string             `json:"name"`
	Version     string             `json:"version"`
	Publish     bool               `json:"publish"`
	Exec        execView           `json:"exec"`
	Parameters  *whisk.Parameters  `json:"parameters,omitempty"`
	Annotations whisk.Parameters   `json:"annotations"`
	Limits      whisk.ActionLimits `json:"limits"`
	Updated     int64              `json:"updated"`
	Revision    string             `json:"rev,omitempty"`
}

type execView struct {
	Kind       string   `json:"kind,omitempty"`
	Components []string `json:"components,omitempty"`
	Binary     bool     `json:"binary"`
	Main       string   `json:"main,omitempty"`
}

func withoutCode(a *whisk.Action) actionView {
	params := a.Parameters
	if params == nil {
		params = whisk.Parameters{}
	}
	v := summary(a)
	v.Exec.Kind, v.Exec.Main, v.Exec.Components = a.Exec.Kind, a.Exec.Main, a.Exec.Components
	v.Parameters = &params
	v.Revision = a.Revision
	return v
}

// summary is the list form: exec carries only binary.
func summary(a *whisk.Action) actionView {
	ann := a.Annotations
	if ann == nil {
		ann = whisk.Parameters{}
	}
	version := a.Version
	if version == "" {
		version = whisk.DefaultVersion
	}
	return actionView{Namespace: a.Namespace, Name: a.Name, Version: version, Publish: a.Publish,
		Exec: execView{Binary: a.Exec.Binary}, Annotations: ann, Limits: a.Limits, Updated: a.Updated}
}

// deleteAction is DELETE /namespaces/{ns}/actions/{[pkg/]name}: 200 with the
// deleted action.
func (h *handler) deleteAction(c *gin.Context, ns, entity string) {
	name, isPkg, err := entityName(entity)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if isPkg {
		pkg, act, _ := strings.Cut(name, "/")
		if !h.checkPackageWrite(c, ns, pkg, act) {
			return
		}
	}
	a, err := h.store.DeleteAction(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "delete action", err)
		return
	}
	h.log.Info("action deleted", zap.String("transid", tid(c).ID), zap.String("action", ns+"/"+name))
	writeJSON(c, http.StatusOK, a)
}

// List bounds (OpenWhisk's collection listing).
const (
	listDefault = 30
	listMax     = 200
)

// listParams reads ?limit= and ?skip= with OpenWhisk's defaults, bounds and
// texts; limit 0 means the maximum.
func listParams(limitQ, skipQ, collection string) (limit, skip int, err error) {
	limit, skip = listDefault, 0
	if limitQ != "" {
		n, err := strconv.Atoi(limitQ)
		if err != nil {
			return 0, 0, badRequest(fmt.Sprintf("The value '%s' is not an integer for %s.", limitQ, collection))
		}
		if n < 0 || n > listMax {
			return 0, 0, badRequest(fmt.Sprintf("The value '%d' is not in the range of 0 to %d for %s.", n, listMax, collection))
		}
		limit = n
		if n == 0 {
			limit = listMax
		}
	}
	if skipQ != "" {
		n, err := strconv.Atoi(skipQ)
		if err != nil {
			return 0, 0, badRequest(fmt.Sprintf("The value '%s' is not an integer for %s.", skipQ, collection))
		}
		if n < 0 {
			return 0, 0, badRequest(fmt.Sprintf("The value '%d' is not greater than or equal to 0 for %s.", n, collection))
		}
		skip = n
	}
	return limit, skip, nil
}

// listActions is GET /namespaces/{ns}/actions?limit=&skip=&count=.
func (h *handler) listActions(c *gin.Context, ns string) {
	limit, skip, err := listParams(c.Query("limit"), c.Query("skip"), "actions")
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if c.Query("count") == "true" {
		n, err := h.store.CountActions(c.Request.Context(), ns, skip)
		if err != nil {
			h.internalError(c, "count actions", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int{"actions": n})
		return
	}
	as, err := h.store.ListActions(c.Request.Context(), ns, limit, skip)
	if err != nil {
		h.internalError(c, "list actions", err)
		return
	}
	out := make([]actionView, len(as))
	for i, a := range as {
		out[i] = summary(a)
	}
	writeJSON(c, http.StatusOK, out)
}
