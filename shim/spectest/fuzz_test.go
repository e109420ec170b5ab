package spectest

import (
	"testing"
)

// fuzzBodies sends path's body to a fresh sandbox (after a good /init when path is /run): whatever
// the body, the shim answers with a documented status and ends cleanly. Without -fuzz only the
// seeds run.
func fuzzBodies(f *testing.F, path string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	g := startFakeGate(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		s := launch(t, []string{shimBin}, g.sock, nil)
		s.ready(t, s.sock)
		var replies []reply
		if path == "/run" {
			replies = append(replies, s.do(t, post("/init", initBody("function main(){return {}}"))))
		}
		r := s.do(t, post(path, string(body)))
		replies = append(replies, r)
		if path == "/init" && r.Status == 200 {
			replies = append(replies, s.do(t, post("/run", runBody(`{}`))))
		}
		o := observe(s, replies)
		if !o.Exited || o.ExitCode != 0 {
			t.Fatalf("the shim did not end cleanly: %s", o)
		}
		switch r.Status {
		case 200, 400, 403:
		default:
			t.Fatalf("status %d: %s", r.Status, o)
		}
	})
}

func FuzzInitBody(f *testing.F) {
	fuzzBodies(f, "/init", append(append(badInits, lenientInits...), initBody("function main(){return {}}"),
		`{"value":{"code":"x","env":{"a":[1, 2],"b":null,"c":"\ud83d\ude00\ud800x"}}}`))
}

func FuzzRunBody(f *testing.F) {
	fuzzBodies(f, "/run", append(append(badRuns, lenientRuns...), runBody(`{"a":"<\u2028>"}`), `{"value":{},"Value":"x","ns":"\u00df"}`))
}
