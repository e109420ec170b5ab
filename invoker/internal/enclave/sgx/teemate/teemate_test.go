package teemate

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/internal/testtool"
)

// cValues compiles and runs kmod/selftests/print_ioctls.c, which prints what the C header says.
func cValues(t *testing.T) map[string]uint64 {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testtool.Missing(t, "gcc is not installed")
	}
	kmod := filepath.Join("..", "..", "..", "..", "..", "kmod")
	bin := filepath.Join(t.TempDir(), "print_ioctls")
	out, err := exec.Command(gcc, "-Wall", "-Werror", "-I", filepath.Join(kmod, "uapi"), "-o", bin,
		filepath.Join(kmod, "selftests", "print_ioctls.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("compile print_ioctls.c: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run print_ioctls: %v", err)
	}
	vals := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("unexpected line %q", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 0, 64)
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		vals[f[0]] = v
	}
	return vals
}

func TestLayoutMatchesCHeader(t *testing.T) {
	c := cValues(t)
	want := map[string]uint64{
		"TEEMATE_IOC_SHARE":                       uint64(IocShare),
		"TEEMATE_IOC_UNSHARE":                     uint64(IocUnshare),
		"TEEMATE_IOC_ATTACH":                      uint64(IocAttach),
		"TEEMATE_IOC_TCS_ACQUIRE":                 uint64(IocTCSAcquire),
		"TEEMATE_IOC_TCS_RELEASE":                 uint64(IocTCSRelease),
		"TEEMATE_IOC_TCS_UNQUARANTINE":            uint64(IocTCSUnquarantine),
		"TEEMATE_IOC_INFO":                        uint64(IocInfo),
		"TEEMATE_MAX_SHARES":                      MaxShares,
		"TEEMATE_MAX_RANGES":                      MaxRanges,
		"TEEMATE_MAX_TCS":                         MaxTCS,
		"TEEMATE_TOKEN_SIZE":                      TokenSize,
		"sizeof_teemate_range":                    uint64(unsafe.Sizeof(Range{})),
		"sizeof_teemate_share":                    uint64(unsafe.Sizeof(shareArg{})),
		"sizeof_teemate_attach":                   uint64(unsafe.Sizeof(attachArg{})),
		"sizeof_teemate_tcs":                      uint64(unsafe.Sizeof(tcsArg{})),
		"sizeof_teemate_info":                     uint64(unsafe.Sizeof(Info{})),
		"offsetof_teemate_share_share_id":         uint64(unsafe.Offsetof(shareArg{}.ShareID)),
		"offsetof_teemate_share_token":            uint64(unsafe.Offsetof(shareArg{}.Token)),
		"offsetof_teemate_attach_flags":           uint64(unsafe.Offsetof(attachArg{}.Flags)),
		"offsetof_teemate_attach_pages_populated": uint64(unsafe.Offsetof(attachArg{}.PagesPopulated)),
		"offsetof_teemate_info_attach_count":      uint64(unsafe.Offsetof(Info{}.AttachCount)),
	}
	for name, w := range want {
		got, ok := c[name]
		if !ok {
			t.Errorf("%s: not printed by print_ioctls.c", name)
			continue
		}
		if got != w {
			t.Errorf("%s: C says %#x, Go says %#x", name, got, w)
		}
	}
	for name := range c {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: printed by C but not checked in Go", name)
		}
	}
}

func TestValidateShare(t *testing.T) {
	ok := Range{Start: 0x10000, End: 0x20000, Prot: ProtRead | ProtWrite, Flags: RangePopulate}
	many := make([]Range, MaxRanges+1)
	for i := range many {
		many[i] = ok
	}
	tests := []struct {
		name   string
		ranges []Range
		tcs    []uint64
		valid  bool
	}{
		{"valid", []Range{ok}, []uint64{0x11000, 0x12000}, true},
		{"valid without TCS", []Range{ok}, nil, true},
		{"no ranges", nil, nil, false},
		{"too many ranges", many, nil, false},
		{"too many TCS", []Range{ok}, make([]uint64, MaxTCS+1), false},
		{"unaligned start", []Range{{Start: 0x10001, End: 0x20000, Prot: ProtRead}}, nil, false},
		{"empty range", []Range{{Start: 0x20000, End: 0x20000, Prot: ProtRead}}, nil, false},
		{"no prot", []Range{{Start: 0x10000, End: 0x20000}}, nil, false},
		{"unknown prot", []Range{{Start: 0x10000, End: 0x20000, Prot: 0x8}}, nil, false},
		{"unknown flag", []Range{{Start: 0x10000, End: 0x20000, Prot: ProtRead, Flags: 2}}, nil, false},
		{"unaligned TCS", []Range{ok}, []uint64{0x11008}, false},
		{"repeated TCS", []Range{ok}, []uint64{0x11000, 0x11000}, false},
	}
	for _, tc := range tests {
		err := ValidateShare(tc.ranges, tc.tcs)
		if tc.valid && err != nil {
			t.Errorf("%s: unexpected error %v", tc.name, err)
		}
		if !tc.valid && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", tc.name, err)
		}
	}
}

func TestParseToken(t *testing.T) {
	var tok Token
	for i := range tok {
		tok[i] = byte(i * 9)
	}
	got, err := ParseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %v %x", err, got)
	}
	for _, bad := range []string{"", "00", strings.Repeat("zz", TokenSize), strings.Repeat("0", 2*TokenSize+2)} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q): want error", bad)
		}
	}
}

func TestOpenMissingDevice(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "teemate"))
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("want ENOENT, got %v", err)
	}
}
