package executor

import (
	"encoding/json"
	"testing"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

// addSealedHint marks the sandboxes of activations whose parameters or code carry a sealed field,
// and only those.
func TestAddSealedHint(t *testing.T) {
	for _, c := range []struct {
		name   string
		params string
		code   string
		want   bool
	}{
		{name: "plain", params: `{"name":"Bob"}`, code: `function main(p) { return p }`},
		{name: "sealed parameters", params: `{"__teemate_sealed":{"v":2,"ct":"…"}}`, code: `function main(p) { return p }`, want: true},
		{name: "sealed code", params: `{}`, code: `{"__teemate_sealed_code":{"v":1,"ct":"…"}}`, want: true},
		{name: "the result field is not a sealed input", params: `{"__teemate_sealed_result":1}`, code: `x`},
		{name: "no parameters, no action", params: ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			job := &activation.Job{Run: wire.Run{Value: json.RawMessage(c.params)}}
			if c.code != "" {
				job.Action = &whisk.Action{Exec: whisk.Exec{Kind: "nodejs:20", Code: c.code}}
			}
			env := map[string]string{}
			addSealedHint(env, job)
			if got := env[envSealed] == "1"; got != c.want {
				t.Fatalf("hint %v, want %v (env %v)", got, c.want, env)
			}
		})
	}
}
