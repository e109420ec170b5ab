package whisk

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// KeyValue is one parameter or annotation. Init marks a parameter passed to
// /init (as environment) rather than /run; Encryption names the scheme of a
// parameter encrypted at rest.
type KeyValue struct {
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"value"`
	Init       bool            `json:"init,omitempty"`
	Encryption string          `json:"encryption,omitempty"`
}

// Parameters is OpenWhisk's [{key,value}] list (parameters and annotations).
// Keys are unique; order is kept for stable output.
type Parameters []KeyValue

// Get returns the raw value of key.
func (p Parameters) Get(key string) (json.RawMessage, bool) {
	for _, kv := range p {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// GetString returns the value of key if it is a JSON string.
func (p Parameters) GetString(key string) (string, bool) {
	v, ok := p.Get(key)
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// IsTruthy follows OpenWhisk: booleans as is, numbers != 0, non-empty
// strings, null false, objects and arrays true; missing keys give
// valueForMissing.
func (p Parameters) IsTruthy(key string, valueForMissing bool) bool {
	v, ok := p.Get(key)
	if !ok {
		return valueForMissing
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case 't':
		return true
	case 'f', 'n':
		return false
	case '"':
		return len(v) > 2
	case '{', '[':
		return true
	default:
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return true
		}
		return f != 0
	}
}

// Set sets key to value (a json.RawMessage is used as is, anything else is
// encoded), replacing an existing entry in place.
func (p *Parameters) Set(key string, value any) error {
	raw, ok := value.(json.RawMessage)
	if !ok {
		b, err := marshalNoEscape(value)
		if err != nil {
			return fmt.Errorf("parameter %q: %w", key, err)
		}
		raw = b
	} else if !json.Valid(raw) {
		return fmt.Errorf("parameter %q: %w", key, malformed("value is not valid JSON"))
	}
	for i := range *p {
		if (*p)[i].Key == key {
			(*p)[i].Value = raw
			return nil
		}
	}
	*p = append(*p, KeyValue{Key: key, Value: raw})
	return nil
}

// Merge returns p with other's entries on top (other wins), as OpenWhisk
// merges package parameters under action parameters.
func (p Parameters) Merge(other Parameters) Parameters {
	out := make(Parameters, 0, len(p)+len(other))
	out = append(out, p...)
	for _, kv := range other {
		replaced := false
		for i := range out {
			if out[i].Key == kv.Key {
				out[i] = kv
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// ToObject returns {key: value, ...}.
func (p Parameters) ToObject() (json.RawMessage, error) {
	w := newObjWriter()
	for _, kv := range p {
		// Keys are user data here, so encode them properly.
		k, err := marshalNoEscape(kv.Key)
		if err != nil {
			return nil, err
		}
		if w.n > 0 {
			w.buf.WriteByte(',')
		}
		w.n++
		w.buf.Write(k)
		w.buf.WriteByte(':')
		w.buf.Write(valueOrNull(kv.Value))
	}
	return w.bytes()
}

// Size is OpenWhisk's measure of parameters against whisk.parameter-size-limit
// (Parameters.size): the bytes of every key plus those of its value printed as
// compact JSON. It is smaller than the JSON object the parameters become in an
// activation's content, which adds quotes, colons and commas.
func (p Parameters) Size() int {
	n := 0
	for _, kv := range p {
		n += len(kv.Key) + compactLen(kv.Value)
	}
	return n
}

// compactLen is the length of v as compact JSON (null when absent): v without
// the whitespace outside its strings.
func compactLen(v json.RawMessage) int {
	n, inString, escaped := 0, false, false
	for _, c := range v {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '"':
			inString = true
		}
		n++
	}
	if n == 0 {
		return len("null")
	}
	return n
}

// InitKeys returns the keys of parameters marked init.
func (p Parameters) InitKeys() []string {
	keys := []string{}
	for _, kv := range p {
		if kv.Init {
			keys = append(keys, kv.Key)
		}
	}
	return keys
}

func valueOrNull(v json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(v)) == 0 {
		return json.RawMessage("null")
	}
	return v
}

// MarshalJSON writes an array, [] when empty.
func (p Parameters) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, kv := range p {
		if i > 0 {
			buf.WriteByte(',')
		}
		kv.Value = valueOrNull(kv.Value)
		b, err := marshalNoEscape(kv)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %w", kv.Key, err)
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// UnmarshalJSON requires an array of objects each with a string key and a
// value (which may be null). A repeated key keeps the last value.
func (p *Parameters) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		return malformed("parameters must be an array")
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return wrapMalformed("parameters", err)
	}
	out := make(Parameters, 0, len(items))
	index := make(map[string]int, len(items))
	for i, it := range items {
		var kv KeyValue
		if it == nil {
			return malformed("parameter %d is not an object", i)
		}
		if err := decodeField(it, "key", &kv.Key, true); err != nil {
			return fmt.Errorf("parameter %d: %w", i, err)
		}
		v, ok := it["value"]
		if !ok {
			return malformed("parameter %q has no value", kv.Key)
		}
		kv.Value = rawValue(v)
		if kv.Value == nil {
			kv.Value = json.RawMessage("null")
		}
		if err := decodeField(it, "init", &kv.Init, false); err != nil {
			return fmt.Errorf("parameter %q: %w", kv.Key, err)
		}
		if err := decodeField(it, "encryption", &kv.Encryption, false); err != nil {
			return fmt.Errorf("parameter %q: %w", kv.Key, err)
		}
		if j, dup := index[kv.Key]; dup {
			out[j] = kv
			continue
		}
		index[kv.Key] = len(out)
		out = append(out, kv)
	}
	*p = out
	return nil
}
