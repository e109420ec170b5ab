package whisk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Activation status codes (ActivationResponse.statusCode).
const (
	StatusSuccess          = 0 // ran and produced a result
	StatusApplicationError = 1 // ran and returned {"error": ...}, or was refused (not found, blacklisted)
	StatusDeveloperError   = 2 // failed to initialise or run: timeout, OOM, bad reply, crash
	StatusWhiskError       = 3 // platform failure; the only code counted as a system error
)

// StatusMessage is the external "status" text for a status code.
func StatusMessage(code int) string {
	switch code {
	case StatusSuccess:
		return "success"
	case StatusApplicationError:
		return "application error"
	case StatusDeveloperError:
		return "action developer error"
	case StatusWhiskError:
		return "whisk internal error"
	default:
		return "unknown status " + strconv.Itoa(code)
	}
}

// Fixed OpenWhisk texts that clients and tests match on.
const (
	MsgActionNotFound           = "Action could not be found or may have been deleted."
	MsgActionNotFetched         = "Action could not be fetched."
	MsgActionMismatch           = "Action version is not compatible and cannot be invoked."
	MsgActionLimitExceeded      = "Action limit exceeded the system limit."
	MsgNamespaceBlacklisted     = "The action was not invoked due to a blacklisted namespace."
	MsgAbnormalInitialization   = "The action did not initialize and exited unexpectedly."
	MsgAbnormalRun              = "The action did not produce a valid response and exited unexpectedly."
	MsgMemoryExhausted          = "The action exhausted its memory and was aborted."
	MsgResourceProvisionError   = "Failed to provision resources to run the action."
	MsgLogWarningDeveloperError = "The action did not initialize or run as expected. Log data might be missing."
	MsgLogFailure               = "There was an issue while collecting your logs. Data might be missing."
	// MsgNotADictionary is the Node.js runtime's reply when main returns a
	// value that is not an object.
	MsgNotADictionary = "The action did not return a dictionary."
)

// MsgTimedOut is "The action exceeded its time limits of {ms} milliseconds."
// (or "... during initialization.").
func MsgTimedOut(timeoutMs int64, init bool) string {
	s := fmt.Sprintf("The action exceeded its time limits of %d milliseconds", timeoutMs)
	if init {
		return s + " during initialization."
	}
	return s + "."
}

// MsgTruncatedResponse is the application error for a result over the limit;
// trunk is the start of the result, or "" to leave the sentence out.
func MsgTruncatedResponse(length, max int64, trunk string) string {
	s := fmt.Sprintf("The action produced a response that exceeded the allowed length: %d > %d bytes.", length, max)
	if trunk != "" {
		s += " The truncated response was: " + trunk
	}
	return s
}

// MsgTruncatedLogs is the last log line added when logs exceed the limit.
func MsgTruncatedLogs(limit ByteSize) string {
	return fmt.Sprintf("Logs were truncated because the total bytes size exceeds the limit of %d bytes.", limit.Bytes())
}

// MsgInvalidInitResponse is the developer error for a failed /init.
func MsgInvalidInitResponse(body string) string {
	if body == "" {
		return "The action failed during initialization."
	}
	return "The action failed during initialization: " + body
}

// MsgInvalidRunResponse is the developer error for a /run reply that is not
// a JSON object or array.
func MsgInvalidRunResponse(body string) string {
	if body == "" {
		return "The action did not produce a valid JSON or JSON Array response."
	}
	return "The action did not produce a valid JSON or JSON Array response: " + body
}

// ActivationResponse is the outcome of an activation. Result is a JSON
// object or array (absent when nil); Size is the length of the raw container
// reply when known.
type ActivationResponse struct {
	StatusCode int
	Result     json.RawMessage
	Size       *int
}

// Success is a successful response with the given result.
func Success(result json.RawMessage) ActivationResponse {
	return ActivationResponse{StatusCode: StatusSuccess, Result: rawValue(result)}
}

// ErrorResponse is a failed response whose result is {"error": value}.
func ErrorResponse(code int, value json.RawMessage) ActivationResponse {
	if isNull(value) {
		value = json.RawMessage("null")
	}
	var b bytes.Buffer
	b.WriteString(`{"error":`)
	b.Write(bytes.TrimSpace(value))
	b.WriteByte('}')
	return ActivationResponse{StatusCode: code, Result: b.Bytes()}
}

func errorString(code int, msg string) ActivationResponse {
	v, _ := marshalNoEscape(msg) // encoding a string cannot fail
	return ErrorResponse(code, v)
}

// ApplicationError is status 1 with {"error": msg}.
func ApplicationError(msg string) ActivationResponse {
	return errorString(StatusApplicationError, msg)
}

// DeveloperError is status 2 with {"error": msg}.
func DeveloperError(msg string) ActivationResponse { return errorString(StatusDeveloperError, msg) }

// WhiskError is status 3 with {"error": msg}.
func WhiskError(msg string) ActivationResponse { return errorString(StatusWhiskError, msg) }

// IsSuccess reports statusCode 0.
func (r ActivationResponse) IsSuccess() bool { return r.StatusCode == StatusSuccess }

// IsSystemError reports statusCode 3, the only code the controller's health
// bookkeeping counts against an invoker.
func (r ActivationResponse) IsSystemError() bool { return r.StatusCode == StatusWhiskError }

type responseWire struct {
	StatusCode *int            `json:"statusCode"`
	Result     json.RawMessage `json:"result,omitempty"`
	Size       *int            `json:"size,omitempty"`
}

// MarshalJSON writes {statusCode, result?, size?}.
func (r ActivationResponse) MarshalJSON() ([]byte, error) {
	code := r.StatusCode
	return marshalNoEscape(responseWire{StatusCode: &code, Result: rawValue(r.Result), Size: r.Size})
}

// UnmarshalJSON requires a statusCode between 0 and 3.
func (r *ActivationResponse) UnmarshalJSON(b []byte) error {
	var w responseWire
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("activation response", err)
	}
	if w.StatusCode == nil || *w.StatusCode < 0 || *w.StatusCode > 3 {
		return malformed("activation response: statusCode missing or out of range")
	}
	*r = ActivationResponse{StatusCode: *w.StatusCode, Result: rawValue(w.Result), Size: w.Size}
	return nil
}

// extended is the REST form: statusCode replaced by success and status.
func (r ActivationResponse) extended() ([]byte, error) {
	w := newObjWriter()
	if res := rawValue(r.Result); res != nil {
		w.raw("result", res)
	}
	if r.Size != nil {
		w.val("size", *r.Size)
	}
	w.val("success", r.IsSuccess())
	w.val("status", StatusMessage(r.StatusCode))
	return w.bytes()
}

// Activation annotation keys.
const (
	AnnotationPath      = "path"
	AnnotationBinding   = "binding"
	AnnotationKind      = "kind"
	AnnotationLimits    = "limits"
	AnnotationTopmost   = "topmost"
	AnnotationCausedBy  = "causedBy"
	AnnotationInitTime  = "initTime"
	AnnotationWaitTime  = "waitTime"
	AnnotationConductor = "conductor"
	AnnotationTimeout   = "timeout"
)

// DefaultVersion is the semantic version of a new entity.
const DefaultVersion = "0.0.1"

// WhiskActivation is the activation record in its internal form, the one in
// acks and in the activations DB. Namespace is the invoking user's namespace,
// Name the bare action name, Start/End are written as epoch milliseconds
// (readers accept ISO-8601 strings too), Duration covers init plus run.
type WhiskActivation struct {
	Namespace    string
	Name         string
	Subject      string
	ActivationID string
	Start        time.Time
	End          time.Time
	Cause        string
	Response     ActivationResponse
	Logs         []string
	Version      string
	Publish      bool
	Annotations  Parameters
	Duration     *int64
}

// IsSystemError reports whether the response is a whisk error.
func (a *WhiskActivation) IsSystemError() bool { return a.Response.IsSystemError() }

// DocID is the activations DB document id, "<namespace>/<activationId>".
func (a *WhiskActivation) DocID() string { return a.Namespace + "/" + a.ActivationID }

// WithoutLogs returns a copy with no logs, as sent in a ResultMessage.
func (a *WhiskActivation) WithoutLogs() *WhiskActivation {
	c := *a
	c.Logs = nil
	return &c
}

// millis maps the zero time to 0 (OpenWhisk's Instant.EPOCH).
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func (a *WhiskActivation) fields(w *objWriter) {
	w.val("namespace", a.Namespace)
	w.val("name", a.Name)
	w.val("subject", a.Subject)
	w.val("activationId", a.ActivationID)
	w.val("start", millis(a.Start))
	w.val("end", millis(a.End))
	if a.Cause != "" {
		w.val("cause", a.Cause)
	}
}

func (a *WhiskActivation) tail(w *objWriter) {
	w.val("logs", nonNilStrings(a.Logs))
	v := a.Version
	if v == "" {
		v = DefaultVersion
	}
	w.val("version", v)
	w.val("publish", a.Publish)
	w.val("annotations", a.Annotations)
}

// MarshalJSON writes the internal form.
func (a WhiskActivation) MarshalJSON() ([]byte, error) {
	w := newObjWriter()
	a.fields(w)
	w.val("response", a.Response)
	a.tail(w)
	if a.Duration != nil {
		w.val("duration", *a.Duration)
	}
	return w.bytes()
}

// durationMillis is Duration, or end - start when it is missing.
func (a *WhiskActivation) durationMillis() int64 {
	if a.Duration != nil {
		return *a.Duration
	}
	return millis(a.End) - millis(a.Start)
}

// External is the REST API form (OpenWhisk's toExtendedJson): response has
// success and status instead of statusCode; duration is computed when
// missing; an activation that has not ended (end 0) has neither end nor
// duration.
func (a *WhiskActivation) External() ([]byte, error) {
	w := newObjWriter()
	ended := millis(a.End) != 0
	w.val("namespace", a.Namespace)
	w.val("name", a.Name)
	w.val("subject", a.Subject)
	w.val("activationId", a.ActivationID)
	w.val("start", millis(a.Start))
	if ended {
		w.val("end", millis(a.End))
	}
	if a.Cause != "" {
		w.val("cause", a.Cause)
	}
	resp, err := a.Response.extended()
	if err != nil {
		return nil, fmt.Errorf("activation %s response: %w", a.ActivationID, err)
	}
	w.raw("response", resp)
	a.tail(w)
	if ended {
		w.val("duration", a.durationMillis())
	}
	return w.bytes()
}

// Summary is the list form (docs=false): namespace, name, version, publish,
// annotations, activationId, start, cause?, and when ended end, duration and
// a top-level statusCode.
func (a *WhiskActivation) Summary() ([]byte, error) {
	w := newObjWriter()
	w.val("namespace", a.Namespace)
	w.val("name", a.Name)
	v := a.Version
	if v == "" {
		v = DefaultVersion
	}
	w.val("version", v)
	w.val("publish", a.Publish)
	w.val("annotations", a.Annotations)
	w.val("activationId", a.ActivationID)
	w.val("start", millis(a.Start))
	if a.Cause != "" {
		w.val("cause", a.Cause)
	}
	if millis(a.End) != 0 {
		w.val("end", millis(a.End))
		w.val("duration", a.durationMillis())
		w.val("statusCode", a.Response.StatusCode)
	}
	return w.bytes()
}

// UnmarshalJSON reads the internal form. activationId (32 hex), namespace,
// name and response are required; start/end may be epoch ms or ISO strings.
func (a *WhiskActivation) UnmarshalJSON(b []byte) error {
	m, err := decodeObject(b)
	if err != nil {
		return fmt.Errorf("activation: %w", err)
	}
	var out WhiskActivation
	for _, f := range []struct {
		key string
		dst any
		req bool
	}{
		{"namespace", &out.Namespace, true},
		{"name", &out.Name, true},
		{"subject", &out.Subject, false},
		{"activationId", &out.ActivationID, true},
		{"cause", &out.Cause, false},
		{"response", &out.Response, true},
		{"logs", &out.Logs, false},
		{"version", &out.Version, false},
		{"publish", &out.Publish, false},
		{"annotations", &out.Annotations, false},
		{"duration", &out.Duration, false},
	} {
		if err := decodeField(m, f.key, f.dst, f.req); err != nil {
			return fmt.Errorf("activation: %w", err)
		}
	}
	if !ValidActivationID(out.ActivationID) {
		return malformed("activation: activationId %q is not 32 lowercase hex", out.ActivationID)
	}
	if out.Cause != "" && !ValidActivationID(out.Cause) {
		return malformed("activation: cause %q is not an activation id", out.Cause)
	}
	if out.Start, err = readInstant(m["start"]); err != nil {
		return fmt.Errorf("activation start: %w", err)
	}
	if out.End, err = readInstant(m["end"]); err != nil {
		return fmt.Errorf("activation end: %w", err)
	}
	if out.Version == "" {
		out.Version = DefaultVersion
	}
	if out.Logs == nil {
		out.Logs = []string{}
	}
	if out.Annotations == nil {
		out.Annotations = Parameters{}
	}
	*a = out
	return nil
}

// readInstant accepts epoch milliseconds or an ISO-8601 string; absent or
// null reads as the zero time (epoch 0). The result has millisecond
// precision, like what OpenWhisk writes.
func readInstant(v json.RawMessage) (time.Time, error) {
	v = bytes.TrimSpace(v)
	if isNull(v) {
		return time.Time{}, nil
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return time.Time{}, wrapMalformed("timestamp", err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, wrapMalformed("timestamp", err)
		}
		return fromMillis(t.UnixMilli()), nil
	}
	ms, err := parseMillis(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp: %w", err)
	}
	return fromMillis(ms), nil
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
