// Package sealed is the client side of TeeMate's sealed invocation: it seals an action's parameters
// and code to an image key that an enclave's evidence vouches for, opens the sealed result (value,
// error and log lines) that the enclave seals back, and verifies the enclave's signed receipt.
//
// It runs on the client's machine, outside the platform: nothing here trusts the controller, Kafka,
// the invoker or the host that runs the enclave. They only relay ciphertext. The enclave side of the
// same formats is enclave-runtime/trusted/sealed.js; the formats themselves are in README.md here.
// The cryptography is HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
// AES-256-GCM from the standard library's crypto/hpke, and Ed25519 for receipts.
//
// The package checks what the enclave's key signs and seals; whether that key belongs to a genuine
// enclave is package attest's decision (attest.Verify), which callers make before sealing anything.
package sealed
