// Package whisk holds Apache OpenWhisk's wire types: the ActivationMessage the
// controller puts on invoker{N}, the acknowledgements an invoker returns on
// completed{C}, the PingMessage on health, the WhiskActivation record, and the
// action document an invoker loads before running an activation.
//
// It is shared by the invoker, the controller-adapter and the bench, so it is a
// leaf package: it imports only the standard library and nothing else of ours.
//
// Trust boundary: everything here runs on the untrusted host. The types carry
// whatever the host hands them (including ciphertext parameters) and make no
// confidentiality claims; the enclave runtime validates its own inputs again.
//
// Fidelity rules, checked against OpenWhisk's Scala serializers
// (common/scala/.../core/connector/Message.scala and core/entity/*):
//
//   - A transid is kept as the raw bytes it arrived as and echoed unchanged in
//     every ack: the controller recognises its health-test acks only by
//     comparing the returned transid with its own.
//   - Readers are lenient where OpenWhisk is (unknown fields are ignored,
//     revision may be null, content may be absent or an array, action may be a
//     plain "ns/pkg/act" string). Writers are strict where OpenWhisk's readers
//     are: InvokerInstanceId always carries instance, userMemory, instanceType,
//     tags and dedicatedNamespaces; an ActivationMessage always carries
//     revision, initArgs and lockedArgs.
//   - Messages are written without HTML escaping, as spray-json does, and
//     stay below MaxMessageBytes; an ack that would not fit is shrunk to the
//     activation id (see Ack.Shrink), and an ActivationMessage whose content
//     would not fit carries a ContentRef instead (ours; OpenWhisk ignores it).
//
// Every parse error wraps ErrMalformed so callers can count and skip bad input
// with one errors.Is check.
package whisk
