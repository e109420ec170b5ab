package teemate

import (
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is where udev/devtmpfs creates the misc device.
const DevicePath = "/dev/teemate"

// Limits and sizes from kmod/uapi/teemate.h.
const (
	Magic      = 0xB2
	MaxShares  = 64
	MaxRanges  = 64
	MaxTCS     = 1024
	TokenSize  = 32
	pageSize   = 4096
	iocWrite   = 1
	iocRead    = 2
	iocNRShift = 0
)

// Protections and flags (teemate_range.prot/.flags, teemate_attach.flags, teemate_tcs.flags).
const (
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4

	RangePopulate = 0x1

	AttachPopulate = 0x1
	AttachWantFD   = 0x2

	tcsNonblock = 0x1
	tcsClean    = 0x2
)

// Range is struct teemate_range: one enclave mapping of the owner.
type Range struct {
	Start uint64
	End   uint64
	Prot  uint32
	Flags uint32
}

// shareArg is struct teemate_share.
type shareArg struct {
	EnclFD   int32
	Flags    uint32
	Ranges   uint64
	NrRanges uint32
	NrTCS    uint32
	TCSAddrs uint64
	ShareID  uint64
	Token    Token
}

// attachArg is struct teemate_attach.
type attachArg struct {
	ShareID        uint64
	Token          Token
	Flags          uint32
	EnclFD         int32
	EnclStart      uint64
	EnclEnd        uint64
	PagesPopulated uint64
	NrRanges       uint32
	Reserved       uint32
}

// tcsArg is struct teemate_tcs.
type tcsArg struct {
	ShareID uint64
	TCSAddr uint64
	Flags   uint32
	Slot    uint32
}

// Info is struct teemate_info: counters of one share (ShareID != 0) and global ones.
type Info struct {
	ShareID       uint64
	NrTCS         uint32
	NrFree        uint32
	NrOwned       uint32
	NrQuarantined uint32
	NrAttached    uint32
	NrShares      uint32
	NrSessions    uint32
	Reserved      uint32
	AttachCount   uint64
}

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | Magic<<8 | nr<<iocNRShift
}

// Ioctl request numbers, computed like the kernel's _IOW/_IOWR.
var (
	IocShare           = ioc(iocRead|iocWrite, 0x00, unsafe.Sizeof(shareArg{}))
	IocUnshare         = ioc(iocWrite, 0x01, unsafe.Sizeof(uint64(0)))
	IocAttach          = ioc(iocRead|iocWrite, 0x02, unsafe.Sizeof(attachArg{}))
	IocTCSAcquire      = ioc(iocRead|iocWrite, 0x03, unsafe.Sizeof(tcsArg{}))
	IocTCSRelease      = ioc(iocWrite, 0x04, unsafe.Sizeof(tcsArg{}))
	IocTCSUnquarantine = ioc(iocWrite, 0x06, unsafe.Sizeof(tcsArg{}))
	IocInfo            = ioc(iocRead|iocWrite, 0x07, unsafe.Sizeof(Info{}))
)

// Token is the capability SHARE returns and ATTACH must present.
type Token [TokenSize]byte

// String is the lower-case hex form used on command lines and in container specs.
func (t Token) String() string { return hex.EncodeToString(t[:]) }

// ParseToken reads the hex form of a Token.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) != 2*TokenSize {
		return t, fmt.Errorf("teemate: token must be %d hex digits, got %d characters", 2*TokenSize, len(s))
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return t, fmt.Errorf("teemate: token: %w", err)
	}
	return t, nil
}

// ErrInvalid reports arguments rejected before any system call.
var ErrInvalid = errors.New("teemate: invalid argument")

// ValidateShare applies the kernel's shape rules to a share request so that callers get a precise error
// without a system call; the kernel checks again (and also checks the owner's mappings).
func ValidateShare(ranges []Range, tcs []uint64) error {
	if len(ranges) == 0 || len(ranges) > MaxRanges {
		return fmt.Errorf("%w: %d ranges (want 1..%d)", ErrInvalid, len(ranges), MaxRanges)
	}
	if len(tcs) > MaxTCS {
		return fmt.Errorf("%w: %d TCS addresses (max %d)", ErrInvalid, len(tcs), MaxTCS)
	}
	for i, r := range ranges {
		switch {
		case r.Start%pageSize != 0 || r.End%pageSize != 0:
			return fmt.Errorf("%w: range %d [%#x,%#x) not page aligned", ErrInvalid, i, r.Start, r.End)
		case r.Start >= r.End:
			return fmt.Errorf("%w: range %d [%#x,%#x) empty", ErrInvalid, i, r.Start, r.End)
		case r.Prot == 0 || r.Prot&^(ProtRead|ProtWrite|ProtExec) != 0:
			return fmt.Errorf("%w: range %d prot %#x", ErrInvalid, i, r.Prot)
		case r.Flags&^RangePopulate != 0:
			return fmt.Errorf("%w: range %d flags %#x", ErrInvalid, i, r.Flags)
		}
	}
	seen := make(map[uint64]bool, len(tcs))
	for _, a := range tcs {
		if a%pageSize != 0 || seen[a] {
			return fmt.Errorf("%w: TCS address %#x unaligned or repeated", ErrInvalid, a)
		}
		seen[a] = true
	}
	return nil
}

// Device is one /dev/teemate session. The kernel binds it to the opening process's address space: use
// it only in that process (its goroutines and threads are fine), never after fork.
type Device struct {
	fd int
}

// Open opens a session on the device at path (normally DevicePath).
func Open(path string) (*Device, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("teemate: open %s: %w", path, err)
	}
	return &Device{fd: fd}, nil
}

// Close ends the session: shares it owns are unshared, TCSs it still holds are quarantined.
func (d *Device) Close() error {
	if err := unix.Close(d.fd); err != nil {
		return fmt.Errorf("teemate: close: %w", err)
	}
	return nil
}

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), req, uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

// Share is what SHARE returns: the id and token a new process needs to attach.
type Share struct {
	ID    uint64
	Token Token
}

// Share registers the enclave file enclFD (already mapped by this process over every range) and donates
// the TCS pages at tcs.
func (d *Device) Share(enclFD int, ranges []Range, tcs []uint64) (Share, error) {
	if err := ValidateShare(ranges, tcs); err != nil {
		return Share{}, err
	}
	arg := shareArg{
		EnclFD:   int32(enclFD),
		Ranges:   uint64(uintptr(unsafe.Pointer(&ranges[0]))),
		NrRanges: uint32(len(ranges)),
		NrTCS:    uint32(len(tcs)),
	}
	if len(tcs) > 0 {
		arg.TCSAddrs = uint64(uintptr(unsafe.Pointer(&tcs[0])))
	}
	err := d.ioctl(IocShare, unsafe.Pointer(&arg))
	runtime.KeepAlive(ranges)
	runtime.KeepAlive(tcs)
	if err != nil {
		return Share{}, fmt.Errorf("teemate: share fd %d: %w", enclFD, err)
	}
	return Share{ID: arg.ShareID, Token: arg.Token}, nil
}

// Unshare stops new attaches to a share this session owns; attached processes keep their mappings.
func (d *Device) Unshare(id uint64) error {
	if err := d.ioctl(IocUnshare, unsafe.Pointer(&id)); err != nil {
		return fmt.Errorf("teemate: unshare %d: %w", id, err)
	}
	return nil
}

// Attachment describes the enclave mapped into this process by Attach.
type Attachment struct {
	Start, End     uint64
	Ranges         uint32
	PagesPopulated uint64
	// EnclFD is an O_CLOEXEC enclave fd with AttachWantFD, else -1.
	EnclFD int
}

// Attach maps the share's enclave at the owner's addresses into this process.
func (d *Device) Attach(id uint64, token Token, flags uint32) (Attachment, error) {
	arg := attachArg{ShareID: id, Token: token, Flags: flags}
	if err := d.ioctl(IocAttach, unsafe.Pointer(&arg)); err != nil {
		return Attachment{}, fmt.Errorf("teemate: attach share %d: %w", id, err)
	}
	return Attachment{
		Start: arg.EnclStart, End: arg.EnclEnd, Ranges: arg.NrRanges,
		PagesPopulated: arg.PagesPopulated, EnclFD: int(arg.EnclFD),
	}, nil
}

// TCS is a thread control page held by this session.
type TCS struct {
	ShareID uint64
	Addr    uint64
	Slot    uint32
}

// AcquireTCS takes the lowest free TCS of a share (0: the attached share). Without nonblock it waits for
// one; with nonblock it fails with an error matching unix.EAGAIN.
func (d *Device) AcquireTCS(shareID uint64, nonblock bool) (TCS, error) {
	arg := tcsArg{ShareID: shareID}
	if nonblock {
		arg.Flags = tcsNonblock
	}
	if err := d.ioctl(IocTCSAcquire, unsafe.Pointer(&arg)); err != nil {
		return TCS{}, fmt.Errorf("teemate: acquire TCS of share %d: %w", shareID, err)
	}
	return TCS{ShareID: arg.ShareID, Addr: arg.TCSAddr, Slot: arg.Slot}, nil
}

// ReleaseTCS gives a TCS back; clean means the thread left the enclave normally, otherwise the slot is
// quarantined until the owner vouches for it.
func (d *Device) ReleaseTCS(t TCS, clean bool) error {
	arg := tcsArg{ShareID: t.ShareID, TCSAddr: t.Addr}
	if clean {
		arg.Flags = tcsClean
	}
	if err := d.ioctl(IocTCSRelease, unsafe.Pointer(&arg)); err != nil {
		return fmt.Errorf("teemate: release TCS %#x: %w", t.Addr, err)
	}
	return nil
}

// Unquarantine (owner only) returns a quarantined TCS to the free pool.
func (d *Device) Unquarantine(shareID, addr uint64) error {
	arg := tcsArg{ShareID: shareID, TCSAddr: addr}
	if err := d.ioctl(IocTCSUnquarantine, unsafe.Pointer(&arg)); err != nil {
		return fmt.Errorf("teemate: unquarantine TCS %#x: %w", addr, err)
	}
	return nil
}

// Info returns the counters of a share this session owns or attached to, or only the global counters
// for shareID 0.
func (d *Device) Info(shareID uint64) (Info, error) {
	arg := Info{ShareID: shareID}
	if err := d.ioctl(IocInfo, unsafe.Pointer(&arg)); err != nil {
		return Info{}, fmt.Errorf("teemate: info of share %d: %w", shareID, err)
	}
	return arg, nil
}
