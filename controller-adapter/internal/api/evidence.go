package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/whisk"
)

// maxEvidenceBytes bounds a published evidence document (attest.Parse refuses more anyway).
const maxEvidenceBytes = 64 << 10

// putEvidence is PUT /internal/v1/evidence/{image}[?invoker=N]: invoker N publishes the evidence
// an enclave owner of image serves (the image key bound to the enclave's measurement). The
// controller keeps the latest per image and serves it to clients; it is no party to the trust
// decision (clients verify), but it refuses what cannot be evidence of that image: a document that
// does not parse, names another image, does not bind its keys, or, with an evidence policy
// configured, an sgx-dcap quote that does not verify under it. It also refuses (409) a different
// kid than the published one while another invoker that published that one is healthy, so that
// one kid stays canonical across invokers (keyrelay.go).
func (h *handler) putEvidence(c *gin.Context) {
	image := c.Param("image")
	invoker, ok := h.invokerParam(c, false)
	if !ok {
		return
	}
	body, ok := h.readBodyOrFail(c, maxEvidenceBytes)
	if !ok {
		return
	}
	ev, err := attest.Parse(body)
	if err != nil {
		h.fail(c, http.StatusBadRequest, "The evidence is malformed: "+err.Error())
		return
	}
	if ev.Image != image {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The evidence is of image %q, not of %q in the URL.", ev.Image, image))
		return
	}
	if err := attest.CheckBinding(ev); err != nil {
		h.fail(c, http.StatusBadRequest, "The evidence does not bind its key: "+err.Error())
		return
	}
	if p := h.cfg.EvidencePolicy; p != nil && ev.Type == attest.TypeSGXDCAP {
		if _, err := attest.Verify(ev, *p); err != nil {
			h.fail(c, http.StatusBadRequest, "The evidence does not verify under this controller's policy: "+err.Error())
			return
		}
	}
	h.relay.evMu.Lock()
	defer h.relay.evMu.Unlock()
	conflict, err := h.canonicalConflict(c, image, ev.Kid, invoker)
	if err != nil {
		h.internalError(c, "read evidence", err)
		return
	}
	if conflict != "" {
		h.fail(c, http.StatusConflict, conflict)
		return
	}
	if err := h.store.PutEvidence(c.Request.Context(), image, body); err != nil {
		h.internalError(c, "store evidence", err)
		return
	}
	h.relay.published(image, ev.Kid, invoker)
	h.log.Info("enclave evidence published", zap.String("transid", tid(c).ID), zap.String("image", image),
		zap.String("type", ev.Type), zap.String("kid", ev.Kid), zap.Int("invoker", invoker))
	writeJSON(c, http.StatusOK, map[string]string{"image": image, "kid": ev.Kid, "type": ev.Type})
}

// getEvidence is GET /api/v1/teemate/evidence?action=/NS/NAME (or ?kind=KIND): the evidence of
// the enclave that runs the action (the latest an enclave of the action's image published), or of
// the kind's image for code that is not an action yet, byte for byte as the
// enclave served it, so that its SHA-256 is the one receipts name. The caller must be allowed to
// read the action, as for GET of the action itself.
func (h *handler) getEvidence(c *gin.Context) {
	ref := c.Query("action")
	if k := c.Query("kind"); k != "" && ref == "" {
		// ?kind=nodejs:20: the image of a kind, for code that is not an action yet (teemate action
		// create --sealed seals the code before the action exists).
		kind, err := whisk.ExecKind(k).Resolve()
		if err != nil {
			h.fail(c, http.StatusBadRequest, fmt.Sprintf("The kind %q runs in no enclave image.", k))
			return
		}
		h.serveEvidence(c, string(kind))
		return
	}
	if ref == "" {
		h.fail(c, http.StatusBadRequest, "The query parameter 'action' (/namespace/name, or name in your own namespace) or 'kind' is required.")
		return
	}
	ns, entity := "_", ref
	if strings.HasPrefix(ref, "/") {
		var found bool
		ns, entity, found = strings.Cut(ref[1:], "/")
		if !found {
			h.fail(c, http.StatusBadRequest, msgNameIllegal)
			return
		}
	}
	ns, ok := h.resolveNamespaceName(c, ns)
	if !ok {
		return
	}
	// An action of a package is as readable as its package (lookupAction checks); one of the
	// default package only its owner's.
	if _, isPkg, err := entityName(entity); err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	} else if !isPkg && !isOwner(c, ns) {
		h.fail(c, http.StatusForbidden, msgNotAuthorized)
		return
	}
	a, _, ok := h.lookupAction(c, ns, entity)
	if !ok {
		return
	}
	kind, err := whisk.ExecKind(a.Exec.Kind).Resolve()
	if err != nil {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The action's kind %q runs in no enclave image.", a.Exec.Kind))
		return
	}
	h.serveEvidence(c, string(kind))
}

// serveEvidence answers the latest evidence of image, byte for byte, or 404 until one is published.
func (h *handler) serveEvidence(c *gin.Context, image string) {
	doc, _, err := h.store.GetEvidence(c.Request.Context(), image)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, fmt.Sprintf("No enclave of image %s has published evidence yet; "+
			"an invoker publishes it once an enclave of the image has started.", image))
		return
	case err != nil:
		h.internalError(c, "read evidence", err)
		return
	}
	c.Data(http.StatusOK, "application/json", doc)
}
