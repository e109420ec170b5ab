package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/invoker/attest"
)

func env(m map[string]string) Env { return func(k string) string { return m[k] } }

func TestParse_Commands(t *testing.T) {
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*options) string // "" when fine
		err  string
	}{
		{name: "attest with action and json", args: []string{"--apihost", "http://h:1", "--auth", "u:k", "attest", "hello", "--json"},
			want: func(o *options) string {
				if o.cmd != "attest" || o.args[0] != "hello" || !o.json || o.policy.AllowSimulated {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}},
		{name: "invoke with params anywhere", args: []string{"invoke", "hello", "-p", "a", "1", "--sealed", "-p", "b", "text", "--no-wait", "--apihost=http://h"},
			want: func(o *options) string {
				if o.cmd != "invoke" || !o.sealed || !o.noWait || string(o.params["a"]) != "1" || string(o.params["b"]) != `"text"` ||
					strings.Join(o.paramOrder, ",") != "a,b" || o.apihost != "http://h" {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}},
		{name: "allow simulated from the environment", args: []string{"activation", "result", "id1"}, env: map[string]string{"TEEMATE_ALLOW_SIMULATED": "1"},
			want: func(o *options) string {
				if o.cmd != "activation result" || !o.policy.AllowSimulated {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}},
		{name: "TEEMATE_HOME", args: []string{"activation", "logs", "x"}, env: map[string]string{"TEEMATE_HOME": "/h"},
			want: func(o *options) string {
				if o.home != "/h" {
					return o.home
				}
				return ""
			}},
		{name: "unknown command", args: []string{"frobnicate"}, err: "unknown command"},
		{name: "no command", args: nil, err: "no command"},
		{name: "flag of another command", args: []string{"attest", "--sealed"}, err: "attest does not take --sealed"},
		{name: "tamper without sealed", args: []string{"invoke", "x", "--tamper-for-test"}, err: "needs --sealed"},
		{name: "param without value", args: []string{"invoke", "x", "-p", "k"}, err: "needs KEY VALUE"},
		{name: "too many arguments", args: []string{"invoke", "x", "y"}, err: "takes 1 to 1 arguments"},
		{name: "action without subcommand", args: []string{"action"}, err: "needs a subcommand"},
		{name: "bad mrenclave", args: []string{"attest", "--mrenclave", "zz"}, err: "64 hex digits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := parse(c.args, env(c.env))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("parse %q: %v, want %q", c.args, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := c.want(o); msg != "" {
				t.Errorf("parse %q: %s", c.args, msg)
			}
		})
	}
}

func TestParse_WskProps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wskprops")
	if err := os.WriteFile(p, []byte("APIHOST=http://127.0.0.1:3233\nAUTH=u:k\nNAMESPACE=_\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSK_CONFIG_FILE", p)
	o, err := parse([]string{"attest"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.apihost != "http://127.0.0.1:3233" || o.auth != "u:k" {
		t.Errorf("from %s: apihost %q auth %q", p, o.apihost, o.auth)
	}
	if o, err = parse([]string{"attest", "--auth", "a:b"}, env(nil)); err != nil || o.auth != "a:b" {
		t.Errorf("--auth must win over the file: %v %q", err, o.auth)
	}
}

// TestExitCode: every failure class has its own code, and the help text lists them all.
func TestExitCode(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, ExitOK},
		{errors.New("x"), ExitFailure},
		{fmt.Errorf("w: %w", errUsage), ExitUsage},
		{fmt.Errorf("w: %w", client.ErrUnreachable), ExitUnreachable},
		{fmt.Errorf("w: %w", client.ErrUnauthorized), ExitAuth},
		{fmt.Errorf("w: %w", client.ErrNotFound), ExitNotFound},
		{fmt.Errorf("w: %w", client.ErrNoEvidence), ExitNoEvidence},
		{fmt.Errorf("w: %w", attest.ErrSimulated), ExitSimulated},
		{fmt.Errorf("w: %w: %w", client.ErrEvidence, attest.ErrChain), ExitEvidence},
		{fmt.Errorf("w: %w", client.ErrIntegrity), ExitIntegrity},
		{fmt.Errorf("w: %w", client.ErrReceipt), ExitReceipt},
		{fmt.Errorf("w: %w", client.ErrNotReady), ExitNotReady},
		{fmt.Errorf("w: %w", client.ErrActionFailed), ExitActionError},
		{fmt.Errorf("w: %w", client.ErrNoReply), ExitNoReply},
	} {
		if got := ExitCode(c.err); got != c.code {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.code)
		}
		seen[c.code] = true
	}
	for code := range seen {
		if !strings.Contains(usage, fmt.Sprintf("\n  %d ", code)) {
			t.Errorf("teemate help does not list exit code %d", code)
		}
	}
}

func TestRun_UsageAndUnreachable(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"help"}, &out, &errb, env(nil)); code != ExitOK || !strings.Contains(out.String(), "Exit codes") {
		t.Errorf("help: %d %q", code, out.String())
	}
	out.Reset()
	// A port nobody listens on: 127.0.0.1:1 (tcpmux, not served here).
	code := Run(context.Background(), []string{"--apihost", "http://127.0.0.1:1", "--auth", "u:k", "attest", "--allow-simulated"},
		&out, &errb, env(map[string]string{"TEEMATE_HOME": t.TempDir()}))
	if code != ExitUnreachable || !strings.Contains(errb.String(), "unreachable") {
		t.Errorf("unreachable host: exit %d, stderr %q", code, errb.String())
	}
}
