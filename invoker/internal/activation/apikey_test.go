package activation

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// TestAPIKeyOnlyWhenAskedAndSent: __OW_API_KEY (init env and run's api_key) is given when the action
// asks for it (provide-api-key truthy or missing, OpenWhisk's rule) and the message carries a key;
// the controller-adapter sends "authkey":{} to the others.
func TestAPIKeyOnlyWhenAskedAndSent(t *testing.T) {
	h := &Handler{now: time.Now}
	const key = "uuid:secret"
	for _, c := range []struct {
		name       string
		annotation string // "" = none
		msgKey     string
		want       bool
	}{
		{"asks, key sent", "true", key, true},
		{"no annotation, key sent (OpenWhisk's controller)", "", key, true},
		{"declines, key sent anyway", "false", key, false},
		{"asks, no key in the message", "true", "", false},
		{"declines, no key", "false", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &whisk.Action{Namespace: "guest", Name: "a", Version: "0.0.1", Limits: whisk.ActionLimits{Timeout: 1000, Memory: 256}}
			if c.annotation != "" {
				a.Annotations = whisk.Parameters{{Key: "provide-api-key", Value: json.RawMessage(c.annotation)}}
			}
			msg := &whisk.ActivationMessage{
				Action: whisk.FullyQualifiedEntityName{Path: "guest", Name: "a", Version: "0.0.1"},
				User:   whisk.Identity{Namespace: whisk.Namespace{Name: "guest"}, AuthKey: whisk.AuthKey{APIKey: c.msgKey}},
			}
			job := h.buildJob(msg, a, "nodejs:20")
			env, has := job.Init.Env["__OW_API_KEY"]
			if has != c.want || (c.want && env != key) || (job.Run.APIKey != "") != c.want {
				t.Fatalf("env __OW_API_KEY = %q (present %v), run api_key = %q; want present %v", env, has, job.Run.APIKey, c.want)
			}
		})
	}
}
