package wire

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// evalConst evaluates the constant expressions the C header and the JS file use: a quoted string,
// an integer, a product of integers ("64 * 1024 * 1024") or a shift ("(64u << 20)").
func evalConst(t *testing.T, expr string) string {
	t.Helper()
	expr = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(expr), ","))
	if len(expr) >= 2 && (expr[0] == '"' || expr[0] == '\'') && expr[len(expr)-1] == expr[0] {
		return expr[1 : len(expr)-1]
	}
	expr = strings.Trim(expr, "()")
	num := func(s string) int64 {
		s = strings.TrimRight(strings.TrimSpace(s), "uUlL")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("constant %q: %v", expr, err)
		}
		return n
	}
	if a, b, ok := strings.Cut(expr, "<<"); ok {
		return strconv.FormatInt(num(a)<<num(b), 10)
	}
	v := int64(1)
	for _, f := range strings.Split(expr, "*") {
		v *= num(f)
	}
	return strconv.FormatInt(v, 10)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The C shim's wire.h holds the same values as this package.
func TestCHeaderMatches(t *testing.T) {
	src := repoFile(t, "shim/shim/wire.h")
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^#define (WIRE_[A-Z_]+) (.+)$`).FindAllStringSubmatch(src, -1) {
		got[m[1]] = evalConst(t, m[2])
	}
	want := map[string]string{
		"WIRE_GATE_VERSION":        itoa(GateVersion),
		"WIRE_MAX_INIT_FRAME":      itoa(MaxInitFrame),
		"WIRE_MAX_OTHER_FRAME":     itoa(MaxOtherFrame),
		"WIRE_MAX_REPLY_FRAME":     itoa(MaxReplyFrame),
		"WIRE_MAX_BODY":            itoa(MaxBody),
		"WIRE_MIN_TIMEOUT_MS":      itoa(MinTimeoutMs),
		"WIRE_MAX_TIMEOUT_MS":      itoa(MaxTimeoutMs),
		"WIRE_MIN_MEMORY_MB":       itoa(MinMemoryMB),
		"WIRE_MAX_MEMORY_MB":       itoa(MaxMemoryMB),
		"WIRE_MAX_LOG_LIMIT":       itoa(MaxLogLimit),
		"WIRE_OUTCOME_SUCCESS":     string(OutcomeSuccess),
		"WIRE_OUTCOME_APPLICATION": string(OutcomeApplication),
		"WIRE_OUTCOME_DEVELOPER":   string(OutcomeDeveloper),
		"WIRE_OUTCOME_TIMEOUT":     string(OutcomeTimeout),
		"WIRE_OUTCOME_MEMORY":      string(OutcomeMemory),
		"WIRE_OUTCOME_GATE":        string(OutcomeGate),
		"WIRE_HEADER_OUTCOME":      HeaderOutcome,
		"WIRE_HEADER_TIMINGS":      HeaderTimings,
		"WIRE_LOG_SENTINEL":        LogSentinel,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("shim/shim/wire.h: %s is %q, want %q", k, got[k], v)
		}
		delete(got, k)
	}
	for k := range got {
		t.Errorf("shim/shim/wire.h: %s has no Go counterpart in package wire", k)
	}
}

// The enclave runtime's wire.js holds the same values, and the runtime's own files use no outcome
// outside them.
func TestJSMatches(t *testing.T) {
	src := repoFile(t, "enclave-runtime/trusted/wire.js")
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^const ([A-Z_]+) = ([^;{]+);`).FindAllStringSubmatch(src, -1) {
		got[m[1]] = evalConst(t, m[2])
	}
	for _, m := range regexp.MustCompile(`(?m)^  ([A-Za-z]+): (.+),$`).FindAllStringSubmatch(src, -1) {
		if r := regexp.MustCompile(`^\[(.+), (.+)\]$`).FindStringSubmatch(m[2]); r != nil {
			got[m[1]+".min"], got[m[1]+".max"] = evalConst(t, r[1]), evalConst(t, r[2])
		} else {
			got["OUTCOME."+m[1]] = evalConst(t, m[2])
		}
	}
	want := map[string]string{
		"PROTOCOL_VERSION":    itoa(GateVersion),
		"MAX_FRAME":           itoa(MaxInitFrame),
		"MAX_SMALL_FRAME":     itoa(MaxOtherFrame),
		"timeoutMs.min":       itoa(MinTimeoutMs),
		"timeoutMs.max":       itoa(MaxTimeoutMs),
		"memoryMB.min":        itoa(MinMemoryMB),
		"memoryMB.max":        itoa(MaxMemoryMB),
		"logLimitBytes.min":   "0",
		"logLimitBytes.max":   itoa(MaxLogLimit),
		"OUTCOME.SUCCESS":     string(OutcomeSuccess),
		"OUTCOME.APPLICATION": string(OutcomeApplication),
		"OUTCOME.DEVELOPER":   string(OutcomeDeveloper),
		"OUTCOME.TIMEOUT":     string(OutcomeTimeout),
		"OUTCOME.MEMORY":      string(OutcomeMemory),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("enclave-runtime/trusted/wire.js: %s is %q, want %q", k, got[k], v)
		}
		delete(got, k)
	}
	for k := range got {
		t.Errorf("enclave-runtime/trusted/wire.js: %s has no Go counterpart in package wire", k)
	}
	// The activation script runs inside an isolate without require(); its outcomes are literals.
	act := repoFile(t, "enclave-runtime/trusted/activation.js")
	for _, m := range regexp.MustCompile(`finish\('([a-z]+)'`).FindAllStringSubmatch(act, -1) {
		if !Outcome(m[1]).Enclave() {
			t.Errorf("enclave-runtime/trusted/activation.js finishes with outcome %q, not one of package wire's", m[1])
		}
	}
}

// The native model's Node action proxy speaks the same protocol: same sentinel, same body limit.
func TestNativeProxyMatches(t *testing.T) {
	src := repoFile(t, "deploy/images/native/proxy.js")
	for name, want := range map[string]string{"SENTINEL": LogSentinel, "MAX_BODY": itoa(MaxBody)} {
		m := regexp.MustCompile(`(?m)^const ` + name + ` = ([^;]+);`).FindStringSubmatch(src)
		if m == nil || evalConst(t, m[1]) != want {
			t.Errorf("deploy/images/native/proxy.js: %s is %v, want %q", name, m, want)
		}
	}
}

// A test that can fail: evalConst and the parsing see a changed value.
func TestDriftIsSeen(t *testing.T) {
	if evalConst(t, "(64u << 20)") != itoa(64<<20) || evalConst(t, "64 * 1024 * 1024") != itoa(64<<20) ||
		evalConst(t, `"x"`) != "x" || evalConst(t, "'y',") != "y" || evalConst(t, "(64ll << 20)") != itoa(64<<20) {
		t.Fatal("constant evaluation is wrong")
	}
}
