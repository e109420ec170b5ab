package whisk

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Rule states (OpenWhisk's Status): a rule is active or inactive; only an active rule's action
// runs when its trigger fires.
const (
	RuleActive   = "active"
	RuleInactive = "inactive"
)

// EntityRef names a trigger or an action the way a rule document refers to it
// (FullyQualifiedEntityName's JSON form without a version): {"path":"ns[/pkg]","name":"n"}.
type EntityRef struct {
	Path string `json:"path"`
	Name string `json:"name"`
}

// String is "path/name", the entity's document id.
func (r EntityRef) String() string { return r.Path + "/" + r.Name }

// ParseEntityRef reads a rule's reference to a trigger or an action: an object
// {"path","name"}, or a string "/ns/name", "ns/name" or "/ns/pkg/name" (as wsk and the npm client
// write it). The namespace "_" is kept: the caller resolves it to its own.
func ParseEntityRef(raw json.RawMessage) (EntityRef, error) {
	raw = bytes.TrimSpace(raw)
	var s string
	if len(raw) > 0 && raw[0] == '{' {
		var r EntityRef
		if err := json.Unmarshal(raw, &r); err != nil {
			return EntityRef{}, wrapMalformed("fully qualified name", err)
		}
		s = r.Path + "/" + r.Name
	} else if err := json.Unmarshal(raw, &s); err != nil {
		return EntityRef{}, malformed("fully qualified name malformed")
	}
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return EntityRef{}, malformed("fully qualified name %q is not namespace[/package]/name", s)
	}
	for _, p := range parts {
		if p != "_" && !ValidEntityName(p) {
			return EntityRef{}, malformed("fully qualified name %q contains illegal characters", s)
		}
	}
	return EntityRef{Path: strings.Join(parts[:len(parts)-1], "/"), Name: parts[len(parts)-1]}, nil
}

// Resolve replaces the default namespace "_" at the root of the path with ns.
func (r EntityRef) Resolve(ns string) EntityRef {
	if root, rest, found := strings.Cut(r.Path, "/"); root == "_" {
		r.Path = ns
		if found {
			r.Path += "/" + rest
		}
	}
	return r
}

// ReducedRule is what a trigger document keeps of each rule that names it: the rule's action
// and its state. The rule's state lives here, not in the rule document (as in OpenWhisk), so that
// a fire reads one document.
type ReducedRule struct {
	Action EntityRef `json:"action"`
	Status string    `json:"status"`
}

// Trigger is OpenWhisk's trigger document (WhiskTrigger): a named event source whose fires run
// the actions of its active rules. Rules maps each rule's document id ("ns/rule") to its action
// and state; it is absent until a rule names the trigger.
type Trigger struct {
	Namespace   string                 `json:"namespace"`
	Name        string                 `json:"name"`
	Parameters  Parameters             `json:"parameters"`
	Limits      json.RawMessage        `json:"limits"`
	Version     string                 `json:"version"`
	Publish     bool                   `json:"publish"`
	Annotations Parameters             `json:"annotations"`
	Rules       map[string]ReducedRule `json:"rules,omitempty"`
	Updated     int64                  `json:"updated"`
	// Revision is the stored document's revision; OpenWhisk's replies do not carry it.
	Revision string `json:"-"`
}

// Path is "namespace/name", the trigger's document id.
func (t *Trigger) Path() string { return t.Namespace + "/" + t.Name }

// MarshalJSON writes parameters and annotations as arrays and limits as {} when empty.
func (t Trigger) MarshalJSON() ([]byte, error) {
	type plain Trigger
	w := plain(t)
	if w.Parameters == nil {
		w.Parameters = Parameters{}
	}
	if w.Annotations == nil {
		w.Annotations = Parameters{}
	}
	if len(bytes.TrimSpace(w.Limits)) == 0 || string(w.Limits) == "null" {
		w.Limits = json.RawMessage("{}")
	}
	if w.Version == "" {
		w.Version = DefaultVersion
	}
	return marshalNoEscape(w)
}

// Rule is OpenWhisk's rule document (WhiskRule): when Trigger fires, run Action. Its state is
// kept by the trigger (Trigger.Rules); Status is filled in for replies only.
type Rule struct {
	Namespace   string     `json:"namespace"`
	Name        string     `json:"name"`
	Status      string     `json:"status,omitempty"`
	Trigger     EntityRef  `json:"trigger"`
	Action      EntityRef  `json:"action"`
	Version     string     `json:"version"`
	Publish     bool       `json:"publish"`
	Annotations Parameters `json:"annotations"`
	Updated     int64      `json:"updated"`
	// Revision is the stored document's revision; OpenWhisk's replies do not carry it.
	Revision string `json:"-"`
}

// Path is "namespace/name", the rule's document id and its key in Trigger.Rules.
func (r *Rule) Path() string { return r.Namespace + "/" + r.Name }

// MarshalJSON writes annotations as an array even when empty.
func (r Rule) MarshalJSON() ([]byte, error) {
	type plain Rule
	w := plain(r)
	if w.Annotations == nil {
		w.Annotations = Parameters{}
	}
	if w.Version == "" {
		w.Version = DefaultVersion
	}
	return marshalNoEscape(w)
}
