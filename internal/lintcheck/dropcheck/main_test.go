package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck runs the check on testdata/drops, where each line in Cases that mentions "report" is
// a drop to report and every other `_ =` is fine.
func TestCheck(t *testing.T) {
	src := filepath.Join("testdata", "drops", "drops.go")
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[int]bool{}
	sc := bufio.NewScanner(f)
	inCases := false
	for line := 1; sc.Scan(); line++ {
		inCases = inCases || strings.HasPrefix(sc.Text(), "func Cases")
		if inCases && strings.Contains(sc.Text(), "report") {
			want[line] = true
		}
	}
	if len(want) == 0 {
		t.Fatal("no drop to report in the test input")
	}
	drops, err := check([]string{"./testdata/drops"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for _, d := range drops {
		got[d.Line] = true
		if !want[d.Line] {
			t.Errorf("%s:%d reported: %s", src, d.Line, d.What)
		}
	}
	for line := range want {
		if !got[line] {
			t.Errorf("%s:%d not reported", src, line)
		}
	}
}
