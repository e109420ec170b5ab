package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// Replies keeps the reply key of each sealed invocation, by activation id, so that its result and
// logs can be opened later (teemate activation result/logs). Each file is private to the user
// (0600 in a 0700 directory): a reply key opens that activation's result.
type Replies struct {
	Dir string
}

// Reply is what is kept of one sealed invocation: the reply key, the evidence the envelope was
// sealed to (the receipt is checked against it), and the action.
type Reply struct {
	ActivationID string           `json:"activationId"`
	Action       string           `json:"action"`
	Key          *sealed.ReplyKey `json:"reply"`
	Evidence     json.RawMessage  `json:"evidence"`
}

// Home is the client's directory: $TEEMATE_HOME, or ~/.teemate. getenv reads the environment
// (os.Getenv).
func Home(getenv func(string) string) (string, error) {
	if home := getenv("TEEMATE_HOME"); home != "" {
		return home, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the reply keys (set TEEMATE_HOME): %w", err)
	}
	return filepath.Join(h, ".teemate"), nil
}

// RepliesIn is the reply keys' store of a client directory (Home): its replies/ subdirectory.
func RepliesIn(home string) *Replies { return &Replies{Dir: filepath.Join(home, "replies")} }

var activationID = regexp.MustCompile(`^[0-9a-zA-Z_-]{1,64}$`)

func (r *Replies) path(id string) (string, error) {
	if !activationID.MatchString(id) {
		return "", fmt.Errorf("bad activation id %q", id)
	}
	return filepath.Join(r.Dir, id+".json"), nil
}

// Put stores the reply of one activation.
func (r *Replies) Put(rep Reply) error {
	p, err := r.path(rep.ActivationID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return fmt.Errorf("reply keys: %w", err)
	}
	// MkdirAll keeps the mode of a directory that exists; the keys must not be readable by others.
	if err := os.Chmod(r.Dir, 0o700); err != nil {
		return fmt.Errorf("reply keys: %w", err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("reply keys: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("reply keys: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("reply keys: %w", err)
	}
	return nil
}

// ErrNoReply: this client did not invoke the activation sealed (or its key was removed).
var ErrNoReply = errors.New("no reply key for this activation here")

// Get reads the reply of one activation and parses its evidence.
func (r *Replies) Get(id string) (*Reply, *attest.Evidence, error) {
	p, err := r.path(id)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("activation %s: %w (%s)", id, ErrNoReply, r.Dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reply keys: %w", err)
	}
	var rep Reply
	if err := json.Unmarshal(b, &rep); err != nil || rep.Key == nil {
		return nil, nil, fmt.Errorf("reply key %s: unreadable: %v", p, err)
	}
	ev, err := attest.Parse(rep.Evidence)
	if err != nil {
		return nil, nil, fmt.Errorf("reply key %s: evidence: %w", p, err)
	}
	return &rep, ev, nil
}
