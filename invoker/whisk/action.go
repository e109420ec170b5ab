package whisk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// OpenWhisk's system limits for actions (whisk.time-limit, whisk.memory,
// whisk.log-limit, whisk.concurrency-limit in application.conf).
const (
	TimeoutMinMs       = 100
	TimeoutMaxMs       = 300000
	TimeoutDefaultMs   = 60000
	MemoryMinMB        = 128
	MemoryMaxMB        = 512
	MemoryDefaultMB    = 256
	LogsMinMB          = 0
	LogsMaxMB          = 10
	LogsDefaultMB      = 10
	ConcurrencyMin     = 1
	ConcurrencyMax     = 1
	ConcurrencyDefault = 1
)

// ActionLimits are an action's limits: Timeout in ms, Memory and Logs in MB,
// Concurrency the activations one container may run at once.
type ActionLimits struct {
	Timeout     int  `json:"timeout"`
	Memory      int  `json:"memory"`
	Logs        int  `json:"logs"`
	Concurrency int  `json:"concurrency"`
	Instances   *int `json:"instances,omitempty"`
}

// DefaultLimits are 60000 ms, 256 MB, 10 MB of logs, concurrency 1.
func DefaultLimits() ActionLimits {
	return ActionLimits{Timeout: TimeoutDefaultMs, Memory: MemoryDefaultMB, Logs: LogsDefaultMB, Concurrency: ConcurrencyDefault}
}

// UnmarshalJSON fills fields that are absent with the defaults.
func (l *ActionLimits) UnmarshalJSON(b []byte) error {
	type plain ActionLimits
	v := plain(DefaultLimits())
	if err := json.Unmarshal(b, &v); err != nil {
		return wrapMalformed("action limits", err)
	}
	*l = ActionLimits(v)
	return nil
}

// Validate checks the limits against the system bounds.
func (l ActionLimits) Validate() error {
	switch {
	case l.Timeout < TimeoutMinMs || l.Timeout > TimeoutMaxMs:
		return malformed("timeout %d ms is outside %d..%d", l.Timeout, TimeoutMinMs, TimeoutMaxMs)
	case l.Memory < MemoryMinMB || l.Memory > MemoryMaxMB:
		return malformed("memory %d MB is outside %d..%d", l.Memory, MemoryMinMB, MemoryMaxMB)
	case l.Logs < LogsMinMB || l.Logs > LogsMaxMB:
		return malformed("logs %d MB is outside %d..%d", l.Logs, LogsMinMB, LogsMaxMB)
	case l.Concurrency < ConcurrencyMin || l.Concurrency > ConcurrencyMax:
		return malformed("concurrency %d is outside %d..%d", l.Concurrency, ConcurrencyMin, ConcurrencyMax)
	}
	return nil
}

// MemoryBytes is the memory limit as a ByteSize.
func (l ActionLimits) MemoryBytes() ByteSize { return MB(int64(l.Memory)) }

// LogsBytes is the log limit as a ByteSize.
func (l ActionLimits) LogsBytes() ByteSize { return MB(int64(l.Logs)) }

// Attachment is a code attachment record as stored in the entity DB
// ("mem:<base64>" inline or "couch:<uuid>").
type Attachment struct {
	AttachmentName string `json:"attachmentName"`
	AttachmentType string `json:"attachmentType"`
	Length         *int64 `json:"length,omitempty"`
	Digest         string `json:"digest,omitempty"`
}

// Exec kinds that are not runtimes.
const (
	KindSequence = "sequence"
	KindBlackbox = "blackbox"
)

// Exec is how an action runs. Code kinds carry Code (base64 when Binary);
// blackbox carries Image (and optional Code); sequence carries Components
// ("/ns/pkg/act"). In the entity DB code may be an attachment record instead
// of a string; it is then in CodeAttachment and Code is empty.
type Exec struct {
	Kind           string
	Code           string
	CodeAttachment *Attachment
	Binary         bool
	Main           string
	Image          string
	Components     []string
}

// MarshalJSON writes the shape OpenWhisk writes for the kind.
func (e Exec) MarshalJSON() ([]byte, error) {
	w := newObjWriter()
	w.val("kind", e.Kind)
	if e.Kind == KindSequence {
		w.val("components", nonNilStrings(e.Components))
		return w.bytes()
	}
	if e.Kind == KindBlackbox || e.Image != "" {
		w.val("image", e.Image)
	}
	switch {
	case e.CodeAttachment != nil:
		w.val("code", e.CodeAttachment)
	case e.Code != "" || e.Kind != KindBlackbox:
		w.val("code", e.Code)
	}
	w.val("binary", e.Binary)
	if e.Main != "" {
		w.val("main", e.Main)
	}
	return w.bytes()
}

// UnmarshalJSON reads exec; code may be a string or an attachment object.
func (e *Exec) UnmarshalJSON(b []byte) error {
	var w struct {
		Kind       string          `json:"kind"`
		Code       json.RawMessage `json:"code"`
		Binary     bool            `json:"binary"`
		Main       string          `json:"main"`
		Image      string          `json:"image"`
		Components []string        `json:"components"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("exec", err)
	}
	if w.Kind == "" {
		return malformed("exec: kind missing")
	}
	out := Exec{Kind: w.Kind, Binary: w.Binary, Main: w.Main, Image: w.Image, Components: w.Components}
	code := bytes.TrimSpace(w.Code)
	switch {
	case isNull(code):
	case code[0] == '"':
		if err := json.Unmarshal(code, &out.Code); err != nil {
			return wrapMalformed("exec code", err)
		}
	case code[0] == '{':
		out.CodeAttachment = &Attachment{}
		if err := json.Unmarshal(code, out.CodeAttachment); err != nil {
			return wrapMalformed("exec code attachment", err)
		}
	default:
		return malformed("exec: code must be a string or an attachment")
	}
	*e = out
	return nil
}

// ExecKind is a runtime kind such as "nodejs:20" or "nodejs:default".
type ExecKind string

// Runtime describes one runtime kind: the OpenWhisk action image it runs in.
type Runtime struct {
	Kind    string
	Image   string // e.g. "openwhisk/action-nodejs-v20:nightly"
	Default bool   // the family's default kind ("nodejs:default")
}

// Runtimes are the kinds this platform knows, after OpenWhisk's
// runtimes.json. The enclave runtime serves the Node.js kinds, and each kind
// runs what it names: the enclave runtime is Node.js 20, so nodejs:18 is not
// offered (an action of that kind would run on Node 20) and is refused at
// create, as OpenWhisk refuses a kind its manifest does not list.
var Runtimes = []Runtime{
	{Kind: "nodejs:20", Image: "openwhisk/action-nodejs-v20:nightly", Default: true},
}

// Family is the part before the colon ("nodejs").
func (k ExecKind) Family() string {
	f, _, _ := strings.Cut(string(k), ":")
	return f
}

// Resolve maps "<family>:default" to the family's default kind and checks
// that the kind is known.
func (k ExecKind) Resolve() (ExecKind, error) {
	fam, ver, _ := strings.Cut(string(k), ":")
	for _, r := range Runtimes {
		if r.Kind == string(k) || ver == "default" && r.Default && ExecKind(r.Kind).Family() == fam {
			return ExecKind(r.Kind), nil
		}
	}
	return "", fmt.Errorf("kind %q is not supported", string(k))
}

// Image is the action image for the kind (after Resolve).
func (k ExecKind) Image() (string, error) {
	r, err := k.Resolve()
	if err != nil {
		return "", err
	}
	for _, rt := range Runtimes {
		if rt.Kind == string(r) {
			return rt.Image, nil
		}
	}
	return "", fmt.Errorf("kind %q has no image", string(k))
}

// Action is the action document as served by
// GET /api/v1/namespaces/{ns}/actions/{name}?code=true.
//
// Revision is the entity's document revision. OpenWhisk's REST API does not
// return it; our controller-adapter adds it as the field "rev" so the
// invoker can cache by name+revision as OpenWhisk's invoker does. A CouchDB
// document's "_rev" is read into it as well.
type Action struct {
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	Version     string       `json:"version"`
	Publish     bool         `json:"publish"`
	Exec        Exec         `json:"exec"`
	Parameters  Parameters   `json:"parameters"`
	Annotations Parameters   `json:"annotations"`
	Limits      ActionLimits `json:"limits"`
	Updated     int64        `json:"updated"`
	Revision    string       `json:"rev,omitempty"`
}

// FullyQualifiedName is the action's name with its namespace path.
func (a *Action) FullyQualifiedName() FullyQualifiedEntityName {
	return FullyQualifiedEntityName{Path: a.Namespace, Name: a.Name, Version: a.Version}
}

// MarshalJSON writes parameters and annotations as arrays even when empty.
func (a Action) MarshalJSON() ([]byte, error) {
	type plain Action
	p := plain(a)
	if p.Parameters == nil {
		p.Parameters = Parameters{}
	}
	if p.Annotations == nil {
		p.Annotations = Parameters{}
	}
	if p.Version == "" {
		p.Version = DefaultVersion
	}
	return marshalNoEscape(p)
}

// UnmarshalJSON reads the document; missing limits take the defaults.
func (a *Action) UnmarshalJSON(b []byte) error {
	type plain Action
	var w struct {
		plain
		CouchRev string `json:"_rev"`
	}
	w.Limits = DefaultLimits()
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("action", err)
	}
	out := Action(w.plain)
	if out.Revision == "" {
		out.Revision = w.CouchRev
	}
	if out.Name == "" || out.Exec.Kind == "" {
		return malformed("action: name or exec.kind missing")
	}
	if out.Version == "" {
		out.Version = DefaultVersion
	}
	*a = out
	return nil
}
