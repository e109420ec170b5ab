package executor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/sealed"
	"github.com/teemate/platform/invoker/whisk"
)

// ownerEvidence asks the image's owner for its evidence on the gate, as the invoker does before
// publishing it.
func ownerEvidence(t *testing.T, e *env) *attest.Evidence {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := e.manager.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", lease.GateSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := gate.WriteFrame(conn, map[string]string{"type": "evidence"}, wire.MaxOtherFrame); err != nil {
		t.Fatal(err)
	}
	body, err := gate.ReadFrame(conn, wire.MaxReplyFrame)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Type     string          `json:"type"`
		Evidence json.RawMessage `json:"evidence"`
		Message  string          `json:"message"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Type != "evidence" {
		// The gate's evidence message comes with the attestation part of the platform.
		testtool.Missing(t, "the owner does not serve evidence on the gate: "+reply.Message)
	}
	ev, err := attest.Parse(reply.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.Verify(ev, attest.Policy{AllowSimulated: true}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestSealedActivation runs sealed activations through a real owner, the shim and the process
// sandbox: what the executor hands on to the activation record (result and logs) carries no
// plaintext, and the client opens it.
func TestSealedActivation(t *testing.T) {
	e := setup(t, 2, shimBin)
	ev := ownerEvidence(t, e)
	const canary = "canary-9d41"
	const action = "/guest/test"
	sealedJob := func(code string, params json.RawMessage) (*sealedRun, error) {
		value, reply, err := sealed.SealParams(ev, "guest", action, params)
		if err != nil {
			return nil, err
		}
		j := job(code, string(value), 10*time.Second)
		j.Init.Env["__OW_ACTION_NAME"] = action
		return &sealedRun{job: j.Run.ActivationID, reply: reply, o: e.exec.Run(context.Background(), j)}, nil
	}
	noCanary := func(t *testing.T, r *sealedRun) {
		t.Helper()
		record := string(r.o.Response.Result) + strings.Join(r.o.Logs, "\n")
		if strings.Contains(record, canary) {
			t.Fatalf("plaintext reached the record: %s", record)
		}
	}

	t.Run("sealed params, result and logs", func(t *testing.T) {
		r, err := sealedJob(`function main(p) { console.log('log ' + p.secret); return { out: p.secret + '-out' }; }`,
			json.RawMessage(`{"secret":"`+canary+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		noCanary(t, r)
		if r.o.Response.StatusCode != whisk.StatusSuccess {
			t.Fatalf("status %d %s", r.o.Response.StatusCode, r.o.Response.Result)
		}
		if len(r.o.Logs) != 1 || !strings.HasSuffix(r.o.Logs[0], "stdout: sealed: 1 log lines in the sealed result") {
			t.Fatalf("logs %q", r.o.Logs)
		}
		opened, err := sealed.OpenResult(r.reply, r.job, r.o.Response.Result)
		if err != nil {
			t.Fatal(err)
		}
		if string(opened.Result) != `{"out":"`+canary+`-out"}` || len(opened.Logs) != 1 || !strings.HasSuffix(opened.Logs[0], "stdout: log "+canary) {
			t.Fatalf("opened %s %q", opened.Result, opened.Logs)
		}
	})

	t.Run("sealed code and an application error", func(t *testing.T) {
		code, err := sealed.SealCode(ev, "guest", action, []byte(`function main(p) { return { error: 'no `+canary+`' }; }`))
		if err != nil {
			t.Fatal(err)
		}
		r, err := sealedJob(code, nil)
		if err != nil {
			t.Fatal(err)
		}
		noCanary(t, r)
		if r.o.Response.StatusCode != whisk.StatusApplicationError {
			t.Fatalf("status %d %s", r.o.Response.StatusCode, r.o.Response.Result)
		}
		opened, err := sealed.OpenResult(r.reply, r.job, r.o.Response.Result)
		if err != nil {
			t.Fatal(err)
		}
		if string(opened.Error) != `"no `+canary+`"` {
			t.Fatalf("opened error %s", opened.Error)
		}
	})

	t.Run("a tampered envelope is refused and the owner keeps serving", func(t *testing.T) {
		value, _, err := sealed.SealParams(ev, "guest", action, json.RawMessage(`{"secret":"`+canary+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var env map[string]sealed.Envelope
		if err := json.Unmarshal(value, &env); err != nil {
			t.Fatal(err)
		}
		v := env[sealed.ParamsField]
		ct, err := base64.StdEncoding.DecodeString(v.Ct)
		if err != nil {
			t.Fatal(err)
		}
		ct[0] ^= 1
		v.Ct = base64.StdEncoding.EncodeToString(ct)
		env[sealed.ParamsField] = v
		tampered, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		j := job(`function main() { return {} }`, string(tampered), 10*time.Second)
		j.Init.Env["__OW_ACTION_NAME"] = action
		o := e.exec.Run(context.Background(), j)
		var res struct{ Error string }
		if err := json.Unmarshal(o.Response.Result, &res); err != nil {
			t.Fatal(err)
		}
		if o.Response.StatusCode != whisk.StatusDeveloperError || !strings.HasPrefix(res.Error, sealed.IntegrityPrefix) {
			t.Fatalf("status %d %s", o.Response.StatusCode, o.Response.Result)
		}
		r, err := sealedJob(`function main(p) { return p }`, json.RawMessage(`{"after":true}`))
		if err != nil {
			t.Fatal(err)
		}
		if r.o.Response.StatusCode != whisk.StatusSuccess {
			t.Fatalf("after a refusal: status %d %s", r.o.Response.StatusCode, r.o.Response.Result)
		}
	})
}

// sealedRun is one sealed activation: its id, the client's reply key and what the executor gave.
type sealedRun struct {
	job   string
	reply *sealed.ReplyKey
	o     activation.Outcome
}
