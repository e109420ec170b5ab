package api

import (
	"bytes"
	"context"
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

// OpenWhisk's texts for packages (Messages in ErrorResponse.scala, and the
// Packages API's own).
const (
	msgBindingDoesNotExist      = "Binding references a package that does not exist."
	msgPackageCannotBecomeBind  = "Resource is a package and cannot be converted into a binding."
	msgBindingCannotRefBinding  = "Cannot bind to another package binding."
	msgNotAllowedOnBinding      = "Operation not permitted on package binding."
	annFeed                     = "feed"
	reservedPackageName         = "default"
	packageActionsListUnlimited = 0
)

func msgNotAuthorizedToAccess(what string) string {
	return fmt.Sprintf("The supplied authentication is not authorized to access '%s'.", what)
}

func msgPackageNameReserved(name string) string {
	return fmt.Sprintf("Package name '%s' is reserved.", name)
}

func msgPackageNotEmpty(n int) string {
	what := "entities"
	if n == 1 {
		what = "entity"
	}
	return fmt.Sprintf("Package not empty (contains %d %s). Set force param or delete package contents.", n, what)
}

// isOwner reports whether namespace ns is the caller's own.
func isOwner(c *gin.Context, ns string) bool { return ns == identityOf(c).Namespace.Name }

// access is the outcome of a READ entitlement check on a package.
type access int

const (
	accessOK      access = iota
	accessDenied         // 403: not the caller's, and not shared with it
	accessMissing        // the caller's own namespace has no such package (404, or 400 for a binding)
)

// packageReadable is OpenWhisk's READ entitlement on package ns/name for a caller whose own
// namespace is callerNS (PackageCollection): a package is readable by its owner, and by everyone
// when it is published; a binding only by its owner, and only while the package it binds is
// readable by that owner. A package missing from another namespace is denied, not missing, so
// nothing leaks about other namespaces.
func (h *handler) packageReadable(ctx context.Context, callerNS, ns, name string) (access, error) {
	owner := ns == callerNS
	p, err := h.store.GetPackage(ctx, ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound) && owner:
		return accessMissing, nil
	case errors.Is(err, store.ErrNotFound):
		return accessDenied, nil
	case err != nil:
		return 0, err
	case p.Binding == nil && (owner || p.Publish):
		return accessOK, nil
	case p.Binding == nil || !owner:
		return accessDenied, nil
	case p.Binding.Path() == p.Path():
		// Refused at every write (a binding cannot bind a binding); never follow a loop.
		return accessDenied, nil
	}
	target, err := h.store.GetPackage(ctx, p.Binding.Namespace, p.Binding.Name)
	switch {
	case errors.Is(err, store.ErrNotFound) && p.Binding.Namespace == callerNS:
		return accessMissing, nil
	case errors.Is(err, store.ErrNotFound):
		return accessDenied, nil
	case err != nil:
		return 0, err
	case target.Binding == nil && (p.Binding.Namespace == callerNS || target.Publish):
		return accessOK, nil
	}
	return accessDenied, nil
}

// checkPackageRead answers 404/403/500 itself unless the caller may read package ns/name.
func (h *handler) checkPackageRead(c *gin.Context, ns, name string) bool {
	a, err := h.packageReadable(c.Request.Context(), identityOf(c).Namespace.Name, ns, name)
	switch {
	case err != nil:
		h.internalError(c, "package entitlement", err)
		return false
	case a == accessMissing:
		h.fail(c, http.StatusNotFound, msgNotFound)
		return false
	case a == accessDenied:
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ns+"/"+name))
		return false
	}
	return true
}

// resolvePackage follows a binding to the package it binds: it returns the package whose
// actions the path ns/name names, the parameters its actions inherit (a binding's on top of its
// package's), and the binding's path when ns/name is a binding ("" otherwise). ErrNotFound when
// either is missing.
func (h *handler) resolvePackage(ctx context.Context, ns, name string) (pkg *whisk.Package, params whisk.Parameters, binding string, err error) {
	p, err := h.store.GetPackage(ctx, ns, name)
	if err != nil {
		return nil, nil, "", err
	}
	if p.Binding == nil {
		return p, p.Parameters, "", nil
	}
	target, err := h.store.GetPackage(ctx, p.Binding.Namespace, p.Binding.Name)
	if err != nil {
		return nil, nil, "", err
	}
	if target.Binding != nil {
		// A binding of a binding is refused when written; treat one found as missing.
		return nil, nil, "", fmt.Errorf("binding %s binds the binding %s: %w", p.Path(), target.Path(), store.ErrNotFound)
	}
	return target, target.Parameters.Merge(p.Parameters), p.Path(), nil
}

// resolveAction reads the action named by ns and entity ("name" or "pkg/name") with the
// parameters it runs with: OpenWhisk's resolveActionAndMergeParameters, where a package's
// parameters are under the action's, and a binding's over its package's. binding is the binding's
// path when the action is reached through one. The caller has checked the entitlement.
func (h *handler) resolveAction(ctx context.Context, ns, pkg, name string) (a *whisk.Action, binding string, err error) {
	if pkg == "" {
		a, err := h.store.GetAction(ctx, ns, name)
		return a, "", err
	}
	p, params, binding, err := h.resolvePackage(ctx, ns, pkg)
	if err != nil {
		return nil, "", err
	}
	a, err = h.store.GetAction(ctx, p.Namespace, p.Name+"/"+name)
	if err != nil {
		return nil, "", err
	}
	a.Parameters = params.Merge(a.Parameters)
	return a, binding, nil
}

// lookupAction reads the action of a GET or POST (READ or ACTIVATE) of
// /namespaces/{ns}/actions/{entity}, with its merged parameters and the binding it is reached
// through, answering 400/403/404/500 itself. An action of the default package is only the
// namespace owner's (the router checked); one of a package needs READ on the package, so the
// actions of another namespace's public package are everyone's to read and invoke.
func (h *handler) lookupAction(c *gin.Context, ns, entity string) (*whisk.Action, string, bool) {
	pkgAndName, _, err := entityName(entity)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return nil, "", false
	}
	pkg, name, inPackage := strings.Cut(pkgAndName, "/")
	if !inPackage {
		pkg, name = "", pkgAndName
	} else if !h.checkPackageRead(c, ns, pkg) {
		return nil, "", false
	}
	a, binding, err := h.resolveAction(c.Request.Context(), ns, pkg, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return nil, "", false
	case err != nil:
		h.internalError(c, "read action", err)
		return nil, "", false
	}
	return a, binding, true
}

// checkPackageWrite answers 403/404/400/500 itself unless the caller may create or delete an
// action in package ns/pkg: its own, existing, and not a binding.
func (h *handler) checkPackageWrite(c *gin.Context, ns, pkg, name string) bool {
	if !isOwner(c, ns) {
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ns+"/"+pkg+"/"+name))
		return false
	}
	p, err := h.store.GetPackage(c.Request.Context(), ns, pkg)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return false
	case err != nil:
		h.internalError(c, "read package", err)
		return false
	case p.Binding != nil:
		h.fail(c, http.StatusBadRequest, msgNotAllowedOnBinding)
		return false
	}
	return true
}

// listPackageActions is GET /namespaces/{ns}/actions/{pkg}/: the actions of a package, or of
// the package a binding binds (their namespace is that package's path, as OpenWhisk lists them).
func (h *handler) listPackageActions(c *gin.Context, ns, pkg string) {
	if !whisk.ValidEntityName(pkg) {
		h.fail(c, http.StatusBadRequest, msgNameIllegal)
		return
	}
	limit, skip, err := listParams(c.Query("limit"), c.Query("skip"), "actions")
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if !h.checkPackageRead(c, ns, pkg) {
		return
	}
	p, _, _, err := h.resolvePackage(c.Request.Context(), ns, pkg)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read package", err)
		return
	}
	if c.Query("count") == "true" {
		n, err := h.store.CountPackageActions(c.Request.Context(), p.Path(), skip)
		if err != nil {
			h.internalError(c, "count package actions", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int{"actions": n})
		return
	}
	as, err := h.store.ListPackageActions(c.Request.Context(), p.Path(), limit, skip)
	if err != nil {
		h.internalError(c, "list package actions", err)
		return
	}
	out := make([]actionView, len(as))
	for i, a := range as {
		out[i] = summary(a)
	}
	writeJSON(c, http.StatusOK, out)
}

// packageRoutes dispatches /namespaces/{ns}/packages[/{name}]. Every namespace's collection is
// listable (another one's shows its public packages only); the entitlement of each entity
// operation is checked by its handler.
func (h *handler) packageRoutes(c *gin.Context, ns, entity string) {
	h.entityRoutes(c, ns, entity, entityHandlers{
		list: h.listPackages, get: h.getPackage, put: h.putPackage, del: h.deletePackage})
}

// packagePutRequest is the body of PUT .../packages/{name} (WhiskPackagePut). Absent fields keep
// the stored value on overwrite.
type packagePutRequest struct {
	Binding     json.RawMessage   `json:"binding"`
	Parameters  *whisk.Parameters `json:"parameters"`
	Version     *string           `json:"version"`
	Publish     *bool             `json:"publish"`
	Annotations *whisk.Parameters `json:"annotations"`
}

// validSemVer reports whether v is "major.minor.patch" in decimal.
func validSemVer(v string) bool {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || p == "" || p[0] == '+' {
			return false
		}
	}
	return true
}

// putPackage is PUT /namespaces/{ns}/packages/{name}[?overwrite=true]: create or update a
// package, or a binding when the body names one. OpenWhisk's order: the caller must own the
// namespace, may read the package it binds (a missing one of its own is a 400), may not turn a
// package into a binding (409) nor bind a binding (400).
func (h *handler) putPackage(c *gin.Context, ns, name string) {
	if !isOwner(c, ns) {
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ns+"/"+name))
		return
	}
	if name == reservedPackageName {
		h.fail(c, http.StatusBadRequest, msgPackageNameReserved(name))
		return
	}
	overwrite := c.Query("overwrite") == "true"
	body, ok := h.readBodyOrFail(c, MaxActionBytes)
	if !ok {
		return
	}
	var req packagePutRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
			return
		}
	}
	bind, err := whisk.ParseBinding(req.Binding)
	if err != nil {
		h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
		return
	}
	if bind != nil && bind.Namespace == "_" {
		// The caller's own namespace, as wsk writes a binding of one's own package.
		bind.Namespace = ns
	}
	if req.Version != nil && !validSemVer(*req.Version) {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The request content was malformed: version '%s' is not major.minor.patch.", *req.Version))
		return
	}
	ctx := c.Request.Context()
	if bind != nil {
		switch a, err := h.packageReadable(ctx, ns, bind.Namespace, bind.Name); {
		case err != nil:
			h.internalError(c, "binding entitlement", err)
			return
		case a == accessMissing:
			h.fail(c, http.StatusBadRequest, msgBindingDoesNotExist)
			return
		case a == accessDenied:
			h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(bind.Path()))
			return
		}
	}
	old, err := h.store.GetPackage(ctx, ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		h.internalError(c, "read package for update", err)
		return
	case !overwrite:
		h.fail(c, http.StatusConflict, msgConflict)
		return
	case bind != nil && old.Binding == nil:
		h.fail(c, http.StatusConflict, msgPackageCannotBecomeBind)
		return
	}
	if bind != nil {
		target, err := h.store.GetPackage(ctx, bind.Namespace, bind.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			h.fail(c, http.StatusBadRequest, msgBindingDoesNotExist)
			return
		case err != nil:
			h.internalError(c, "read bound package", err)
			return
		case target.Binding != nil:
			h.fail(c, http.StatusBadRequest, msgBindingCannotRefBinding)
			return
		}
	}
	pkg := mergePackage(ns, name, &req, bind, old)
	// A package's (or binding's) parameters start every activation of its actions, so what could
	// never be invoked is refused here, as for an action's own.
	if msg, err := entitySizeError(req.Parameters, req.Annotations, pkg.Parameters, name); err != nil || msg != "" {
		if err != nil {
			h.internalError(c, "measure package", err)
		} else {
			h.fail(c, http.StatusRequestEntityTooLarge, msg)
		}
		return
	}
	saved, err := h.store.PutPackage(ctx, pkg, overwrite)
	switch {
	case errors.Is(err, store.ErrConflict):
		h.fail(c, http.StatusConflict, msgConflict)
		return
	case err != nil:
		h.internalError(c, "store package", err)
		return
	}
	h.log.Info("package stored", zap.String("transid", tid(c).ID), zap.String("package", saved.Path()),
		zap.String("rev", saved.Revision), zap.Bool("update", old != nil), zap.Bool("binding", saved.Binding != nil))
	writeJSON(c, http.StatusOK, saved)
}

// mergePackage builds the document to store, the way OpenWhisk's package PUT does: absent fields
// keep the stored values on update (the version then goes up by one in the store), annotations
// are replaced as a whole, and the "binding" annotation is always the controller's own: the
// binding, for clients that tell bindings apart in a list by it.
func mergePackage(ns, name string, req *packagePutRequest, bind *whisk.Binding, old *whisk.Package) *whisk.Package {
	p := &whisk.Package{Namespace: ns, Name: name, Binding: bind, Parameters: whisk.Parameters{}, Annotations: whisk.Parameters{}}
	if old != nil {
		p.Parameters, p.Annotations, p.Publish = old.Parameters, old.Annotations, old.Publish
		if bind == nil {
			p.Binding = old.Binding
		}
	}
	if req.Parameters != nil {
		p.Parameters = *req.Parameters
	}
	if req.Annotations != nil {
		p.Annotations = *req.Annotations
	}
	if req.Publish != nil {
		p.Publish = *req.Publish
	}
	if req.Version != nil {
		p.Version = *req.Version
	}
	p.Annotations = without(p.Annotations, "binding")
	if p.Binding != nil {
		v := `{"namespace":` + string(jsonString(p.Binding.Namespace)) + `,"name":` + string(jsonString(p.Binding.Name)) + `}`
		p.Annotations = append(p.Annotations, whisk.KeyValue{Key: "binding", Value: json.RawMessage(v)})
	}
	return p
}

// packageAction is an action as a package GET lists it (WhiskPackageAction).
type packageAction struct {
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Annotations whisk.Parameters `json:"annotations"`
}

// getPackage is GET /namespaces/{ns}/packages/{name}: the package with its actions and feeds
// (actions annotated "feed"). A binding shows as itself, with the parameters its actions inherit
// (its own over its package's) and its package's actions.
func (h *handler) getPackage(c *gin.Context, ns, name string) {
	if !h.checkPackageRead(c, ns, name) {
		return
	}
	ctx := c.Request.Context()
	p, err := h.store.GetPackage(ctx, ns, name)
	var holder *whisk.Package
	if err == nil {
		var params whisk.Parameters
		holder, params, _, err = h.resolvePackage(ctx, ns, name)
		if err == nil {
			p.Parameters = params
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read package", err)
		return
	}
	as, err := h.store.ListPackageActions(ctx, holder.Path(), packageActionsListUnlimited, 0)
	if err != nil {
		h.internalError(c, "list package actions", err)
		return
	}
	actions, feeds := []packageAction{}, []packageAction{}
	for _, a := range as {
		pa := packageAction{Name: a.Name, Version: a.Version, Annotations: a.Annotations}
		if pa.Annotations == nil {
			pa.Annotations = whisk.Parameters{}
		}
		if _, ok := a.Annotations.Get(annFeed); ok {
			feeds = append(feeds, pa)
		} else {
			actions = append(actions, pa)
		}
	}
	doc, err := marshal(p)
	if err != nil {
		h.internalError(c, "encode package", err)
		return
	}
	extra, err := marshal(struct {
		Actions []packageAction `json:"actions"`
		Feeds   []packageAction `json:"feeds"`
	}{actions, feeds})
	if err != nil {
		h.internalError(c, "encode package actions", err)
		return
	}
	// {package fields..., "actions":[...], "feeds":[...]}: both are objects, so splice them.
	out := append(bytes.TrimSuffix(doc, []byte("}")), ',')
	out = append(out, bytes.TrimPrefix(extra, []byte("{"))...)
	c.Data(http.StatusOK, "application/json", out)
}

// deletePackage is DELETE /namespaces/{ns}/packages/{name}[?force=true]: 200 with what was
// deleted; a package that still holds actions is refused with 409 unless forced.
func (h *handler) deletePackage(c *gin.Context, ns, name string) {
	if !isOwner(c, ns) {
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ns+"/"+name))
		return
	}
	p, err := h.store.DeletePackage(c.Request.Context(), ns, name, c.Query("force") == "true")
	var notEmpty *store.NotEmptyError
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case errors.As(err, &notEmpty):
		h.fail(c, http.StatusConflict, msgPackageNotEmpty(notEmpty.Actions))
		return
	case err != nil:
		h.internalError(c, "delete package", err)
		return
	}
	h.log.Info("package deleted", zap.String("transid", tid(c).ID), zap.String("package", p.Path()))
	writeJSON(c, http.StatusOK, p)
}

// packageSummary is a package as a list shows it: no parameters, and binding false for a
// package (OpenWhisk's view value).
type packageSummary struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Publish     bool             `json:"publish"`
	Annotations whisk.Parameters `json:"annotations"`
	Updated     int64            `json:"updated"`
	Binding     any              `json:"binding"`
}

// listPackages is GET /namespaces/{ns}/packages?limit=&skip=&count=: the caller's own packages
// and bindings, or another namespace's public packages.
func (h *handler) listPackages(c *gin.Context, ns string) {
	limit, skip, err := listParams(c.Query("limit"), c.Query("skip"), "packages")
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	publicOnly := !isOwner(c, ns)
	ctx := c.Request.Context()
	if c.Query("count") == "true" {
		n, err := h.store.CountPackages(ctx, ns, publicOnly, skip)
		if err != nil {
			h.internalError(c, "count packages", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int{"packages": n})
		return
	}
	ps, err := h.store.ListPackages(ctx, ns, publicOnly, limit, skip)
	if err != nil {
		h.internalError(c, "list packages", err)
		return
	}
	out := make([]packageSummary, len(ps))
	for i, p := range ps {
		s := packageSummary{Namespace: p.Namespace, Name: p.Name, Version: p.Version, Publish: p.Publish,
			Annotations: p.Annotations, Updated: p.Updated, Binding: false}
		if s.Annotations == nil {
			s.Annotations = whisk.Parameters{}
		}
		if p.Binding != nil {
			s.Binding = *p.Binding
		}
		out[i] = s
	}
	writeJSON(c, http.StatusOK, out)
}

// SystemNamespace is OpenWhisk's shared namespace, whose public packages every namespace reads,
// binds and invokes.
const SystemNamespace = "whisk.system"

// SystemPackages are the packages whisk.system holds from the first start (the controller
// creates the missing ones, and never changes one that exists): the catalog's alarms package,
// public, where the alarms feed's actions go.
func SystemPackages() []*whisk.Package {
	return []*whisk.Package{{
		Namespace: SystemNamespace, Name: "alarms", Publish: true,
		Annotations: whisk.Parameters{{Key: "description", Value: jsonString("Alarms and periodic utility")}},
	}}
}
