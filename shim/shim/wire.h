/*
 * Wire constants of the action-proxy protocol (/init, /run) and the gate protocol
 * (enclave-runtime/PROTOCOL.md) as the shim uses them.
 *
 * The Go package invoker/internal/wire owns these values; its test parses this file and fails when
 * a value here differs from the Go one, so edit both together.
 */
#ifndef TEEMATE_WIRE_H
#define TEEMATE_WIRE_H

/* The gate protocol version sent in hello. */
#define WIRE_GATE_VERSION 1

/* Frame size limits (PROTOCOL.md, "Framing"). */
#define WIRE_MAX_INIT_FRAME  (64u << 20)
#define WIRE_MAX_OTHER_FRAME (2u << 20)
#define WIRE_MAX_REPLY_FRAME (80u << 20)

/* The largest /init or /run body accepted (OpenWhisk's Node runtime: 48 MiB). */
#define WIRE_MAX_BODY (48u << 20)

/* Run limits of the gate (PROTOCOL.md, "run -> result"). */
#define WIRE_MIN_TIMEOUT_MS 100
#define WIRE_MAX_TIMEOUT_MS 600000
#define WIRE_MIN_MEMORY_MB  64
#define WIRE_MAX_MEMORY_MB  4096
#define WIRE_MAX_LOG_LIMIT  (64ll << 20)

/* Outcomes: the gate's result outcomes, passed on in the outcome header, and "gate" for a failure
 * between the shim and the enclave.
 */
#define WIRE_OUTCOME_SUCCESS     "success"
#define WIRE_OUTCOME_APPLICATION "application"
#define WIRE_OUTCOME_DEVELOPER   "developer"
#define WIRE_OUTCOME_TIMEOUT     "timeout"
#define WIRE_OUTCOME_MEMORY      "memory"
#define WIRE_OUTCOME_GATE        "gate"

/* Response headers of the shim. */
#define WIRE_HEADER_OUTCOME "X-Teemate-Outcome"
#define WIRE_HEADER_TIMINGS "X-Teemate-Timings"

/* OpenWhisk's end-of-activation marker, printed on stdout and stderr. */
#define WIRE_LOG_SENTINEL "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

#endif
