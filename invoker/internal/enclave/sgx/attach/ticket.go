package attach

import (
	"fmt"
	"strconv"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

// The sandbox's environment in sgx mode: the invoker puts the owner's share into the sandbox it
// creates for an activation, and the joiner (cmd/teemate-join, or the patched loader's join mode)
// reads it back. The token is a capability: it goes only to sandboxes of the owner's image, never on
// an argv (argv is world-readable in /proc).
const (
	EnvShareID = "TEEMATE_SHARE_ID"
	EnvToken   = "TEEMATE_TOKEN"
	// EnvGateFD names the descriptor on which the joiner speaks the gate protocol to the shim.
	EnvGateFD = "TEEMATE_GATE_FD"
)

// Ticket is what a sandbox needs to attach to its image's warm enclave.
type Ticket struct {
	ShareID uint64
	Token   teemate.Token
}

// Env is the ticket as environment entries for the sandbox.
func (t Ticket) Env() []string {
	return []string{
		EnvShareID + "=" + strconv.FormatUint(t.ShareID, 10),
		EnvToken + "=" + t.Token.String(),
	}
}

// TicketFromEnv reads a ticket through getenv (os.Getenv in the joiner).
func TicketFromEnv(getenv func(string) string) (Ticket, error) {
	idStr := getenv(EnvShareID)
	if idStr == "" {
		return Ticket{}, fmt.Errorf("attach: %s is not set (the sandbox was not started for an sgx owner)", EnvShareID)
	}
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil || id == 0 {
		return Ticket{}, fmt.Errorf("attach: %s=%q is not a share id", EnvShareID, idStr)
	}
	tok, err := teemate.ParseToken(getenv(EnvToken))
	if err != nil {
		return Ticket{}, fmt.Errorf("attach: %s: %w", EnvToken, err)
	}
	return Ticket{ShareID: id, Token: tok}, nil
}
