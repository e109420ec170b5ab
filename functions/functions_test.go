package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/functions/objectstore"
)

// nodeHarness loads an action the way an OpenWhisk Node runtime does (module with exports.main), feeds
// it the JSON parameters from stdin and prints the JSON result.
const nodeHarness = `
const m = require(process.argv[1]);
let data = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { data += c; });
process.stdin.on('end', async () => {
  try {
    const r = await m.main(JSON.parse(data));
    process.stdout.write(JSON.stringify(r));
  } catch (e) {
    process.stderr.write(String((e && e.stack) || e));
    process.exitCode = 1;
  }
});`

// vmHarness runs an action's source in a bare V8 context: no require, process, timers or performance,
// only an exports object. This is the least an isolate-per-activation runtime offers.
const vmHarness = `
const vm = require('node:vm');
const fs = require('node:fs');
const code = fs.readFileSync(process.argv[1], 'utf8');
let data = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { data += c; });
process.stdin.on('end', async () => {
  try {
    const sandbox = { exports: {} };
    vm.runInContext(code, vm.createContext(sandbox), { filename: process.argv[1] });
    const r = await sandbox.exports.main(JSON.parse(data));
    process.stdout.write(JSON.stringify(r));
  } catch (e) {
    process.stderr.write(String((e && e.stack) || e));
    process.exitCode = 1;
  }
});`

// runNode runs an action in a fresh node process. The environment drops NODE_EXTRA_CA_CERTS, which
// slows every Node start by tens of milliseconds.
func runNode(t *testing.T, harness, name string, params json.RawMessage) json.RawMessage {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required to run the actions: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e", harness, filepath.Join(actionDir(t), name, "index.js"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = bytes.NewReader(params)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", name, err, stderr.String())
	}
	return stdout.Bytes()
}

func actionDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func startStore(t *testing.T, opts objectstore.Options) *objectstore.Store {
	t.Helper()
	s, err := objectstore.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// corrupt returns a copy of result with one value the validator must notice changed.
var corrupt = map[string]func(m map[string]any){
	"dynamic-html": func(m map[string]any) {
		m["result"] = strings.Replace(m["result"].(string), "<li>", "<lx>", 1)
	},
	// Half the asked time, whatever the run slept: a loaded machine may oversleep by more than 2x.
	"sleep":         func(m map[string]any) { m["slept_ms"] = m["sleep"].(float64) * 1000 / 2 },
	"uploader":      func(m map[string]any) { m["sha256"] = flipHex(m["sha256"].(string)) },
	"binary-search": func(m map[string]any) { m["ret"] = m["ret"].(float64) + 1 },
	"crypto-aes": func(m map[string]any) {
		c := []rune(m["ciphertext"].(string))
		c[len(c)-1] ^= 1
		m["ciphertext"] = string(c)
	},
	"crypto-md5": func(m map[string]any) { m["digest"] = flipHex(m["digest"].(string)) },
	"partial-sums": func(m map[string]any) {
		// One ulp: the exact series must be compared bit for bit.
		m["total"] = math.Nextafter(m["total"].(float64), math.Inf(1))
	},
	"regexp-dna": func(m map[string]any) {
		c := m["counts"].([]any)[1].(map[string]any)
		c["count"] = c["count"].(float64) + 1
	},
	"validate-input": func(m map[string]any) { m["hash"] = flipHex(m["hash"].(string)) },
}

func flipHex(s string) string {
	if s[0] == '0' {
		return "1" + s[1:]
	}
	return "0" + s[1:]
}

func corrupted(t *testing.T, name string, result json.RawMessage) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(result, &m); err != nil {
		t.Fatal(err)
	}
	corrupt[name](m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegistry(t *testing.T) {
	all := All()
	if len(all) != 9 {
		t.Fatalf("All() has %d functions, want 9", len(all))
	}
	for i, f := range all {
		if f.Name != Names()[i] {
			t.Errorf("All()[%d] = %s, Names()[%d] = %s", i, f.Name, i, Names()[i])
		}
		if !strings.Contains(f.Code, "function main(") || !strings.Contains(f.Code, "exports.main = main") {
			t.Errorf("%s: code lacks main or exports.main", f.Name)
		}
		if strings.Contains(f.Code, "require(") != f.NeedsNetwork {
			t.Errorf("%s: uses require = %v but NeedsNetwork = %v; only the uploader may need Node modules",
				f.Name, strings.Contains(f.Code, "require("), f.NeedsNetwork)
		}
		if got := f.Sizes(); strings.Join(got, ",") != "test,small,large" {
			t.Errorf("%s: sizes %v", f.Name, got)
		}
		if _, ok := corrupt[f.Name]; !ok {
			t.Errorf("%s: no corruption case in the tests", f.Name)
		}
		g, err := Get(f.Name)
		if err != nil || g.Name != f.Name {
			t.Errorf("Get(%s) = %v, %v", f.Name, g.Name, err)
		}
	}
	if _, err := Get("nope"); err == nil {
		t.Error("Get(nope) succeeded")
	}
	f, _ := Get("crypto-md5")
	if _, err := f.Input("huge"); err == nil {
		t.Error("Input(huge) succeeded")
	}
}

// TestActionsInNode runs every function's test and small inputs in real Node and validates the results,
// then checks that a corrupted copy of each result is rejected.
func TestActionsInNode(t *testing.T) {
	store := startStore(t, objectstore.Options{})
	for _, f := range All() {
		for _, size := range []string{SizeTest, SizeSmall} {
			t.Run(f.Name+"/"+size, func(t *testing.T) {
				t.Parallel()
				input, err := f.Input(size)
				var opts []ValidateOption
				if f.NeedsNetwork {
					input, err = f.InputWith(size, map[string]any{"url": store.URL()})
					opts = append(opts, WithObjectStore(store))
				}
				if err != nil {
					t.Fatal(err)
				}
				result := runNode(t, nodeHarness, f.Name, input)
				if err := Validate(f.Name, size, input, result, opts...); err != nil {
					t.Fatalf("valid result rejected: %v\nresult: %.500s", err, result)
				}
				bad := corrupted(t, f.Name, result)
				if err := Validate(f.Name, size, input, bad, opts...); err == nil {
					t.Fatalf("corrupted result accepted: %.500s", bad)
				}
			})
		}
	}
}

// TestActionsInBareContext runs the compute functions in a V8 context without Node APIs, as an
// isolate-per-activation runtime may.
func TestActionsInBareContext(t *testing.T) {
	for _, f := range All() {
		if f.NeedsNetwork || f.Name == "sleep" { // these need Node modules or timers
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			input, err := f.Input(SizeTest)
			if err != nil {
				t.Fatal(err)
			}
			result := runNode(t, vmHarness, f.Name, input)
			if err := Validate(f.Name, SizeTest, input, result); err != nil {
				t.Fatalf("%v\nresult: %.500s", err, result)
			}
		})
	}
}

// TestActionsRejectBadParams: wrong types and out-of-range values give an OpenWhisk application error
// naming the parameter, never a crash or a wrong result.
func TestActionsRejectBadParams(t *testing.T) {
	bad := map[string]struct{ params, mentions string }{
		"dynamic-html":   {`{"random_len": "ten"}`, "random_len"},
		"sleep":          {`{"sleep": -1}`, "sleep"},
		"uploader":       {`{"url": "ftp://127.0.0.1/", "bucket": "b", "key": "k", "size": 1}`, "http"},
		"binary-search":  {`{"from": 9, "to": 4}`, "from"},
		"crypto-aes":     {`{"plaintext": "\u0100", "password": "p"}`, "Latin-1"},
		"crypto-md5":     {`{"text": 42}`, "text"},
		"partial-sums":   {`{"to": 1e12}`, "to"},
		"regexp-dna":     {`{"n": 0.5}`, "n"},
		"validate-input": {`{"emails": -1}`, "emails"},
	}
	for _, f := range All() {
		tc, ok := bad[f.Name]
		if !ok {
			t.Errorf("%s: no bad-params case", f.Name)
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			result := runNode(t, nodeHarness, f.Name, json.RawMessage(tc.params))
			err := Validate(f.Name, SizeTest, json.RawMessage(tc.params), result)
			if !errors.Is(err, ErrActionError) {
				t.Fatalf("Validate = %v, want ErrActionError; result %s", err, result)
			}
			if !strings.Contains(string(result), tc.mentions) {
				t.Fatalf("error %s does not mention %q", result, tc.mentions)
			}
		})
	}
}

// TestUploaderAgainstStore covers the uploader's failure paths against a real store on loopback.
func TestUploaderAgainstStore(t *testing.T) {
	f, err := Get("uploader")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("tampered object is caught", func(t *testing.T) {
		t.Parallel()
		store := startStore(t, objectstore.Options{})
		input, err := f.InputWith(SizeTest, map[string]any{"url": store.URL(), "key": "tamper/test.bin"})
		if err != nil {
			t.Fatal(err)
		}
		result := runNode(t, nodeHarness, f.Name, input)
		if err := Validate(f.Name, SizeTest, input, result, WithObjectStore(store)); err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPut, store.URL()+"/teemate-bench/tamper/test.bin", strings.NewReader("other bytes"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := Validate(f.Name, SizeTest, input, result, WithObjectStore(store)); err == nil {
			t.Fatal("validation passed although the stored object was replaced")
		}
		store.Delete("teemate-bench", "tamper/test.bin")
		if err := Validate(f.Name, SizeTest, input, result, WithObjectStore(store)); err == nil {
			t.Fatal("validation passed although the stored object is gone")
		}
	})

	t.Run("store refuses oversize object", func(t *testing.T) {
		t.Parallel()
		store := startStore(t, objectstore.Options{MaxObjectBytes: 1000})
		input, err := f.InputWith(SizeTest, map[string]any{"url": store.URL()})
		if err != nil {
			t.Fatal(err)
		}
		result := runNode(t, nodeHarness, f.Name, input)
		if !strings.Contains(string(result), "HTTP 413") {
			t.Fatalf("result %s, want an HTTP 413 error", result)
		}
	})

	t.Run("unreachable store", func(t *testing.T) {
		t.Parallel()
		store := startStore(t, objectstore.Options{})
		url := store.URL()
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		input, err := f.InputWith(SizeTest, map[string]any{"url": url})
		if err != nil {
			t.Fatal(err)
		}
		result := runNode(t, nodeHarness, f.Name, input)
		if !strings.Contains(string(result), `"error"`) || !strings.Contains(string(result), "PUT") {
			t.Fatalf("result %s, want a PUT error", result)
		}
	})

	t.Run("local file", func(t *testing.T) {
		t.Parallel()
		store := startStore(t, objectstore.Options{})
		path := filepath.Join(t.TempDir(), "photo.jpg")
		if err := os.WriteFile(path, bytes.Repeat([]byte("jpeg"), 5000), 0o600); err != nil {
			t.Fatal(err)
		}
		input := json.RawMessage(fmt.Sprintf(`{"url": %q, "bucket": "teemate-bench", "key": "files/photo.jpg", "file": %q}`, store.URL(), path))
		result := runNode(t, nodeHarness, f.Name, input)
		if err := Validate(f.Name, "", input, result, WithObjectStore(store)); err != nil {
			t.Fatalf("%v\nresult %s", err, result)
		}
	})
}

// TestActionsLarge runs the "large" inputs (hundreds of milliseconds each, 98 MB for the uploader, 10 s
// for sleep). Opt in with FUNCTIONS_LARGE=1; it is too slow for every test run.
func TestActionsLarge(t *testing.T) {
	if os.Getenv("FUNCTIONS_LARGE") != "1" {
		t.Skip("set FUNCTIONS_LARGE=1 to run the large inputs")
	}
	store := startStore(t, objectstore.Options{})
	for _, f := range All() {
		t.Run(f.Name, func(t *testing.T) {
			input, err := f.Input(SizeLarge)
			var opts []ValidateOption
			if f.NeedsNetwork {
				input, err = f.InputWith(SizeLarge, map[string]any{"url": store.URL()})
				opts = append(opts, WithObjectStore(store))
			}
			if err != nil {
				t.Fatal(err)
			}
			result := runNode(t, nodeHarness, f.Name, input)
			if err := Validate(f.Name, SizeLarge, input, result, opts...); err != nil {
				t.Fatalf("%v\nresult: %.300s", err, result)
			}
			var m struct {
				Measurement map[string]float64 `json:"measurement"`
			}
			if err := json.Unmarshal(result, &m); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s large: %d-byte result, measurement %v", f.Name, len(result), m.Measurement)
		})
	}
}
