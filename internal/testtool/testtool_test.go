package testtool

import (
	"testing"
)

// recorder stands in for a testing.T to observe which of Skip and Fatal Require chose.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()                      {}
func (r *recorder) Skip(...any)                  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any)        { r.failed = true }
func (r *recorder) Fatal(...any)                 { r.failed = true }
func (r *recorder) Skipf(string, ...any)         { r.skipped = true }
func (r *recorder) Logf(format string, a ...any) {}

func TestRequire(t *testing.T) {
	const absent = "teemate-no-such-program"
	for _, tc := range []struct {
		ci, program string
		skip, fail  bool
	}{
		{ci: "", program: absent, skip: true},
		{ci: "true", program: absent, fail: true},
		{ci: "true", program: "sh"},
		{ci: "", program: "sh"},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		Require(r, tc.program)
		if r.skipped != tc.skip || r.failed != tc.fail {
			t.Errorf("CI=%q, %s: skipped %v failed %v; want %v %v", tc.ci, tc.program, r.skipped, r.failed, tc.skip, tc.fail)
		}
	}
}
