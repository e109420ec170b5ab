package result

import (
	"strings"
	"testing"
)

func TestCPUAddWeightsByActivations(t *testing.T) {
	var c CPU
	c.Add(CPU{Owner: 10, SandboxRuntime: 20, Platform: 4, Shim: 2, Total: 36, Activations: 30, RuntimeInContainer: 5, PooledSeen: 2, Settled: true})
	c.Add(CPU{Owner: 20, SandboxRuntime: 40, Platform: 8, Shim: 4, Total: 72, Activations: 10, RuntimeInContainer: 9, PooledSeen: 2, Settled: false,
		Notes: []string{"n"}})
	if c.Activations != 40 || c.Owner != 12.5 || c.SandboxRuntime != 25 || c.Total != 45 || c.RuntimeInContainer != 7 || c.PooledSeen != 4 {
		t.Fatalf("%+v", c)
	}
	if c.Settled || len(c.Notes) != 1 || c.InSandbox() != 2.5 {
		t.Fatalf("settled, notes or in-sandbox: %+v", c)
	}
}

func TestCPUInReportAndJSON(t *testing.T) {
	r := &Result{Schema: SchemaVersion, Cases: []*Case{
		{Model: "teemate", Function: "crypto-md5", Size: "test", Samples: []Sample{{Kind: KindLatency, ClientMs: 10, Valid: true}},
			CPU: &CPU{Owner: 20, SandboxRuntime: 30, Platform: 5, Shim: 2, Total: 57, Activations: 1, Settled: true}},
		{Model: "native", Function: "crypto-md5", Size: "test", Samples: []Sample{{Kind: KindLatency, ClientMs: 50, Valid: true}},
			CPU: &CPU{SandboxRuntime: 30, Platform: 9, Proxy: 50, Total: 89, Activations: 1, Settled: true}},
	}}
	r.Finish()
	if got := r.Summary.Models["teemate"].CPUMs; got < 56.999 || got > 57.001 {
		t.Fatalf("summary cpu %v", got)
	}
	md := r.Markdown(nil)
	for _, want := range []string{"CPU ms/act", "## CPU per activation", "| native | crypto-md5/test | 1 | - | 30.00 | - | 9.00 | 50.00 (proxy) | 89.00 | true |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if u := back.Cases[1].CPU; u == nil || u.Proxy != 50 || u.Total != 89 || !strings.Contains(string(b), `"cpu_ms": {`) {
		t.Fatalf("round trip: %+v", u)
	}
}
