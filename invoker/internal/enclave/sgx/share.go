package sgx

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/attach"
	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

// ShareLineMax bounds the share line; anything longer is refused unread.
const ShareLineMax = 1024

// ShareInfo is what the patched Gramine loader registered with TEEMATE_IOC_SHARE: what a sandbox needs
// to attach (ID, Token) and what the invoker checks against the manifest (TCS, Start, End).
type ShareInfo struct {
	ID    uint64
	Token teemate.Token
	// TCS is the number of donated TCS pages: the join pool (teemate.join_threads = the slots).
	TCS int
	// Start, End span the enclave ranges (ELRANGE as mapped by the owner).
	Start, End uint64
}

// Ticket is what a sandbox of this owner needs to attach; its Env goes into the sandbox's
// environment, where the joiner (cmd/teemate-join) reads it back.
func (s ShareInfo) Ticket() attach.Ticket { return attach.Ticket{ShareID: s.ID, Token: s.Token} }

// shareLine is the wire form, one JSON object on one line:
//
//	{"teemateShare":1,"id":7,"token":"<64 hex>","tcs":8,"start":"0x10000","end":"0x100000000"}
//
// Addresses are hex strings because JSON numbers lose precision above 2^53.
type shareLine struct {
	Version *int    `json:"teemateShare"`
	ID      *uint64 `json:"id"`
	Token   string  `json:"token"`
	TCS     *int    `json:"tcs"`
	Start   string  `json:"start"`
	End     string  `json:"end"`
}

// ParseShareLine reads and checks the loader's share line. The loader is untrusted host code like the
// invoker; the checks only turn a broken or hostile line into a clear error instead of a bad attach.
func ParseShareLine(line []byte) (ShareInfo, error) {
	if len(line) > ShareLineMax {
		return ShareInfo{}, fmt.Errorf("share line: %d bytes (max %d)", len(line), ShareLineMax)
	}
	var l shareLine
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return ShareInfo{}, fmt.Errorf("share line: %w", err)
	}
	if dec.More() {
		return ShareInfo{}, fmt.Errorf("share line: trailing data after the object")
	}
	switch {
	case l.Version == nil:
		return ShareInfo{}, fmt.Errorf("share line: no teemateShare version")
	case *l.Version != 1:
		return ShareInfo{}, fmt.Errorf("share line: version %d (want 1)", *l.Version)
	case l.ID == nil || *l.ID == 0:
		return ShareInfo{}, fmt.Errorf("share line: missing or zero id")
	case l.TCS == nil || *l.TCS < 1 || *l.TCS > teemate.MaxTCS:
		return ShareInfo{}, fmt.Errorf("share line: tcs must be 1..%d", teemate.MaxTCS)
	}
	tok, err := teemate.ParseToken(l.Token)
	if err != nil {
		return ShareInfo{}, fmt.Errorf("share line: %w", err)
	}
	start, err := parseAddr("start", l.Start)
	if err != nil {
		return ShareInfo{}, err
	}
	end, err := parseAddr("end", l.End)
	if err != nil {
		return ShareInfo{}, err
	}
	if start >= end {
		return ShareInfo{}, fmt.Errorf("share line: empty span [%#x,%#x)", start, end)
	}
	if tok == (teemate.Token{}) {
		return ShareInfo{}, fmt.Errorf("share line: all-zero token")
	}
	return ShareInfo{ID: *l.ID, Token: tok, TCS: *l.TCS, Start: start, End: end}, nil
}

func parseAddr(name, s string) (uint64, error) {
	if !strings.HasPrefix(s, "0x") {
		return 0, fmt.Errorf("share line: %s %q must be 0x-prefixed hex", name, s)
	}
	v, err := strconv.ParseUint(s[2:], 16, 64)
	if err != nil {
		return 0, fmt.Errorf("share line: %s: %w", name, err)
	}
	if v%4096 != 0 {
		return 0, fmt.Errorf("share line: %s %#x not page aligned", name, v)
	}
	return v, nil
}

// FormatShareLine is the inverse of ParseShareLine (used by tests and by the fake owner; the real
// line is written by the patched loader in C).
func FormatShareLine(s ShareInfo) string {
	return fmt.Sprintf(`{"teemateShare":1,"id":%d,"token":"%s","tcs":%d,"start":"%#x","end":"%#x"}`,
		s.ID, s.Token, s.TCS, s.Start, s.End)
}
