//go:build sgx && linux && amd64

package attach

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The join ABI (../gramine/0003-*.md, design only: ECALL_PROCESS_JOIN): EENTER with RDI = the ecall
// number and RSI = a joinArgs block in untrusted memory. The trusted side copies the request in,
// checks every field, resumes a parked slot thread on this TCS, copies the reply to resp and EEXITs to
// the address after our ENCLU (hardware puts it in RCX at EENTER) with RDI = exitDone. Any other RDI
// is an OCALL request, which this minimal entry does not serve (see ErrOCALL).
const (
	ecallProcessJoin = 3 // after ECALL_ENCLAVE_START, ECALL_THREAD_START, ECALL_THREAD_RESET
	exitDone         = ^uintptr(0)
	joinABIVersion   = 1
	ustackSize       = 256 << 10 // untrusted stack the enclave may use for OCALL frames
	maxReply         = 64 << 20
)

// joinArgs mirrors struct teemate_join_args of design note 0003 (untrusted memory, little endian).
type joinArgs struct {
	ABIVersion uint32
	Reserved   uint32
	Req        uint64
	ReqLen     uint64
	Resp       uint64
	RespCap    uint64
	RespLen    uint64 // out
	Status     int32  // out: 0 ok, else a negative errno
	Pad        uint32
}

// eenter is in enter_amd64.s: it switches to ustackTop, executes EENTER on tcs and returns RDI and RSI
// as the enclave left them at EEXIT.
func eenter(tcs, ustackTop, arg uintptr) (kind, val uintptr)

// aep is the asynchronous exit pointer: after an AEX (interrupt, signal, page fault) the kernel returns
// here and it executes ERESUME on the same TCS (the hardware already left RAX=ERESUME, RBX=TCS).
func aep()

// Enter runs one gate request (a JSON frame body) on t inside the enclave and returns the reply.
// The calling goroutine is locked to its OS thread for the whole call: the TCS is bound to it.
func Enter(t TCS, req []byte) ([]byte, error) {
	if err := checkRequest(t, req); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Everything the enclave reads or writes lives outside the Go heap, so the GC neither moves it
	// nor scans it: the untrusted stack, the argument block, request and reply buffers.
	size := ustackSize + pageSize + len(req) + maxReply
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("attach: enter: %w", err)
	}
	// Unmapping our own fresh anonymous mapping fails only on a bad address, which would be a bug
	// here; the reply was already copied out of it.
	defer unix.Munmap(mem) //nolint:errcheck // see above
	base := uintptr(unsafe.Pointer(&mem[0]))
	argOff := ustackSize
	reqOff := argOff + pageSize
	respOff := reqOff + len(req)
	copy(mem[reqOff:], req)
	args := (*joinArgs)(unsafe.Pointer(&mem[argOff]))
	*args = joinArgs{
		ABIVersion: joinABIVersion,
		Req:        uint64(base) + uint64(reqOff), ReqLen: uint64(len(req)),
		Resp: uint64(base) + uint64(respOff), RespCap: maxReply,
	}
	kind, _ := eenter(uintptr(t.Addr), base+ustackSize, base+uintptr(argOff))
	if kind != exitDone {
		return nil, ErrOCALL{Number: kind}
	}
	if args.Status != 0 {
		return nil, fmt.Errorf("attach: enter: enclave refused the join: %w", unix.Errno(-args.Status))
	}
	if args.RespLen > maxReply {
		return nil, fmt.Errorf("attach: enter: reply of %d bytes (max %d)", args.RespLen, maxReply)
	}
	out := make([]byte, args.RespLen)
	copy(out, mem[respOff:respOff+int(args.RespLen)])
	return out, nil
}
