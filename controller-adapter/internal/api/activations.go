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
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// activationQuery is a parsed GET .../activations query.
type activationQuery struct {
	filter store.ActivationFilter
	docs   bool
	count  bool
}

// parseActivationQuery reads name, since, upto (epoch ms), limit, skip,
// docs and count with OpenWhisk's checks and texts.
func parseActivationQuery(q func(string) string) (activationQuery, error) {
	var out activationQuery
	limit, skip, err := listParams(q("limit"), q("skip"), "activations")
	if err != nil {
		return out, err
	}
	out.filter.Limit, out.filter.Skip = limit, skip
	if name := strings.Trim(q("name"), "/"); name != "" {
		parts := strings.Split(name, "/")
		if len(parts) > 2 {
			return out, badRequest(fmt.Sprintf("Parameter may be a 'simple' name or 'package-name/simple' name: %s", q("name")))
		}
		for _, p := range parts {
			if !whisk.ValidEntityName(p) {
				return out, badRequest(fmt.Sprintf("Parameter may be a 'simple' name or 'package-name/simple' name: %s", q("name")))
			}
		}
		out.filter.Name = name
	}
	for _, f := range []struct {
		key string
		dst *time.Time
	}{{"since", &out.filter.Since}, {"upto", &out.filter.Upto}} {
		v := q(f.key)
		if v == "" {
			continue
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return out, badRequest(fmt.Sprintf("Parameter is not a valid value for epoch seconds: %s", v))
		}
		if ms > 0 {
			*f.dst = time.UnixMilli(ms)
		}
	}
	out.docs = q("docs") == "true"
	out.count = q("count") == "true"
	if out.docs && out.count {
		return out, badRequest(msgDocsWithCount)
	}
	return out, nil
}

// activations serves GET .../activations, .../activations/{id},
// .../{id}/logs and .../{id}/result.
func (h *handler) activations(c *gin.Context, ns, rest string) {
	if rest == "" {
		h.listActivations(c, ns)
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	if !whisk.ValidActivationID(id) {
		h.fail(c, http.StatusBadRequest, msgActivationIDBad)
		return
	}
	if sub != "" && sub != "logs" && sub != "result" {
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	}
	a, err := h.readActivation(c.Request.Context(), ns, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read activation", err)
		return
	}
	switch sub {
	case "logs":
		logs := a.Logs
		if logs == nil {
			logs = []string{}
		}
		writeJSON(c, http.StatusOK, map[string][]string{"logs": logs})
	case "result":
		resp, err := externalResponse(a)
		if err != nil {
			h.internalError(c, "activation result", err)
			return
		}
		c.Data(http.StatusOK, "application/json", resp)
	default:
		b, err := a.External()
		if err != nil {
			h.internalError(c, "activation external form", err)
			return
		}
		c.Data(http.StatusOK, "application/json", b)
	}
}

// readActivation reads ns/id from the store. A blocking invoke is answered
// from the Result ack, before the invoker stores the record with its logs;
// a read in that window waits for the store (bounded), so a record the API
// has just answered from is readable at once, logs included.
//
// The window is asked for before the store is read: the activation settles
// only after its record is stored, so a window already closed then means the
// read finds the record, and one still open is waited for. Asked after a read
// that missed, it could have closed in between, and a stored record would be
// answered 404.
func (h *handler) readActivation(ctx context.Context, ns, id string) (*whisk.WhiskActivation, error) {
	storing := h.inv.Storing(ns, id)
	a, err := h.store.GetActivation(ctx, ns, id)
	if !errors.Is(err, store.ErrNotFound) || storing == nil {
		return a, err
	}
	t := time.NewTimer(storingWaitMax)
	defer t.Stop()
	select {
	case <-storing:
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.store.GetActivation(ctx, ns, id)
}

// externalResponse is the external form's response object
// ({"result","size"?,"success","status"}), what .../result returns.
func externalResponse(a *whisk.WhiskActivation) (json.RawMessage, error) {
	b, err := a.External()
	if err != nil {
		return nil, err
	}
	var m struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode external form: %w", err)
	}
	return m.Response, nil
}

func (h *handler) listActivations(c *gin.Context, ns string) {
	q, err := parseActivationQuery(c.Query)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx := c.Request.Context()
	if q.count {
		n, err := h.store.CountActivations(ctx, ns, q.filter)
		if err != nil {
			h.internalError(c, "count activations", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int64{"activations": n})
		return
	}
	as, err := h.store.ListActivations(ctx, ns, q.filter)
	if err != nil {
		h.internalError(c, "list activations", err)
		return
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, a := range as {
		var b []byte
		if q.docs {
			b, err = a.External()
		} else {
			b, err = a.Summary()
		}
		if err != nil {
			h.internalError(c, "activation list form", err)
			return
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	c.Data(http.StatusOK, "application/json", buf.Bytes())
}

// putActivation is PUT /internal/v1/activations/{ns}/{id}: an invoker
// stores a finished activation record (internal form, with logs).
func (h *handler) putActivation(c *gin.Context) {
	body, ok := h.readBodyOrFail(c, MaxRecordBytes)
	if !ok {
		return
	}
	var a whisk.WhiskActivation
	if err := json.Unmarshal(body, &a); err != nil {
		h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
		return
	}
	if a.Namespace != c.Param("ns") || a.ActivationID != c.Param("id") {
		h.fail(c, http.StatusBadRequest, "The activation record's namespace and activationId must match the URL.")
		return
	}
	if err := h.store.PutActivation(c.Request.Context(), &a); err != nil {
		h.internalError(c, "store activation", err)
		return
	}
	h.log.Debug("activation record stored", zap.String("transid", tid(c).ID), zap.String("activation_id", a.ActivationID),
		zap.Int("logs", len(a.Logs)))
	writeJSON(c, http.StatusOK, map[string]string{"activationId": a.ActivationID})
}
