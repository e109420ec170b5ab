package functions

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
)

//go:embed */index.js */inputs.json
var files embed.FS

// Input sizes every function provides (SeBS vocabulary).
const (
	SizeTest  = "test"
	SizeSmall = "small"
	SizeLarge = "large"
)

// Function is one evaluated action.
type Function struct {
	Name         string
	Code         string // the action source: defines main(params) and sets exports.main when exports exists
	NeedsNetwork bool   // the sandbox must reach the object store on loopback (uploader only)
	// Inputs maps a size to the action parameters. The uploader's inputs have no "url": the caller adds
	// the object store's address with InputWith.
	Inputs map[string]json.RawMessage
}

// order is the stable order of All: the SeBS functions, then the SunSpider ones.
var order = []string{
	"dynamic-html", "sleep", "uploader",
	"binary-search", "crypto-aes", "crypto-md5", "partial-sums", "regexp-dna", "validate-input",
}

var networked = map[string]bool{"uploader": true}

var registry = mustLoad()

// mustLoad reads the embedded actions. A failure is a defect in this package's files, caught by its
// tests, so it panics rather than making every caller handle an impossible error.
func mustLoad() map[string]Function {
	m := make(map[string]Function, len(order))
	for _, name := range order {
		code, err := files.ReadFile(path.Join(name, "index.js"))
		if err != nil {
			panic(fmt.Sprintf("functions: embedded %s/index.js: %v", name, err))
		}
		raw, err := files.ReadFile(path.Join(name, "inputs.json"))
		if err != nil {
			panic(fmt.Sprintf("functions: embedded %s/inputs.json: %v", name, err))
		}
		var inputs map[string]json.RawMessage
		if err := json.Unmarshal(raw, &inputs); err != nil {
			panic(fmt.Sprintf("functions: embedded %s/inputs.json: %v", name, err))
		}
		for size, in := range inputs {
			var compact bytes.Buffer
			if err := json.Compact(&compact, in); err != nil {
				panic(fmt.Sprintf("functions: embedded %s/inputs.json %s: %v", name, size, err))
			}
			inputs[size] = compact.Bytes()
		}
		m[name] = Function{Name: name, Code: string(code), NeedsNetwork: networked[name], Inputs: inputs}
	}
	return m
}

// All returns the nine functions in a stable order (SeBS first, then SunSpider).
func All() []Function {
	out := make([]Function, 0, len(order))
	for _, name := range order {
		out = append(out, registry[name])
	}
	return out
}

// Names returns the function names in the order of All.
func Names() []string { return append([]string(nil), order...) }

// Get returns the named function.
func Get(name string) (Function, error) {
	f, ok := registry[name]
	if !ok {
		return Function{}, fmt.Errorf("functions: unknown function %q (have %v)", name, order)
	}
	return f, nil
}

// Sizes returns the input sizes this function has, sorted test, small, large.
func (f Function) Sizes() []string {
	rank := map[string]int{SizeTest: 0, SizeSmall: 1, SizeLarge: 2}
	out := make([]string, 0, len(f.Inputs))
	for s := range f.Inputs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return rank[out[i]] < rank[out[j]] })
	return out
}

// Input returns the parameters for a size.
func (f Function) Input(size string) (json.RawMessage, error) {
	in, ok := f.Inputs[size]
	if !ok {
		return nil, fmt.Errorf("functions: %s has no %q input (have %v)", f.Name, size, f.Sizes())
	}
	return in, nil
}

// InputWith returns the parameters for a size with fields set or replaced, e.g. the uploader's
// {"url": store.URL()}.
func (f Function) InputWith(size string, fields map[string]any) (json.RawMessage, error) {
	in, err := f.Input(size)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber() // keep integers such as byte sizes and nonces exact
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("functions: %s %s input: %w", f.Name, size, err)
	}
	for k, v := range fields {
		m[k] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("functions: %s %s input with %v: %w", f.Name, size, fields, err)
	}
	return out, nil
}
