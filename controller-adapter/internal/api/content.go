package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// Limits of what an activation carries, checked at the door so that nothing accepted fails later
// for its size (ARCHITECTURE.md, "Limits and large messages"):
//
//   - an action's default parameters: OpenWhisk's whisk.parameter-size-limit (1 MiB) by its own
//     measure (whisk.Parameters.Size), and the JSON object they become in every activation's content
//     at most OpenWhisk's activation payload limit (1 MiB), so any payload the invoke accepts
//     (at most 1 MiB too) still makes a message the platform can carry;
//   - a request's payload: 1 MiB (MaxPayloadBytes, readBodyOrFail);
//   - the merged content: whisk.MaxContentBytes. Up to a Kafka record's limit it travels in the
//     message; beyond, in the store by reference (publish).
const (
	// MaxParameterBytes bounds an entity's parameters, and separately its annotations, as
	// whisk.Parameters.Size measures them (whisk.parameter-size-limit).
	MaxParameterBytes = whisk.ParameterSizeMaxBytes
	// MaxDefaultsContentBytes bounds the JSON object an action's parameters become in an
	// activation's content (whisk.activation.payload.max).
	MaxDefaultsContentBytes = whisk.PayloadMaxBytes
	// inlineMessageMax is the largest serialized message sent as it is: the invoker topics'
	// max.message.bytes less room for the record's and its batch's framing, which count against
	// the same limit (the producer measures the record, the broker the batch).
	inlineMessageMax = whisk.MaxMessageBytes - 1024
)

// msgContentTooLarge is what OpenWhisk answers (413, the status's default text) when an
// activation's message is too large for its message bus.
const msgContentTooLarge = "The request content is larger than the server is willing or able to process."

// ErrContentTooLarge: the activation's content (the action's parameters merged with the payload)
// exceeds whisk.MaxContentBytes, or the broker refused even the message that refers to it. The REST
// API answers 413.
var ErrContentTooLarge = errors.New("the activation's content is too large to carry")

// entitySizeError returns OpenWhisk's 413 text when an action's or package's parameters or
// annotations are over their limits, or "" when they are within them. It measures what the request
// defined (params, annotations), as OpenWhisk does, and the parameters that will be stored (stored,
// for the entity called name).
func entitySizeError(params, annotations *whisk.Parameters, stored whisk.Parameters, name string) (string, error) {
	if params != nil {
		if n := params.Size(); n > MaxParameterBytes {
			return msgEntityTooBig("parameters", int64(n), MaxParameterBytes), nil
		}
	}
	if annotations != nil {
		if n := annotations.Size(); n > MaxParameterBytes {
			return msgEntityTooBig("annotations", int64(n), MaxParameterBytes), nil
		}
	}
	// Every activation of the action carries its parameters as one JSON object (with quotes,
	// colons and commas OpenWhisk's measure leaves out: 200,000 small parameters are far larger
	// there), so that object must fit in an activation's payload even when nobody passes any.
	obj, err := stored.ToObject()
	if err != nil {
		return "", fmt.Errorf("parameters of %s as content: %w", name, err)
	}
	if n := len(obj); n > MaxDefaultsContentBytes {
		return msgEntityTooBig("parameters", int64(n), MaxDefaultsContentBytes), nil
	}
	return "", nil
}

// publish hands msg to the invoker. Content the message cannot carry in one Kafka record is kept
// in the store under the activation's namespace and id, and the message carries a reference
// (whisk.ContentRef) that the invoker follows before running: when the serialized message is over
// the topics' limit, or when the broker refuses it for its size (a broker configured smaller).
// Errors: ErrContentTooLarge (wrapped), balancer.ErrNoInvokers, or the publish's own.
func publish(ctx context.Context, inv Invoker, st *store.Store, a *whisk.Action, msg *whisk.ActivationMessage) (<-chan balancer.Completion, error) {
	if n := len(msg.Content); n > whisk.MaxContentBytes {
		return nil, fmt.Errorf("activation %s: content of %d bytes, limit %d: %w", msg.ActivationID, n, whisk.MaxContentBytes, ErrContentTooLarge)
	}
	if !tooLargeToSend(msg) {
		ch, err := inv.Publish(ctx, a, msg)
		if !errors.Is(err, kafka.ErrMessageTooLarge) || len(msg.Content) == 0 {
			return ch, err
		}
	}
	ns, id := msg.User.Namespace.Name, msg.ActivationID
	if err := st.PutContent(ctx, ns, id, msg.Content, store.ContentTTL); err != nil {
		return nil, fmt.Errorf("activation %s: keep its content for the invoker: %w", id, err)
	}
	byRef := *msg
	byRef.Content, byRef.ContentRef = nil, whisk.NewContentRef(msg.Content)
	ch, err := inv.Publish(ctx, a, &byRef)
	if err != nil {
		// Nobody will ask for the content; it would only wait for its TTL.
		if derr := st.DeleteContent(context.WithoutCancel(ctx), ns, id); derr != nil {
			err = errors.Join(err, derr)
		}
		if errors.Is(err, kafka.ErrMessageTooLarge) {
			return nil, fmt.Errorf("activation %s: even by reference: %w: %w", id, ErrContentTooLarge, err)
		}
		return nil, err
	}
	*msg = byRef
	return ch, nil
}

// tooLargeToSend reports whether msg, serialized, is over inlineMessageMax. Only messages whose
// content alone is a sizable part of the limit are serialized to find out.
func tooLargeToSend(msg *whisk.ActivationMessage) bool {
	if len(msg.Content) < inlineMessageMax/2 {
		return false
	}
	b, err := msg.Serialize()
	// A message that does not serialize is refused by the publish, which says why.
	return err == nil && len(b) > inlineMessageMax
}

// getContent is GET /internal/v1/activations/{ns}/{id}/content: the content of an activation whose
// message carried a whisk.ContentRef, for the invoker running it (invoker token).
func (h *handler) getContent(c *gin.Context) {
	ns, id := c.Param("ns"), c.Param("id")
	if !whisk.ValidEntityName(ns) || !whisk.ValidActivationID(id) {
		h.fail(c, http.StatusBadRequest, msgActivationIDBad)
		return
	}
	b, err := h.store.GetContent(c.Request.Context(), ns, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read activation content", err)
		return
	}
	h.log.Debug("activation content served", zap.String("transid", tid(c).ID), zap.String("activation_id", id), zap.Int("bytes", len(b)))
	c.Data(http.StatusOK, "application/json", b)
}
