package whisk

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Binding names the package a package binding refers to: a package of the
// binding's own namespace or a public (published) package of another one.
type Binding struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Path is "namespace/name", the bound package's document id and the path of
// its actions.
func (b Binding) Path() string { return b.Namespace + "/" + b.Name }

// Package is OpenWhisk's package document (WhiskPackage): a named set of
// actions sharing default parameters, or, when Binding is set, a binding of
// another package whose parameters override the bound package's. The
// controller keeps packages; an invoker never reads one (an activation message
// names the action by its package path, already resolved).
type Package struct {
	Namespace   string     `json:"namespace"`
	Name        string     `json:"name"`
	Binding     *Binding   `json:"binding"` // nil is written as {}, as OpenWhisk writes "no binding"
	Parameters  Parameters `json:"parameters"`
	Version     string     `json:"version"`
	Publish     bool       `json:"publish"`
	Annotations Parameters `json:"annotations"`
	Updated     int64      `json:"updated"`
	// Revision is the stored document's revision. OpenWhisk's package replies do not carry it.
	Revision string `json:"-"`
}

// Path is "namespace/name": the package's document id, and the namespace path
// of its actions.
func (p *Package) Path() string { return p.Namespace + "/" + p.Name }

// MarshalJSON writes the binding as {} when there is none, and parameters and
// annotations as arrays even when empty.
func (p Package) MarshalJSON() ([]byte, error) {
	type plain Package
	w := struct {
		plain
		Binding any `json:"binding"`
	}{plain: plain(p), Binding: struct{}{}}
	if p.Binding != nil {
		w.Binding = *p.Binding
	}
	if w.Parameters == nil {
		w.Parameters = Parameters{}
	}
	if w.Annotations == nil {
		w.Annotations = Parameters{}
	}
	if w.Version == "" {
		w.Version = DefaultVersion
	}
	return marshalNoEscape(w)
}

// UnmarshalJSON reads the document; a binding of {} (or null, or absent) is no
// binding.
func (p *Package) UnmarshalJSON(b []byte) error {
	type plain Package
	var w struct {
		plain
		Binding json.RawMessage `json:"binding"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("package", err)
	}
	out := Package(w.plain)
	bind, err := ParseBinding(w.Binding)
	if err != nil {
		return err
	}
	out.Binding = bind
	if out.Name == "" {
		return malformed("package: name missing")
	}
	if out.Version == "" {
		out.Version = DefaultVersion
	}
	*p = out
	return nil
}

// ParseBinding reads a binding field: {} (or null, or nothing) is no binding,
// otherwise {"namespace","name"} with valid entity names. A leading slash on
// the namespace ("/whisk.system", as users write fully qualified names) is
// dropped.
func ParseBinding(raw json.RawMessage) (*Binding, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, wrapMalformed("binding", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	var b Binding
	if err := decodeField(m, "namespace", &b.Namespace, true); err != nil {
		return nil, err
	}
	if err := decodeField(m, "name", &b.Name, true); err != nil {
		return nil, err
	}
	b.Namespace = strings.TrimPrefix(b.Namespace, "/")
	if !ValidEntityName(b.Namespace) || !ValidEntityName(b.Name) {
		return nil, malformed("binding %q is not a valid namespace and package name", b.Namespace+"/"+b.Name)
	}
	return &b, nil
}
