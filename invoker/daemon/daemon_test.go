package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

func TestInvoker_AckShapes(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("hello", 10)
	e.api.addAction("quiet", 0)
	e.startInvoker(nil)

	t.Run("blocking with logs: result then completion", func(t *testing.T) {
		e.send(message(id(1), "hello", true, ""))
		a, _ := e.nextAck(10 * time.Second)
		res, ok := a.(*whisk.ResultMessage)
		if !ok {
			t.Fatalf("first ack is %T, want ResultMessage", a)
		}
		act := res.Response.Activation
		if act == nil || act.ActivationID != id(1) || string(act.Response.Result) != `{"name":"Bob"}` {
			t.Fatalf("result ack activation = %+v", act)
		}
		if len(act.Logs) != 0 {
			t.Fatalf("result ack carries logs: %v", act.Logs)
		}
		a, _ = e.nextAck(10 * time.Second)
		comp, ok := a.(*whisk.CompletionMessage)
		if !ok || comp.ActivationID != id(1) || comp.IsSystemError || comp.Instance.Instance != 0 {
			t.Fatalf("second ack = %#v, want CompletionMessage", a)
		}
		rec := e.api.record(id(1))
		if rec == nil || len(rec.Logs) != 1 || !strings.Contains(rec.Logs[0], "hello from hello") {
			t.Fatalf("stored record = %+v", rec)
		}
		for _, k := range []string{"path", "kind", "limits", "waitTime", "initTime", "timeout"} {
			if _, ok := rec.Annotations.Get(k); !ok {
				t.Errorf("record lacks annotation %q", k)
			}
		}
	})

	t.Run("blocking with logs off: combined", func(t *testing.T) {
		e.send(message(id(2), "quiet", true, ""))
		a, _ := e.nextAck(10 * time.Second)
		c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
		if !ok || c.Response.Activation == nil || c.Response.Activation.ActivationID != id(2) {
			t.Fatalf("ack = %#v, want full Combined", a)
		}
	})

	t.Run("non-blocking: completion only", func(t *testing.T) {
		e.send(message(id(3), "hello", false, ""))
		a, _ := e.nextAck(10 * time.Second)
		if c, ok := a.(*whisk.CompletionMessage); !ok || c.ActivationID != id(3) {
			t.Fatalf("ack = %#v, want Completion", a)
		}
		e.noAck(300 * time.Millisecond)
		if e.api.record(id(3)) == nil {
			t.Fatal("non-blocking record not stored")
		}
	})

	t.Run("action not found: application error, combined", func(t *testing.T) {
		e.send(message(id(4), "missing", true, ""))
		a, _ := e.nextAck(10 * time.Second)
		c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
		if !ok || c.IsSystemError || c.Response.Activation == nil {
			t.Fatalf("ack = %#v", a)
		}
		r := c.Response.Activation.Response
		if r.StatusCode != whisk.StatusApplicationError || !strings.Contains(string(r.Result), whisk.MsgActionNotFound) {
			t.Fatalf("response = %+v %s", r, r.Result)
		}
		if k, _ := c.Response.Activation.Annotations.GetString("kind"); k != "unknown" {
			t.Fatalf("kind annotation = %q", k)
		}
	})

	t.Run("store unreachable: whisk error, shrunk when non-blocking", func(t *testing.T) {
		e.send(message(id(5), "broken", false, ""))
		a, raw := e.nextAck(10 * time.Second)
		c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
		if !ok || !c.IsSystemError || c.Response.Activation != nil || c.Response.ActivationID != id(5) {
			t.Fatalf("ack = %s, want shrunk Combined with isSystemError", raw)
		}
	})

	t.Run("result too large for kafka: shrunk", func(t *testing.T) {
		e.api.addAction("big", 0)
		e.send(message(id(6), "big", true, ""))
		a, raw := e.nextAck(10 * time.Second)
		c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
		if !ok || c.Response.Activation != nil || c.Response.ActivationID != id(6) {
			t.Fatalf("ack = %.200s, want Combined shrunk to the id", raw)
		}
		if rec := e.api.record(id(6)); rec == nil {
			t.Fatal("record of a shrunk activation must still be stored")
		}
	})
}

func TestInvoker_TransIDEchoedByteForByte(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("hello", 0)
	e.startInvoker(nil)
	now := time.Now().UnixMilli()
	transid := fmt.Sprintf(`[ "odd-spacing" ,  %d , true ,["parent",%d]]`, now, now-5)
	e.send(message(id(7), "hello", true, transid))
	_, raw := e.nextAck(10 * time.Second)
	if !bytes.Contains(raw, []byte(`"transid":`+transid)) {
		t.Fatalf("ack does not echo the transid byte for byte:\n%s", raw)
	}
	// The health test action's transid must come back equal too: the controller matches on it.
	e.api.addAction("health", 0)
	health := fmt.Sprintf(`["sid_invokerHealth",%d]`, now)
	e.send(message(id(8), "health", false, health))
	_, raw = e.nextAck(10 * time.Second)
	if !bytes.HasPrefix(raw, []byte(`{"transid":`+health)) {
		t.Fatalf("health ack transid changed: %s", raw)
	}
}

func TestInvoker_DuplicateAnsweredNotRunTwice(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	e.startInvoker(nil)
	msg := message(id(9), "quiet", true, "")
	e.send(msg)
	_, first := e.nextAck(10 * time.Second)
	e.send(msg)
	_, second := e.nextAck(10 * time.Second)
	if !bytes.Equal(first, second) {
		t.Fatalf("redelivery answered differently:\n%s\n%s", first, second)
	}
	if n := e.exec.count(id(9)); n != 1 {
		t.Fatalf("activation ran %d times, want 1", n)
	}
}

func TestInvoker_StaleAnsweredNotRun(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	e.startInvoker(func(c *Config) { c.StaleAge = time.Minute })
	old := fmt.Sprintf(`["old",%d]`, time.Now().Add(-2*time.Minute).UnixMilli())
	e.send(message(id(10), "quiet", true, old))
	a, _ := e.nextAck(10 * time.Second)
	c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
	if !ok || !c.IsSystemError || !strings.Contains(string(c.Response.Activation.Response.Result), "not run") {
		t.Fatalf("stale ack = %#v", a)
	}
	if e.exec.count(id(10)) != 0 {
		t.Fatal("stale activation ran")
	}
}

func TestInvoker_MalformedSkippedAndCounted(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	addr, _ := e.startInvoker(nil)
	bad := [][]byte{
		[]byte("not json at all"),
		[]byte(`{"transid":["x",1],"action":"guest/quiet"}`), // required fields missing
		[]byte(`{"transid":"wrong type","activationId":42}`),
		[]byte(`[]`),
		bytes.Repeat([]byte("{"), 1<<20), // a megabyte of garbage
	}
	for _, b := range bad {
		e.send(b)
	}
	// Oversize: the invoker never sees it because the producer refuses it; the valid one after it runs.
	big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 1<<21)...)
	if err := e.prod.Send(t.Context(), "invoker0", big); err == nil {
		t.Fatal("an over-limit message was accepted by the producer")
	}
	e.send(message(id(11), "quiet", true, ""))
	a, _ := e.nextAck(10 * time.Second)
	if a.AckActivationID() != id(11) {
		t.Fatalf("ack for %s, want %s", a.AckActivationID(), id(11))
	}
	resp, err := e.admin("GET", addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `teemate_invoker_malformed_messages_total{invoker="invoker0"} 5`) {
		t.Fatalf("malformed counter not 5:\n%s", grep(string(body), "malformed"))
	}
}

func TestInvoker_PingsAndEnableDisable(t *testing.T) {
	e := newEnv(t)
	addr, _ := e.startInvoker(nil)
	var pings []whisk.PingMessage
	deadline := time.After(5 * time.Second)
	for len(pings) < 3 {
		select {
		case v := <-e.pings:
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(v, &raw); err != nil {
				t.Fatal(err)
			}
			var name map[string]json.RawMessage
			_ = json.Unmarshal(raw["name"], &name)
			for _, k := range []string{"instance", "userMemory", "instanceType", "tags", "dedicatedNamespaces"} {
				if _, ok := name[k]; !ok {
					t.Fatalf("ping lacks name.%s: %s", k, v)
				}
			}
			p, err := whisk.ParsePingMessage(v)
			if err != nil {
				t.Fatal(err)
			}
			pings = append(pings, *p)
		case <-deadline:
			t.Fatalf("only %d pings in 5 s at a 200 ms interval", len(pings))
		}
	}
	if !pings[0].IsEnabled || pings[0].Name.UserMemory.String() != "2048 MB" {
		t.Fatalf("ping = %+v", pings[0])
	}
	post := func(path string) {
		resp, err := e.admin("POST", addr, path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	post("/disable")
	sawDisabled := false
	for !sawDisabled {
		select {
		case v := <-e.pings:
			p, _ := whisk.ParsePingMessage(v)
			sawDisabled = p != nil && !p.IsEnabled
		case <-time.After(3 * time.Second):
			t.Fatal("no isEnabled:false ping after /disable")
		}
	}
	resp, err := e.admin("GET", addr, "/isEnabled")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != `{"enabled":false}` {
		t.Fatalf("/isEnabled = %s", body)
	}
	// Disabled, as OpenWhisk's InvokerReactive: no more pings, so the controllers place nothing
	// new here, but what its topic already holds (placed before they learned) is run and answered,
	// not stranded until an /enable.
	e.api.addAction("quiet", 0)
	e.send(message(id(12), "quiet", true, ""))
	a, _ := e.nextAck(10 * time.Second)
	if a.AckActivationID() != id(12) {
		t.Fatalf("ack while disabled for %s, want %s", a.AckActivationID(), id(12))
	}
	quiet := time.After(700 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case v := <-e.pings:
			if p, _ := whisk.ParsePingMessage(v); p != nil && p.IsEnabled {
				t.Fatal("an enabled ping while disabled")
			}
		case <-quiet:
			waiting = false
		}
	}
	post("/enable")
	for sawEnabled := false; !sawEnabled; {
		select {
		case v := <-e.pings:
			p, _ := whisk.ParsePingMessage(v)
			sawEnabled = p != nil && p.IsEnabled
		case <-time.After(3 * time.Second):
			t.Fatal("no isEnabled:true ping after /enable")
		}
	}
	resp, err = http.Get("http://" + addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "pong" {
		t.Fatalf("/ping = %q", body)
	}
}

func TestInvoker_RestartResumesFromCommittedOffsets(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	e.api.addAction("slow", 0)
	e.exec.gate = make(chan struct{})
	_, stop := e.startInvoker(func(c *Config) { c.DrainTimeout = 200 * time.Millisecond })
	e.send(message(id(20), "quiet", true, ""))
	if a, _ := e.nextAck(10 * time.Second); a.AckActivationID() != id(20) {
		t.Fatal("first activation not answered")
	}
	// A slow activation is in flight when the invoker stops and is abandoned by the drain timeout.
	e.send(message(id(21), "slow", true, ""))
	time.Sleep(300 * time.Millisecond)
	stop()
	// The abandoned activation is still answered: every parsed activation gets a slot-freeing ack.
	if a, _ := e.nextAck(10 * time.Second); a.AckActivationID() != id(21) {
		t.Fatalf("abandoned activation not answered; got ack for %s", a.AckActivationID())
	}
	e.send(message(id(22), "quiet", true, ""))
	close(e.exec.gate)
	e.startInvoker(nil)
	if a, _ := e.nextAck(15 * time.Second); a.AckActivationID() != id(22) {
		t.Fatalf("after restart the first ack is for %s, want %s (sent while the invoker was down)", a.AckActivationID(), id(22))
	}
	e.noAck(500 * time.Millisecond)
	for _, n := range []int{20, 21} {
		if c := e.exec.count(id(n)); c != 1 {
			t.Fatalf("activation %d ran %d times across the restart, want 1", n, c)
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
