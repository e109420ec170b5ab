package conformance

import (
	"testing"
)

// fuzzBodies runs path's body through both binaries (after a good /init when path is /run) and
// requires the same observation. Without -fuzz only the seeds run.
func fuzzBodies(f *testing.F, path string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	gateSock := startFakeGate(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		var obs []observation
		for _, bin := range bins {
			p := launch(t, bin, gateSock, nil)
			p.ready(t, p.sock)
			var replies []reply
			if path == "/run" {
				replies = append(replies, p.do(t, post("/init", initBody("function main(){return {}}"))))
			}
			replies = append(replies, p.do(t, post(path, string(body))))
			if path == "/init" {
				replies = append(replies, p.do(t, post("/run", runBody(`{}`))))
			}
			obs = append(obs, observe(p, replies))
		}
		compare(t, obs)
		c := obs[1]
		if !c.Exited || c.ExitCode != 0 {
			t.Fatalf("C shim did not end cleanly: %s", c)
		}
	})
}

func FuzzInitBody(f *testing.F) {
	fuzzBodies(f, "/init", append(badInits, initBody("function main(){return {}}"),
		`{"value":{"code":"x","env":{"a":[1, 2],"b":null,"c":"\ud83d\ude00\ud800x"}}}`))
}

func FuzzRunBody(f *testing.F) {
	fuzzBodies(f, "/run", append(badRuns, runBody(`{"a":"<\u2028>"}`), `{"value":{},"Value":"x","ns":"\u00df"}`))
}
