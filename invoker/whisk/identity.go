package whisk

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Namespace is a user namespace and its uuid.
type Namespace struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
}

// AuthKey is the user's API key, "uuid:key".
//
// OpenWhisk's GenericAuthKey is an arbitrary object; only the basic-auth
// form {"api_key": "uuid:key"} is modelled. Other fields are dropped. An
// empty key is written as {} (a GenericAuthKey without credentials, which
// OpenWhisk's reader accepts): the controller-adapter sends the key only to
// actions with the provide-api-key annotation.
type AuthKey struct {
	APIKey string `json:"api_key,omitempty"`
}

// UUID is the part of the key before the colon.
func (k AuthKey) UUID() string {
	u, _, _ := strings.Cut(k.APIKey, ":")
	return u
}

// Key is the secret part after the colon.
func (k AuthKey) Key() string {
	_, s, _ := strings.Cut(k.APIKey, ":")
	return s
}

// Identity is the invoking subject of an activation (for web actions, the
// action's owner). Limits is OpenWhisk's UserLimits object kept as raw JSON;
// it is written as {} when empty.
type Identity struct {
	Subject   string
	Namespace Namespace
	AuthKey   AuthKey
	Rights    []string
	Limits    json.RawMessage
}

type identityWire struct {
	Subject   string          `json:"subject"`
	Namespace Namespace       `json:"namespace"`
	AuthKey   AuthKey         `json:"authkey"`
	Rights    []string        `json:"rights"`
	Limits    json.RawMessage `json:"limits"`
}

// MarshalJSON always writes rights (an array) and limits (an object), which
// OpenWhisk's reader requires.
func (id Identity) MarshalJSON() ([]byte, error) {
	limits := id.Limits
	if isNull(limits) {
		limits = json.RawMessage("{}")
	}
	return marshalNoEscape(identityWire{
		Subject:   id.Subject,
		Namespace: id.Namespace,
		AuthKey:   id.AuthKey,
		Rights:    nonNilStrings(id.Rights),
		Limits:    limits,
	})
}

// UnmarshalJSON reads an Identity; limits must be an object if present.
func (id *Identity) UnmarshalJSON(b []byte) error {
	var w identityWire
	if err := json.Unmarshal(b, &w); err != nil {
		return wrapMalformed("identity", err)
	}
	limits := rawValue(w.Limits)
	if limits != nil && limits[0] != '{' {
		return malformed("identity: limits must be an object")
	}
	if limits != nil {
		var compact bytes.Buffer
		if err := json.Compact(&compact, limits); err != nil {
			return wrapMalformed("identity limits", err)
		}
		limits = compact.Bytes()
	}
	*id = Identity{
		Subject:   w.Subject,
		Namespace: w.Namespace,
		AuthKey:   w.AuthKey,
		Rights:    nonNilStrings(w.Rights),
		Limits:    limits,
	}
	return nil
}
