package whisk

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes, written the OpenWhisk way ("2048 MB").
type ByteSize int64

const (
	kib = 1024
	mib = 1024 * kib
	gib = 1024 * mib
)

// MB returns n mebibytes.
func MB(n int64) ByteSize { return ByteSize(n * mib) }

// KB returns n kibibytes.
func KB(n int64) ByteSize { return ByteSize(n * kib) }

// Bytes returns the size as an int64.
func (b ByteSize) Bytes() int64 { return int64(b) }

// MBytes returns the size in whole mebibytes (rounded down).
func (b ByteSize) MBytes() int64 { return int64(b) / mib }

// String uses the largest of MB, KB and B that represents the size exactly.
// MB is preferred over GB because OpenWhisk configures and reports memory in
// MB ("2048 MB"); every form parses back with ParseByteSize.
func (b ByteSize) String() string {
	n := int64(b)
	switch {
	case n%mib == 0:
		return strconv.FormatInt(n/mib, 10) + " MB"
	case n%kib == 0:
		return strconv.FormatInt(n/kib, 10) + " KB"
	default:
		return strconv.FormatInt(n, 10) + " B"
	}
}

// byteSizeRE mirrors OpenWhisk's ByteSize.fromString: an optional single
// space around the number and the unit, unit letters case-insensitive.
var byteSizeRE = regexp.MustCompile(`^\s?(\d+)\s?((?i)GB|MB|KB|B|G|M|K)\s?$`)

// ParseByteSize parses "<n> B|KB|MB|GB" (also "2048m", "1 g", "10 kb").
func ParseByteSize(s string) (ByteSize, error) {
	m := byteSizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, malformed(`size %q: only "B", "K[B]", "M[B]" and "G[B]" are supported`, s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, malformed("size %q: %v", s, err)
	}
	var unit int64
	switch strings.ToUpper(m[2])[0] {
	case 'B':
		unit = 1
	case 'K':
		unit = kib
	case 'M':
		unit = mib
	default:
		unit = gib
	}
	if n > math.MaxInt64/unit {
		return 0, malformed("size %q overflows", s)
	}
	return ByteSize(n * unit), nil
}

// MarshalJSON writes the size as its String form.
func (b ByteSize) MarshalJSON() ([]byte, error) {
	if b < 0 {
		return nil, fmt.Errorf("byte size %d is negative", int64(b))
	}
	return json.Marshal(b.String())
}

// UnmarshalJSON requires a string in ParseByteSize's format.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return wrapMalformed("byte size must be a string", err)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
