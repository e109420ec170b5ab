//go:build sgx && linux && amd64

#include "textflag.h"

// ENCLU leaves (EAX): EENTER = 2, ERESUME = 3. Encoded as bytes: 0F 01 D7.

// func eenter(tcs, ustackTop, arg uintptr) (kind, val uintptr)
//
// Saves Go's SP and BP on top of the untrusted stack, switches to it and executes EENTER with
// RBX = TCS, RCX = AEP, RDI = ECALL_PROCESS_JOIN, RSI = arg. The hardware stores the address of the
// next instruction in RCX; the enclave EEXITs there with RSP restored to the untrusted stack it got.
// The enclave scrubs every other register, so nothing else is expected to survive (R14 and X15 are
// restored by the ABI wrapper that called this ABI0 function).
TEXT ·eenter(SB), NOSPLIT, $0-40
	MOVQ	tcs+0(FP), BX
	MOVQ	ustackTop+8(FP), R8
	MOVQ	arg+16(FP), SI
	MOVQ	SP, R9
	MOVQ	R9, -8(R8)	// Go SP
	MOVQ	BP, -16(R8)	// Go frame pointer
	LEAQ	-16(R8), SP
	LEAQ	·aep(SB), CX
	MOVQ	$3, DI		// ECALL_PROCESS_JOIN
	MOVQ	$2, AX		// EENTER
	BYTE	$0x0F; BYTE $0x01; BYTE $0xD7
	// Back from EEXIT: RSP is the untrusted stack again.
	MOVQ	0(SP), BP
	MOVQ	8(SP), R9
	MOVQ	R9, SP
	MOVQ	DI, kind+24(FP)
	MOVQ	SI, val+32(FP)
	RET

// func aep()
//
// Never called from Go: its address is the AEP. After an AEX the hardware has set RAX = ERESUME,
// RBX = TCS, RCX = AEP; a signal handler the kernel ran in between returned here.
TEXT ·aep(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ	$3, AX
	BYTE	$0x0F; BYTE $0x01; BYTE $0xD7
	RET
