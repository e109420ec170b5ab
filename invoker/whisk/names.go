package whisk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// EntityNameMaxLength is the longest entity name or path segment OpenWhisk allows.
const EntityNameMaxLength = 256

// ValidEntityName reports whether s is a valid OpenWhisk entity name or path
// segment: [\w] or [\w][\w@ .&-]*[\w@.&-], at most 256 characters, where \w is
// ASCII letters, digits and underscore.
func ValidEntityName(s string) bool {
	if len(s) == 0 || len(s) > EntityNameMaxLength {
		return false
	}
	word := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	if !word(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		last := i == len(s)-1
		switch {
		case word(c), c == '@', c == '.', c == '&', c == '-':
		case c == ' ' && !last:
		default:
			return false
		}
	}
	return true
}

// splitEntityPath splits a path on "/", dropping empty parts, and validates
// every part (OpenWhisk's EntityPath).
func splitEntityPath(p string) ([]string, error) {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue
		}
		if !ValidEntityName(s) {
			return nil, malformed("path part %q is not a valid entity name", s)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return nil, malformed("path %q is empty", p)
	}
	return parts, nil
}

// FullyQualifiedEntityName names an action: Path is "ns" or "ns/pkg", Name
// the action, Version a semantic version ("0.0.1") when known, Binding the
// package binding it was invoked through, if any.
type FullyQualifiedEntityName struct {
	Path    string
	Name    string
	Version string
	Binding string
}

// ParseEntityName parses "ns/act", "ns/pkg/act" or "/ns/pkg/act".
func ParseEntityName(s string) (FullyQualifiedEntityName, error) {
	parts, err := splitEntityPath(s)
	if err != nil {
		return FullyQualifiedEntityName{}, err
	}
	if len(parts) < 2 {
		return FullyQualifiedEntityName{}, malformed("entity name %q has no namespace", s)
	}
	return FullyQualifiedEntityName{
		Path: strings.Join(parts[:len(parts)-1], "/"),
		Name: parts[len(parts)-1],
	}, nil
}

// String is "path/name", which is also the action's document id.
func (n FullyQualifiedEntityName) String() string { return n.Path + "/" + n.Name }

// DocID is the entity DB document id, "ns[/pkg]/name".
func (n FullyQualifiedEntityName) DocID() string { return n.String() }

// QualifiedNameWithLeadingSlash is "/ns[/pkg]/name", as in __OW_ACTION_NAME.
func (n FullyQualifiedEntityName) QualifiedNameWithLeadingSlash() string { return "/" + n.String() }

// Namespace is the first segment of Path.
func (n FullyQualifiedEntityName) Namespace() string {
	ns, _, _ := strings.Cut(n.Path, "/")
	return ns
}

// Package is the second segment of Path, or "" for the default package.
func (n FullyQualifiedEntityName) Package() string {
	_, rest, _ := strings.Cut(n.Path, "/")
	pkg, _, _ := strings.Cut(rest, "/")
	return pkg
}

// Validate checks the path and name the way OpenWhisk's reader does and
// normalises Path and Binding (empty segments and slashes dropped).
func (n *FullyQualifiedEntityName) Validate() error {
	parts, err := splitEntityPath(n.Path)
	if err != nil {
		return fmt.Errorf("entity path: %w", err)
	}
	if !ValidEntityName(n.Name) {
		return malformed("entity name %q is not valid", n.Name)
	}
	n.Path = strings.Join(parts, "/")
	if n.Binding != "" {
		b, err := splitEntityPath(n.Binding)
		if err != nil {
			return fmt.Errorf("binding: %w", err)
		}
		n.Binding = strings.Join(b, "/")
	}
	return nil
}

type fqnWire struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Binding string `json:"binding,omitempty"`
}

// MarshalJSON writes the object form {path,name,version?,binding?}.
func (n FullyQualifiedEntityName) MarshalJSON() ([]byte, error) {
	return marshalNoEscape(fqnWire(n))
}

// UnmarshalJSON accepts the object form or a plain "ns[/pkg]/name" string.
func (n *FullyQualifiedEntityName) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return wrapMalformed("entity name", err)
		}
		parsed, err := ParseEntityName(s)
		if err != nil {
			return err
		}
		*n = parsed
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return malformed("fully qualified name malformed")
	}
	var w fqnWire
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("fully qualified name", err)
	}
	v := FullyQualifiedEntityName(w)
	if err := v.Validate(); err != nil {
		return err
	}
	*n = v
	return nil
}

// controllerIDMaxLength leaves room for topic prefixes within Kafka's 249.
const controllerIDMaxLength = 249 - 121

// ControllerInstanceID identifies a controller; acks for its activations go
// to topic "completed" + AsString.
type ControllerInstanceID struct {
	AsString     string
	InstanceType string
}

// NewControllerInstanceID returns the id with InstanceType "controller".
func NewControllerInstanceID(id string) ControllerInstanceID {
	return ControllerInstanceID{AsString: id, InstanceType: "controller"}
}

// AckTopic is the unprefixed topic acks go to, e.g. "completed0".
func (c ControllerInstanceID) AckTopic() string { return "completed" + c.AsString }

// Validate checks the id is usable in a Kafka topic name.
func (c ControllerInstanceID) Validate() error {
	if c.AsString == "" || len(c.AsString) > controllerIDMaxLength {
		return malformed("controller instance id %q has invalid length", c.AsString)
	}
	for i := 0; i < len(c.AsString); i++ {
		ch := c.AsString[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return malformed("controller instance id %q contains invalid characters", c.AsString)
		}
	}
	if c.InstanceType != "" && c.InstanceType != "controller" {
		return malformed("instanceType %q is not controller", c.InstanceType)
	}
	return nil
}

type controllerWire struct {
	AsString     string `json:"asString"`
	InstanceType string `json:"instanceType"`
}

// MarshalJSON always writes instanceType "controller".
func (c ControllerInstanceID) MarshalJSON() ([]byte, error) {
	return marshalNoEscape(controllerWire{AsString: c.AsString, InstanceType: "controller"})
}

// UnmarshalJSON requires asString; instanceType may be absent but must be
// "controller" if present.
func (c *ControllerInstanceID) UnmarshalJSON(b []byte) error {
	var w struct {
		AsString     *string `json:"asString"`
		InstanceType string  `json:"instanceType"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("controller instance id", err)
	}
	if w.AsString == nil {
		return malformed("controller instance id: asString missing")
	}
	v := ControllerInstanceID{AsString: *w.AsString, InstanceType: "controller"}
	if w.InstanceType != "" && w.InstanceType != "controller" {
		return malformed("controller instance id: instanceType %q", w.InstanceType)
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*c = v
	return nil
}

// InvokerInstanceID identifies an invoker. Instance numbers must be small
// dense integers from 0: the controller indexes its invoker list by them.
type InvokerInstanceID struct {
	Instance            int
	UniqueName          *string
	DisplayedName       *string
	UserMemory          ByteSize
	BusyMemory          *ByteSize
	Tags                []string
	DedicatedNamespaces []string
}

// Name is "invoker" + instance, the invoker's topic and consumer group.
func (i InvokerInstanceID) Name() string { return fmt.Sprintf("invoker%d", i.Instance) }

// String is OpenWhisk's "invoker0[/uniqueName][/displayedName]".
func (i InvokerInstanceID) String() string {
	s := i.Name()
	if i.UniqueName != nil {
		s += "/" + *i.UniqueName
	}
	if i.DisplayedName != nil {
		s += "/" + *i.DisplayedName
	}
	return s
}

// MarshalJSON writes the fields OpenWhisk's reader requires (instance,
// userMemory, instanceType, tags, dedicatedNamespaces; arrays even when
// empty) in OpenWhisk's order, then the optional ones.
func (i InvokerInstanceID) MarshalJSON() ([]byte, error) {
	if i.Instance < 0 {
		return nil, fmt.Errorf("invoker instance %d is negative", i.Instance)
	}
	w := newObjWriter()
	w.val("instance", i.Instance)
	w.val("userMemory", i.UserMemory)
	if i.BusyMemory != nil {
		w.val("busyMemory", *i.BusyMemory)
	}
	w.val("instanceType", "invoker")
	w.val("tags", nonNilStrings(i.Tags))
	w.val("dedicatedNamespaces", nonNilStrings(i.DedicatedNamespaces))
	if i.UniqueName != nil {
		w.val("uniqueName", *i.UniqueName)
	}
	if i.DisplayedName != nil {
		w.val("displayedName", *i.DisplayedName)
	}
	return w.bytes()
}

// UnmarshalJSON requires instance and userMemory; instanceType must be
// "invoker" when present. Missing arrays read as empty.
func (i *InvokerInstanceID) UnmarshalJSON(b []byte) error {
	var w struct {
		Instance            *int      `json:"instance"`
		UniqueName          *string   `json:"uniqueName"`
		DisplayedName       *string   `json:"displayedName"`
		UserMemory          *ByteSize `json:"userMemory"`
		BusyMemory          *ByteSize `json:"busyMemory"`
		InstanceType        string    `json:"instanceType"`
		Tags                []string  `json:"tags"`
		DedicatedNamespaces []string  `json:"dedicatedNamespaces"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("invoker instance id", err)
	}
	switch {
	case w.Instance == nil:
		return malformed("invoker instance id: instance missing")
	case *w.Instance < 0:
		return malformed("invoker instance id: instance %d is negative", *w.Instance)
	case w.UserMemory == nil:
		return malformed("invoker instance id: userMemory missing")
	case w.InstanceType != "" && w.InstanceType != "invoker":
		return malformed("invoker instance id: instanceType %q", w.InstanceType)
	}
	*i = InvokerInstanceID{
		Instance:            *w.Instance,
		UniqueName:          w.UniqueName,
		DisplayedName:       w.DisplayedName,
		UserMemory:          *w.UserMemory,
		BusyMemory:          w.BusyMemory,
		Tags:                nonNilStrings(w.Tags),
		DedicatedNamespaces: nonNilStrings(w.DedicatedNamespaces),
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
