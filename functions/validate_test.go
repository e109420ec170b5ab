package functions

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The Go recomputations must reproduce the published check values on their own; otherwise a bug
// shared with an action could hide behind them.
func TestReferencesReproducePublishedValues(t *testing.T) {
	t.Run("access-binary-trees", func(t *testing.T) {
		got := binaryTreesExpected(4, 7)
		want := binaryTreesResult{Ret: -4, Nodes: 42072, StretchCheck: -4, IterationCheck: -800}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	})
	t.Run("fasta input and regexp-dna final sequence", func(t *testing.T) {
		in := fastaText(10000)
		if sum := md5.Sum([]byte(in)); len(in) != 101745 || hex.EncodeToString(sum[:]) != "3550678d7ae37f4369a20f5e0e95ab04" {
			t.Fatalf("fasta(10000): %d bytes md5 %x", len(in), sum)
		}
		e := regexpDNAExpected(10000, 3)
		if want := []int{0, 9, 27, 24, 30, 9, 12, 9, 15}; !equalInts(e.counts, want) {
			t.Fatalf("counts %v, want %v", e.counts, want)
		}
		if sum := md5.Sum([]byte(e.final)); len(e.final) != 300056 || hex.EncodeToString(sum[:]) != "2c02173eae8f35df66f1294e97936e38" {
			t.Fatalf("final: %d chars md5 %x", len(e.final), sum)
		}
	})
	t.Run("crypto-aes nonce 0", func(t *testing.T) {
		f, _ := Get("crypto-aes")
		var in struct{ Plaintext, Password string }
		if err := json.Unmarshal(f.Inputs[SizeSmall], &in); err != nil {
			t.Fatal(err)
		}
		if sum := md5.Sum([]byte(in.Plaintext)); len(in.Plaintext) != 1343 || hex.EncodeToString(sum[:]) != "e080b25d572b6ab4a8fb1ff9520a996d" {
			t.Fatalf("plaintext: %d chars md5 %x", len(in.Plaintext), sum)
		}
		ct, err := aesCtrReference([]byte(in.Plaintext), []byte(in.Password), 0)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := latin1("ciphertext", ct)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 1612 || md5Hex(raw) != "0810c25122b0991f2457e5a21e5f1b9d" || strings.Count(ct, "-") != 84 {
			t.Fatalf("ciphertext %d chars md5 %s", len(raw), md5Hex(raw))
		}
	})
	t.Run("partial-sums total", func(t *testing.T) {
		var total float64
		for n := int64(1024); n <= 16384; n *= 2 {
			s := partialSeries(n)
			total += float64(float64(s.A6+s.A7)+s.A8) + s.A9
		}
		if total != 60.08994194659945 {
			t.Fatalf("total %v", total)
		}
	})
	t.Run("validate-input invariants", func(t *testing.T) {
		for _, seed := range []uint32{0, 1, 4294967295} {
			r := validateInputExpected(seed, 4000, 4000)
			if r.Lines != 12000 || r.Length != 462000 || r.ValidEmails != 2000 || r.ValidZips != 2000 || r.LetterLines != 6000 {
				t.Fatalf("seed %d: %+v", seed, r)
			}
		}
	})
	t.Run("crypto-md5 prince text", func(t *testing.T) {
		f, _ := Get("crypto-md5")
		var in struct{ Text string }
		if err := json.Unmarshal(f.Inputs[SizeSmall], &in); err != nil {
			t.Fatal(err)
		}
		s := in.Text
		for range 4 {
			s += s
		}
		if sum := md5.Sum([]byte(s)); hex.EncodeToString(sum[:]) != "a831e91e0f70eddcb70dc61c6f82f6cd" {
			t.Fatalf("md5 %x", sum)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fullTreeCheck's closed form against the definition, by brute force on small trees.
func TestFullTreeCheckClosedForm(t *testing.T) {
	var check func(item int64, depth int) int64
	check = func(item int64, depth int) int64 {
		if depth == 0 {
			return item
		}
		return item + check(2*item-1, depth-1) - check(2*item, depth-1)
	}
	for depth := 0; depth <= 8; depth++ {
		for _, item := range []int64{-7, -1, 0, 1, 5, 1000} {
			if got, want := fullTreeCheck(item, depth), check(item, depth); got != want {
				t.Fatalf("check(%d, %d) = %d, brute force %d", item, depth, got, want)
			}
		}
	}
}

// The hand-written variant matcher and header stripper agree with Go's regexp package.
func TestDNAMatchersAgreeWithRegexp(t *testing.T) {
	seq := strings.Repeat(fastaText(300), 3)
	if got, want := stripHeadersAndNewlines(seq), regexp.MustCompile(">.*\n|\n").ReplaceAllString(seq, ""); got != want {
		t.Fatal("stripHeadersAndNewlines differs from the regexp")
	}
	for _, odd := range []string{"ab>cd\nef\n", ">no newline", "\n\n>x\ny"} {
		if got, want := stripHeadersAndNewlines(odd), regexp.MustCompile(">.*\n|\n").ReplaceAllString(odd, ""); got != want {
			t.Fatalf("%q: got %q, regexp %q", odd, got, want)
		}
	}
	clean := stripHeadersAndNewlines(seq)
	for _, p := range dnaVariants {
		if got, want := compileVariant(p).count(clean), len(regexp.MustCompile("(?i)"+p).FindAllStringIndex(clean, -1)); got != want {
			t.Fatalf("%s: matcher %d, regexp %d", p, got, want)
		}
	}
}

func TestUploadContentIsDeterministic(t *testing.T) {
	a, b := UploadContent(1001, 7), UploadContent(1001, 7)
	if len(a) != 1001 || string(a) != string(b) {
		t.Fatal("UploadContent is not deterministic")
	}
	if string(UploadContent(1001, 8)) == string(a) {
		t.Fatal("seed does not change the content")
	}
	// Pinned so the generator cannot drift away from the action's without a test noticing.
	sum := sha256.Sum256(UploadContent(230000, 0))
	if got := hex.EncodeToString(sum[:]); got != pinnedUploadTestSHA256 {
		t.Fatalf("sha256 of test content %s, want %s", got, pinnedUploadTestSHA256)
	}
}

func TestValidateRejectsMalformedResults(t *testing.T) {
	tests := []struct {
		name, fn, size, result string
		wantErr                error
		mentions               string
	}{
		{"unknown function", "nope", SizeTest, `{}`, nil, "unknown function"},
		{"unknown size", "crypto-md5", "huge", `{}`, nil, "no \"huge\" input"},
		{"not json", "crypto-md5", SizeTest, `{"digest":`, nil, "not a JSON object"},
		{"array", "crypto-md5", SizeTest, `[1]`, nil, "not a JSON object"},
		{"action error", "crypto-md5", SizeTest, `{"error":"boom"}`, ErrActionError, "boom"},
		{"missing field", "crypto-md5", SizeTest, `{"length": 38}`, nil, `missing field "digest"`},
		{"wrong type", "binary-search", SizeTest, `{"ret":"-1","nodes":1,"stretch_check":1,"iteration_check":1}`, nil, "ret"},
		{"null field", "sleep", SizeTest, `{"result":0.1,"sleep":0.1,"slept_ms":null}`, nil, "slept_ms"},
		{"summary without page", "dynamic-html", SizeTest, `{"html_length": 10}`, nil, "summary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.fn, tc.size, nil, json.RawMessage(tc.result))
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("error %q does not mention %q", err, tc.mentions)
			}
		})
	}
}

// A result that is right for its input but not for the reference input fails the reference check.
func TestGoldenCheckAppliesToSmallOnly(t *testing.T) {
	want := binaryTreesExpected(4, 4)
	result, _ := json.Marshal(want)
	input := json.RawMessage(`{"from":4,"to":4,"repeat":1}`)
	if err := Validate("binary-search", SizeTest, input, result); err != nil {
		t.Fatalf("test size: %v", err)
	}
	if err := Validate("binary-search", SizeSmall, nil, result); err == nil {
		t.Fatal("small size accepted a result for another input")
	}
	if err := goldenBinarySearch(result); err == nil {
		t.Fatal("reference check accepted ret -1")
	}
}

func TestInputWith(t *testing.T) {
	f, _ := Get("uploader")
	in, err := f.InputWith(SizeLarge, map[string]any{"url": "http://127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(in, &m); err != nil {
		t.Fatal(err)
	}
	if m["url"] != "http://127.0.0.1:9" || m["size"] != float64(98000000) || !strings.Contains(string(in), `"size":98000000`) {
		t.Fatalf("InputWith gave %s", in)
	}
}

// pinnedUploadTestSHA256 is the SHA-256 of UploadContent(230000, 0), the uploader's "test" object,
// computed once by an independent Node script and kept to catch drift between generators.
const pinnedUploadTestSHA256 = "0985f8a054433e8aceec8ae80acae035df85b60a4c8bb2e08089d5bd26ae47a2"
