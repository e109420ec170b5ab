package functions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ObjectDigester reports the SHA-256 (hex) of a stored object; *objectstore.Store implements it.
type ObjectDigester interface {
	Digest(bucket, key string) (string, error)
}

// ValidateOption adjusts Validate.
type ValidateOption func(*validateConfig)

type validateConfig struct {
	store ObjectDigester
}

// WithObjectStore makes the uploader's validation also check that the object store holds exactly the
// bytes the function says it uploaded. Without it only the function's own report is checked.
func WithObjectStore(store ObjectDigester) ValidateOption {
	return func(c *validateConfig) { c.store = store }
}

// ErrActionError is wrapped when the result is an OpenWhisk application error ({"error": ...}).
var ErrActionError = errors.New("action returned an error")

type validator func(input, result json.RawMessage, cfg *validateConfig) error

var validators = map[string]validator{
	"dynamic-html":   validateDynamicHTML,
	"sleep":          validateSleep,
	"uploader":       validateUploader,
	"binary-search":  validateBinarySearch,
	"crypto-aes":     validateCryptoAES,
	"crypto-md5":     validateCryptoMD5,
	"partial-sums":   validatePartialSums,
	"regexp-dna":     validateRegexpDNA,
	"validate-input": validateValidateInput,
}

// golden holds the published check values of the reference ("small") inputs. They are checked in
// addition to the recomputation, so a bug shared by an action and its Go recomputation cannot pass.
var golden = map[string]func(result json.RawMessage) error{
	"binary-search":  goldenBinarySearch,
	"crypto-aes":     goldenCryptoAES,
	"crypto-md5":     goldenCryptoMD5,
	"partial-sums":   goldenPartialSums,
	"regexp-dna":     goldenRegexpDNA,
	"validate-input": goldenValidateInput,
}

// Validate checks an activation result of the named function. input is the parameters the function was
// invoked with; when empty, the embedded input for size is used. The expected output is recomputed from
// the input in Go; when the input is the embedded "small" one, the published check values are checked
// too. The error says which value differs.
func Validate(name, size string, input, result json.RawMessage, opts ...ValidateOption) error {
	f, err := Get(name)
	if err != nil {
		return err
	}
	var cfg validateConfig
	for _, o := range opts {
		o(&cfg)
	}
	if len(bytes.TrimSpace(input)) == 0 {
		if input, err = f.Input(size); err != nil {
			return err
		}
	}
	if err := checkIsResult(result); err != nil {
		return fmt.Errorf("functions: %s (%s): %w", name, size, err)
	}
	if err := validators[name](input, result, &cfg); err != nil {
		return fmt.Errorf("functions: %s (%s): %w", name, size, err)
	}
	if g := golden[name]; g != nil && size == SizeSmall && sameJSON(input, f.Inputs[SizeSmall]) {
		if err := g(result); err != nil {
			return fmt.Errorf("functions: %s (%s) reference check: %w", name, size, err)
		}
	}
	return nil
}

// checkIsResult rejects non-objects and OpenWhisk application errors up front, with the action's message.
func checkIsResult(result json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(result, &m); err != nil {
		return fmt.Errorf("result is not a JSON object: %w", err)
	}
	if e, ok := m["error"]; ok {
		return fmt.Errorf("%w: %s", ErrActionError, e)
	}
	return nil
}

// decode parses raw into v (a struct of pointer fields) and reports the first required field left nil.
func decode(what string, raw json.RawMessage, v any, required ...string) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, f := range required {
		if v, ok := probe[f]; !ok || string(v) == "null" {
			return fmt.Errorf("%s: missing field %q", what, f)
		}
	}
	return nil
}

// sameJSON reports whether two JSON documents are equal as values (key order and spacing ignored).
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	xa, err1 := json.Marshal(x)
	yb, err2 := json.Marshal(y)
	return err1 == nil && err2 == nil && bytes.Equal(xa, yb)
}

func intOr(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// inRange rejects inputs the action itself refuses, so the Go recomputation is never asked to do more
// work than the action would.
func inRange(name string, v, lo, hi int64) error {
	if v < lo || v > hi {
		return fmt.Errorf("input %s = %d outside [%d, %d]", name, v, lo, hi)
	}
	return nil
}
