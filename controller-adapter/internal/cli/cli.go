package cli

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// Exit codes, one per failure class (teemate help lists them).
const (
	ExitOK          = 0
	ExitFailure     = 1  // anything not below
	ExitUsage       = 2  // bad command line or configuration
	ExitUnreachable = 3  // the API host does not answer
	ExitAuth        = 4  // the API host refused the credentials (401/403)
	ExitNotFound    = 5  // unknown action or activation
	ExitNoEvidence  = 6  // no enclave of the image has published evidence yet
	ExitSimulated   = 7  // the evidence is simulated and --allow-simulated was not given
	ExitEvidence    = 8  // the evidence does not verify (binding, chain, measurement policy)
	ExitIntegrity   = 9  // the enclave refused the envelope (tampered, replayed, stale), or the result does not open
	ExitReceipt     = 10 // the receipt does not match the evidence, the envelope or the result
	ExitNotReady    = 11 // the activation has not finished yet
	ExitActionError = 12 // the action finished with an error (printed)
	ExitNoReply     = 13 // no reply key here for that activation (it was not invoked sealed from here)
)

const usage = `teemate: the TeeMate platform's command line for confidential (sealed) invocations.

Usage:
  teemate [global flags] attest [ACTION] [--kind KIND] [--json]
      Fetch and verify the evidence of ACTION's image (or of KIND's image, default nodejs:20)
      and print it.
  teemate [global flags] action create NAME FILE [--sealed] [--kind KIND]
      Create or replace an action from FILE. --sealed: the code is sealed to the image's key
      (stored encrypted; only the enclave opens it at init).
  teemate [global flags] invoke NAME [--sealed] [-p KEY VALUE]... [--json] [--no-wait] [--tamper-for-test]
      Invoke NAME. --sealed: the parameters are sealed to the image's key and the result, logs and
      errors come back sealed to a key only this client holds; the receipt is verified. Prints the
      result; --json prints {"result": ..., "receipt": {"verified": true, ...}, "activationId": ...}.
      --no-wait returns the activation id at once. VALUE is JSON if it parses, else a string.
      --tamper-for-test flips one byte of the envelope before sending (tests only).
  teemate [global flags] activation result ID [--json]
  teemate [global flags] activation logs ID
      Print an activation's result or logs, decrypted when it was invoked sealed from here.
  teemate help

Global flags (anywhere on the line):
  --apihost URL        the platform's API host (default: APIHOST of $WSK_CONFIG_FILE or ~/.wskprops)
  --auth KEY           the OpenWhisk key uuid:key (default: AUTH of the same file)
  --allow-simulated    accept simulated evidence (direct mode: no hardware root of trust);
                       also TEEMATE_ALLOW_SIMULATED=1
  --root-ca FILE       PEM root certificate(s) the SGX quote's PCK chain must end at
  --mrenclave HEX      accepted MRENCLAVE (repeatable)
  --mrsigner HEX       accepted MRSIGNER (repeatable)

Reply keys of sealed invocations are kept 0600 under $TEEMATE_HOME/replies (default ~/.teemate).

Exit codes:
  0  success
  1  other failure
  2  bad command line or configuration
  3  the API host is unreachable
  4  the API host refused the credentials (401/403)
  5  unknown action or activation
  6  no evidence yet (no enclave of the image has started)
  7  the evidence is simulated and --allow-simulated was not given
  8  the evidence does not verify (binding, certificate chain, measurement policy)
  9  integrity failure: the enclave refused the envelope (tampered, replayed, stale) or the
     sealed result does not open
  10 receipt mismatch
  11 the activation has not finished yet
  12 the action finished with an error
  13 no reply key here for that activation
`

// Env reads the environment (os.Getenv in bin/teemate).
type Env func(string) string

// Run runs one command line (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) int {
	o, err := parse(args, env)
	if err != nil {
		fmt.Fprintf(stderr, "teemate: %v\n(teemate help lists the commands)\n", err)
		return ExitUsage
	}
	if o.cmd == "help" {
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	c, err := client.New(client.Config{APIHost: o.apihost, Auth: o.auth, Policy: o.policy})
	if err != nil {
		fmt.Fprintf(stderr, "teemate: %v\n", err)
		return ExitUsage
	}
	replies := client.RepliesIn(o.home)
	r := &runner{c: c, o: o, out: stdout, replies: replies}
	switch o.cmd {
	case "attest":
		err = r.attest(ctx)
	case "action create":
		err = r.create(ctx)
	case "invoke":
		err = r.invoke(ctx)
	case "activation result":
		err = r.activation(ctx, false)
	case "activation logs":
		err = r.activation(ctx, true)
	}
	if err != nil {
		fmt.Fprintf(stderr, "teemate: %s\n", describe(err))
	}
	return ExitCode(err)
}

// ExitCode maps an error of the client to the exit code of its class.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errUsage):
		return ExitUsage
	case errors.Is(err, client.ErrUnreachable):
		return ExitUnreachable
	case errors.Is(err, client.ErrUnauthorized):
		return ExitAuth
	case errors.Is(err, client.ErrNoEvidence):
		return ExitNoEvidence
	case errors.Is(err, attest.ErrSimulated):
		return ExitSimulated
	case errors.Is(err, client.ErrEvidence):
		return ExitEvidence
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrIntegrity):
		return ExitIntegrity
	case errors.Is(err, client.ErrReceipt):
		return ExitReceipt
	case errors.Is(err, client.ErrNotReady):
		return ExitNotReady
	case errors.Is(err, client.ErrActionFailed):
		return ExitActionError
	case errors.Is(err, client.ErrNoReply):
		return ExitNoReply
	}
	return ExitFailure
}

// describe puts the failure class in front, where a reader looks first.
func describe(err error) string {
	for _, c := range []struct {
		err  error
		head string
	}{
		{client.ErrUnreachable, "unreachable"},
		{client.ErrUnauthorized, "unauthorized"},
		{client.ErrNoEvidence, "no evidence yet"},
		{attest.ErrSimulated, "simulated evidence refused"},
		{client.ErrEvidence, "evidence refused"},
		{client.ErrIntegrity, "integrity failure"},
		{client.ErrReceipt, "receipt mismatch"},
		{client.ErrNotReady, "not finished"},
		{client.ErrNotFound, "not found"},
	} {
		if errors.Is(err, c.err) {
			return c.head + ": " + err.Error()
		}
	}
	return err.Error()
}

var errUsage = errors.New("usage")

type options struct {
	cmd                  string
	args                 []string
	apihost, auth, home  string
	kind                 string
	policy               attest.Policy
	json, sealed, noWait bool
	tamper               bool
	params               map[string]json.RawMessage
	paramOrder           []string
}

// commandFlags are the flags each command takes beyond the global ones.
var commandFlags = map[string][]string{
	"attest":            {"--json", "--kind"},
	"action create":     {"--sealed", "--kind"},
	"invoke":            {"--sealed", "--json", "--no-wait", "--tamper-for-test", "-p", "--param"},
	"activation result": {"--json"},
	"activation logs":   {},
	"help":              {},
}

// commandArgs is how many positional arguments each command takes (min, max).
var commandArgs = map[string][2]int{
	"attest": {0, 1}, "action create": {2, 2}, "invoke": {1, 1},
	"activation result": {1, 1}, "activation logs": {1, 1}, "help": {0, 0},
}

func parse(args []string, env Env) (*options, error) {
	o := &options{kind: "nodejs:20", params: map[string]json.RawMessage{}}
	var pos []string
	used := map[string]bool{}
	value := func(i *int, name string, inline *string) (string, error) {
		if inline != nil {
			return *inline, nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, inl, hasInl := strings.Cut(a, "=")
		var inline *string
		if hasInl {
			inline = &inl
		}
		used[name] = true
		var err error
		var v string
		switch name {
		case "--apihost":
			o.apihost, err = value(&i, name, inline)
		case "--auth", "-u":
			used["--auth"] = true
			o.auth, err = value(&i, name, inline)
		case "--allow-simulated":
			o.policy.AllowSimulated = true
		case "--root-ca":
			if v, err = value(&i, name, inline); err == nil {
				err = addRoots(&o.policy, v)
			}
		case "--mrenclave", "--mrsigner":
			if v, err = value(&i, name, inline); err == nil {
				var m [32]byte
				if b, herr := hex.DecodeString(v); herr != nil || len(b) != 32 {
					err = fmt.Errorf("%s %q: want 64 hex digits", name, v)
				} else if copy(m[:], b); name == "--mrenclave" {
					o.policy.MREnclave = append(o.policy.MREnclave, m)
				} else {
					o.policy.MRSigner = append(o.policy.MRSigner, m)
				}
			}
		case "--kind":
			o.kind, err = value(&i, name, inline)
		case "--json":
			o.json = true
		case "--sealed":
			o.sealed = true
		case "--no-wait":
			o.noWait = true
		case "--tamper-for-test":
			o.tamper = true
		case "-p", "--param":
			if hasInl {
				return nil, fmt.Errorf("%s takes two arguments: KEY VALUE", name)
			}
			if i+2 >= len(args) {
				return nil, fmt.Errorf("%s needs KEY VALUE", name)
			}
			k, raw := args[i+1], args[i+2]
			i += 2
			if k == "" {
				return nil, fmt.Errorf("%s: empty key", name)
			}
			if _, dup := o.params[k]; !dup {
				o.paramOrder = append(o.paramOrder, k)
			}
			o.params[k] = paramValue(raw)
		case "-h", "--help":
			o.cmd = "help"
		default:
			return nil, fmt.Errorf("unknown flag %s", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.cmd == "" {
		if len(pos) == 0 {
			return nil, errors.New("no command")
		}
		o.cmd, pos = pos[0], pos[1:]
		if o.cmd == "action" || o.cmd == "activation" {
			if len(pos) == 0 {
				return nil, fmt.Errorf("%s needs a subcommand", o.cmd)
			}
			o.cmd, pos = o.cmd+" "+pos[0], pos[1:]
		}
	}
	n, ok := commandArgs[o.cmd]
	if !ok {
		return nil, fmt.Errorf("unknown command %q", o.cmd)
	}
	if o.cmd == "help" {
		return o, nil
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		return nil, fmt.Errorf("%s takes %d to %d arguments, got %d: %q", o.cmd, n[0], n[1], len(pos), pos)
	}
	o.args = pos
	allowed := map[string]bool{"--apihost": true, "--auth": true, "-u": true, "--allow-simulated": true,
		"--root-ca": true, "--mrenclave": true, "--mrsigner": true}
	for _, f := range commandFlags[o.cmd] {
		allowed[f] = true
	}
	for f := range used {
		if !allowed[f] {
			return nil, fmt.Errorf("%s does not take %s", o.cmd, f)
		}
	}
	if o.tamper && !o.sealed {
		return nil, errors.New("--tamper-for-test needs --sealed (it tampers with the envelope)")
	}
	if v := env("TEEMATE_ALLOW_SIMULATED"); v == "1" || v == "true" {
		o.policy.AllowSimulated = true
	}
	if o.apihost == "" || o.auth == "" {
		host, auth, err := client.WskProps()
		if err != nil {
			return nil, err
		}
		if o.apihost == "" {
			o.apihost = host
		}
		if o.auth == "" {
			o.auth = auth
		}
	}
	home, err := client.Home(env)
	if err != nil {
		return nil, err
	}
	o.home = home
	return o, nil
}

func addRoots(p *attest.Policy, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--root-ca: %w", err)
	}
	if p.Roots == nil {
		p.Roots = x509.NewCertPool()
	}
	if !p.Roots.AppendCertsFromPEM(b) {
		return fmt.Errorf("--root-ca %s: no PEM certificate", file)
	}
	return nil
}

// paramValue is wsk's rule: a VALUE that parses as JSON is that JSON, anything else a string.
func paramValue(raw string) json.RawMessage {
	if json.Valid([]byte(raw)) {
		return json.RawMessage(raw)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		// A Go string always marshals; keep the compiler's and the reader's minds at rest.
		return json.RawMessage(`""`)
	}
	return b
}

type runner struct {
	c       *client.Client
	o       *options
	out     io.Writer
	replies *client.Replies
}

func (r *runner) print(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("print: %w", err)
	}
	fmt.Fprintln(r.out, string(b))
	return nil
}

func (r *runner) attest(ctx context.Context) error {
	var (
		ev  *attest.Evidence
		id  *attest.Identity
		err error
	)
	if len(r.o.args) == 1 {
		ev, id, err = r.c.Attest(ctx, r.o.args[0])
	} else {
		ev, id, err = r.c.AttestKind(ctx, r.o.kind)
	}
	if err != nil {
		return err
	}
	if r.o.json {
		return r.print(map[string]any{"verified": true, "type": id.Type, "kid": id.Kid,
			"evidence": json.RawMessage(ev.Raw)})
	}
	fmt.Fprintf(r.out, "evidence verified: %s, image %s, key %s\n", id.Type, ev.Image, id.Kid)
	if ev.Simulated != nil {
		fmt.Fprintf(r.out, "SIMULATED (accepted with --allow-simulated): %s; measurement %s\n", ev.Simulated.Note, ev.Simulated.Measurement)
	} else {
		fmt.Fprintf(r.out, "MRENCLAVE %x\nMRSIGNER  %x\n", id.MREnclave, id.MRSigner)
	}
	return nil
}

func (r *runner) create(ctx context.Context) error {
	name, file := r.o.args[0], r.o.args[1]
	code, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	var a *client.Action
	if r.o.sealed {
		a, err = r.c.CreateSealed(ctx, name, r.o.kind, code, client.Action{})
	} else {
		a, err = r.c.PutAction(ctx, name, client.Action{Exec: client.Exec{Kind: r.o.kind, Code: string(code)}})
	}
	if err != nil {
		return err
	}
	what := "action"
	if r.o.sealed {
		what = "sealed action"
	}
	fmt.Fprintf(r.out, "ok: created %s /%s/%s\n", what, a.Namespace, a.Name)
	return nil
}

func (r *runner) paramsJSON() (json.RawMessage, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range r.o.paramOrder {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %w", k, err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(r.o.params[k])
	}
	b.WriteByte('}')
	return json.RawMessage(b.String()), nil
}

func (r *runner) invoke(ctx context.Context) error {
	name := r.o.args[0]
	params, err := r.paramsJSON()
	if err != nil {
		return err
	}
	if !r.o.sealed {
		a, err := r.c.Invoke(ctx, name, params, !r.o.noWait)
		if err != nil {
			return err
		}
		return r.plain(a)
	}
	var storeErr error
	s, err := r.c.InvokeSealed(ctx, name, params, client.InvokeOptions{Blocking: !r.o.noWait, TamperForTest: r.o.tamper})
	if s != nil {
		// Kept even when the result did not open: activation result/logs can try again later.
		storeErr = r.replies.Put(client.Reply{ActivationID: s.ActivationID, Action: s.Action, Key: s.Reply, Evidence: s.Evidence.Raw})
	}
	if err != nil && (s == nil || s.Opened == nil) {
		return errors.Join(err, storeErr)
	}
	if storeErr != nil {
		return storeErr
	}
	if !s.Activation.Done() {
		if r.o.json {
			return r.print(map[string]any{"activationId": s.ActivationID})
		}
		fmt.Fprintf(r.out, "ok: invoked %s sealed with id %s\n", name, s.ActivationID)
		return nil
	}
	if perr := r.sealedOut(s.ActivationID, s.Opened); perr != nil {
		return perr
	}
	return err // ErrActionFailed after the error value was printed
}

// sealedOut prints an opened sealed outcome: the result (or the action's error), or with --json
// {"result": ..., "error": ..., "receipt": {"verified": true, ...}, "activationId": ...}.
func (r *runner) sealedOut(id string, o *sealed.Opened) error {
	res := o.Result
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	if r.o.json {
		rb, err := json.Marshal(o.Receipt)
		if err != nil {
			return fmt.Errorf("receipt: %w", err)
		}
		var receipt map[string]any
		if err := json.Unmarshal(rb, &receipt); err != nil {
			return fmt.Errorf("receipt: %w", err)
		}
		receipt["verified"] = true
		doc := map[string]any{"result": res, "receipt": receipt, "activationId": id}
		if len(o.Error) > 0 && string(o.Error) != "null" {
			doc["error"] = o.Error
		}
		return r.print(doc)
	}
	if len(o.Error) > 0 && string(o.Error) != "null" {
		return r.print(map[string]any{"error": o.Error})
	}
	return r.print(res)
}

// plain prints an unsealed invoke's answer as wsk --result does (the id for a non-blocking one).
func (r *runner) plain(a *client.Activation) error {
	if !a.Done() {
		if r.o.json {
			return r.print(map[string]any{"activationId": a.ActivationID})
		}
		fmt.Fprintf(r.out, "ok: invoked %s with id %s\n", r.o.args[0], a.ActivationID)
		return nil
	}
	if r.o.json {
		return r.print(map[string]any{"result": a.Response.Result, "activationId": a.ActivationID})
	}
	if err := r.print(a.Response.Result); err != nil {
		return err
	}
	if !a.Response.Success {
		return fmt.Errorf("activation %s: %w (%s)", a.ActivationID, client.ErrActionFailed, a.Response.Status)
	}
	return nil
}

func (r *runner) activation(ctx context.Context, logs bool) error {
	id := r.o.args[0]
	rep, ev, rerr := r.replies.Get(id)
	if rerr != nil && !errors.Is(rerr, client.ErrNoReply) {
		return rerr
	}
	var a *client.Activation
	var err error
	if rep == nil {
		a, err = r.c.GetActivation(ctx, id)
	} else {
		// Invoked from here: a record that is not there yet is one still running (or being stored).
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		a, err = r.c.WaitActivation(wctx, id)
	}
	if err != nil {
		return err
	}
	if rep == nil {
		if logs {
			for _, l := range a.Logs {
				fmt.Fprintln(r.out, l)
			}
			return nil
		}
		return r.plain(a)
	}
	o, err := client.Open(ev, rep.Key, a)
	if o == nil {
		return err
	}
	if logs {
		for _, l := range o.Logs {
			fmt.Fprintln(r.out, l)
		}
		return nil
	}
	if perr := r.sealedOut(id, o); perr != nil {
		return perr
	}
	return err
}
