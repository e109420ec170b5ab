// Package attest owns the identity of an image's enclave as a client sees it: the evidence an
// enclave serves (its image key's public halves bound to its measurement), and the verifier that
// decides whether a client may trust that key.
//
// Evidence comes in two types. "sgx-dcap" carries an Intel SGX DCAP quote (version 3, ECDSA-256
// with P-256) whose ISV enclave report's report_data is ReportData(kem, sig): the enclave wrote that
// value to Gramine's /dev/attestation/user_report_data and read the quote back, so the quote binds
// the key to the enclave's MRENCLAVE/MRSIGNER. "simulated" is what the direct backend (no SGX)
// serves: the same key binding, a measurement of the code the owner runs, and a note saying in its own
// fields that there is no hardware root of trust. Verify refuses it with ErrSimulated unless the
// caller's Policy allows it explicitly.
//
// Verify checks, for sgx-dcap: the quote's structure; the ISV report's report_data against the
// evidence's reportData; the quote signature by the attestation key; the QE report's signature by
// the PCK certificate's key; the QE report data binding the attestation key and the QE
// authentication data; the PCK certificate chain (certification data type 5) up to the roots the
// caller pins in Policy.Roots (Intel's SGX root CA in production, a test CA in tests); and the
// MRENCLAVE / MRSIGNER, ISVPRODID and minimum ISVSVN policy.
//
// What it does not check, and why: the TCB level of the platform (Intel's TCB Info for the
// PCK's FMSPC), the QE's identity (Intel's QE Identity: the QE's MRSIGNER, ISVPRODID and ISVSVN),
// and revocation (the PCK and root CRLs). All three come from Intel's Provisioning Certification
// Service as signed collateral that changes over time, and this project has no SGX hardware or
// PCCS to test them against; a quote that passes Verify proves the key lives in an enclave with
// the policy's measurement on a platform whose PCK chains to the pinned root, not that the
// platform's microcode is up to date or that the PCK is not revoked. Deployments that need those
// guarantees must add a collateral check (for instance Intel's QVL) on top of Verify.
//
// It is a public leaf package (it imports nothing of ours) so the CLI, the controller and the
// client libraries share one verifier. It runs on the client's side of the trust boundary: it
// trusts nothing in the evidence it is given, only the Policy.
package attest
