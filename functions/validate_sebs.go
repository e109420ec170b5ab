package functions

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"
)

// ---- dynamic-html ---------------------------------------------------------------------------------------

type dynamicHTMLInput struct {
	Username  *string `json:"username"`
	RandomLen *int64  `json:"random_len"`
	Seed      *uint32 `json:"seed"`
	Summary   *bool   `json:"summary"`
}

type dynamicHTMLResult struct {
	Result     *string `json:"result"`
	Summary    bool    `json:"summary"`
	HTMLLength int     `json:"html_length"`
	LiCount    int     `json:"li_count"`
	HTMLHead   string  `json:"html_head"`
	HTMLTail   string  `json:"html_tail"`
}

var listItem = regexp.MustCompile(`<li>([^<]*)</li>`)

// validateDynamicHTML applies SeBS's rules (the greeting, "Data generated at:", one <li> per number)
// plus structure checks; with a seed the numbers themselves are replayed.
func validateDynamicHTML(input, result json.RawMessage, _ *validateConfig) error {
	var in dynamicHTMLInput
	if err := decode("input", input, &in, "random_len"); err != nil {
		return err
	}
	username := "testname"
	if in.Username != nil {
		username = *in.Username
	}
	n := *in.RandomLen
	if err := inRange("random_len", n, 0, 1000000); err != nil {
		return err
	}
	var got dynamicHTMLResult
	if err := decode("result", result, &got, "html_length"); err != nil {
		return err
	}
	greeting := "Welcome " + html.EscapeString(username) + "!"
	if got.Result == nil {
		// Summary form: the page did not fit an activation result.
		if !got.Summary {
			return fmt.Errorf("result has neither the page (result) nor summary: true")
		}
		if int64(got.LiCount) != n {
			return fmt.Errorf("li_count %d, want %d", got.LiCount, n)
		}
		if !strings.HasPrefix(got.HTMLHead, "<!DOCTYPE html>") || !strings.Contains(got.HTMLHead, greeting) ||
			!strings.Contains(got.HTMLHead, "Data generated at:") {
			return fmt.Errorf("html_head lacks the doctype, %q or \"Data generated at:\"", greeting)
		}
		if !strings.HasSuffix(got.HTMLTail, "</html>\n") {
			return fmt.Errorf("html_tail does not end the document")
		}
		if minLen := n * int64(len("<li>0</li>")); int64(got.HTMLLength) < minLen {
			return fmt.Errorf("html_length %d is too short for %d items", got.HTMLLength, n)
		}
		return nil
	}
	page := *got.Result
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(page, "</html>\n") {
		return fmt.Errorf("result is not a whole HTML document")
	}
	if !strings.Contains(page, greeting) {
		return fmt.Errorf("result lacks %q", greeting)
	}
	if !strings.Contains(page, "Data generated at:") {
		return fmt.Errorf("result lacks \"Data generated at:\"")
	}
	if c := strings.Count(page, "<li>"); int64(c) != n {
		return fmt.Errorf("result has %d <li>, want %d", c, n)
	}
	if l := len(utf16.Encode([]rune(page))); got.HTMLLength != l {
		return fmt.Errorf("html_length %d, page has %d UTF-16 units", got.HTMLLength, l)
	}
	items := listItem.FindAllStringSubmatch(page, -1)
	if int64(len(items)) != n {
		return fmt.Errorf("%d well-formed <li> items, want %d", len(items), n)
	}
	var rnd *xorshift32
	if in.Seed != nil {
		rnd = newXorshift32(*in.Seed)
	}
	for i, it := range items {
		v, err := strconv.Atoi(it[1])
		if err != nil || v < 0 || v > 100 {
			return fmt.Errorf("item %d is %q, want an integer in [0, 100]", i, it[1])
		}
		if rnd != nil {
			if want := int(math.Floor(rnd.float() * 101)); v != want {
				return fmt.Errorf("item %d is %d, seeded generator gives %d", i, v, want)
			}
		}
	}
	return nil
}

// ---- sleep ----------------------------------------------------------------------------------------------

// sleepSlack allows for timers measured with a different clock than the one that fired them.
const sleepSlackMs = 2

func validateSleep(input, result json.RawMessage, _ *validateConfig) error {
	var in struct {
		Sleep *float64 `json:"sleep"`
	}
	if err := decode("input", input, &in, "sleep"); err != nil {
		return err
	}
	var got struct {
		Result  *float64 `json:"result"`
		Sleep   *float64 `json:"sleep"`
		SleptMs *float64 `json:"slept_ms"`
	}
	if err := decode("result", result, &got, "result", "sleep", "slept_ms"); err != nil {
		return err
	}
	// SeBS's rule: result == input sleep.
	if *got.Result != *in.Sleep || *got.Sleep != *in.Sleep {
		return fmt.Errorf("result %v sleep %v, want %v", *got.Result, *got.Sleep, *in.Sleep)
	}
	if *got.SleptMs < *in.Sleep*1000-sleepSlackMs {
		return fmt.Errorf("slept %.3f ms, asked for %v s", *got.SleptMs, *in.Sleep)
	}
	return nil
}

// ---- uploader -------------------------------------------------------------------------------------------

// UploadContent returns the bytes the uploader generates for size and seed: little-endian 32-bit words
// of the xorshift32 stream, truncated to size.
func UploadContent(size int, seed uint32) []byte {
	out := make([]byte, (size+3)/4*4)
	rnd := newXorshift32(seed)
	for i := 0; i < len(out); i += 4 {
		binary.LittleEndian.PutUint32(out[i:], rnd.next())
	}
	return out[:size]
}

type uploaderInput struct {
	Bucket *string `json:"bucket"`
	Key    *string `json:"key"`
	Size   *int64  `json:"size"`
	File   *string `json:"file"`
	Seed   *uint32 `json:"seed"`
}

type uploaderResult struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// expectedUpload returns the size and SHA-256 the uploader must report: of the named file when the
// input has one (the validator runs on the same host), else of the generated content.
func expectedUpload(in uploaderInput) (int64, string, error) {
	h := sha256.New()
	var size int64
	if in.File != nil {
		f, err := os.Open(*in.File)
		if err != nil {
			return 0, "", fmt.Errorf("input file: %w", err)
		}
		defer f.Close()
		if size, err = io.Copy(h, f); err != nil {
			return 0, "", fmt.Errorf("input file %s: %w", *in.File, err)
		}
	} else {
		if in.Size == nil {
			return 0, "", fmt.Errorf("input: missing field \"size\" (or \"file\")")
		}
		if err := inRange("size", *in.Size, 0, 256<<20); err != nil {
			return 0, "", err
		}
		var seed uint32
		if in.Seed != nil {
			seed = *in.Seed
		}
		size = *in.Size
		h.Write(UploadContent(int(size), seed))
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

func validateUploader(input, result json.RawMessage, cfg *validateConfig) error {
	var in uploaderInput
	if err := decode("input", input, &in, "bucket", "key"); err != nil {
		return err
	}
	var got uploaderResult
	if err := decode("result", result, &got, "bucket", "key", "size", "sha256"); err != nil {
		return err
	}
	if got.Bucket != *in.Bucket || got.Key != *in.Key {
		return fmt.Errorf("stored as %s/%s, asked for %s/%s", got.Bucket, got.Key, *in.Bucket, *in.Key)
	}
	size, digest, err := expectedUpload(in)
	if err != nil {
		return err
	}
	if got.Size != size || got.SHA256 != digest {
		return fmt.Errorf("reported %d bytes sha256 %s, want %d bytes sha256 %s", got.Size, got.SHA256, size, digest)
	}
	if cfg.store != nil {
		stored, err := cfg.store.Digest(got.Bucket, got.Key)
		if err != nil {
			return fmt.Errorf("object store: %w", err)
		}
		if stored != digest {
			return fmt.Errorf("object store holds sha256 %s, want %s", stored, digest)
		}
	}
	return nil
}
