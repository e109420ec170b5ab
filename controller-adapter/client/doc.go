// Package client is the user's side of the platform: the OpenWhisk REST calls a CLI or a program
// needs (actions, invocations, activations, the evidence of an action's image) and, on top of
// invoker/attest and invoker/sealed, the sealed flows: verify an image's evidence, seal an
// action's code or an invocation's parameters to the image key, and open the sealed result with
// its receipt.
//
// It runs on the client's machine, outside the platform: the only side that holds plaintext besides
// the enclave. Nothing here trusts the API host; every answer that matters (evidence, sealed
// results, receipts) is verified. bin/teemate (controller-adapter/cmd/teemate) is a thin command
// line over it; client/js/teemate.js is the same for Node programs.
package client
