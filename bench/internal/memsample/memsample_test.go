package memsample

import (
	"os"
	"os/exec"
	"reflect"
	"sort"
	"testing"
	"time"
)

func TestDescendantsOf(t *testing.T) {
	parent := map[int]int{10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 30: 20}
	got := DescendantsOf(parent, 10)
	sort.Ints(got)
	if want := []int{11, 12, 13}; !reflect.DeepEqual(got, want) {
		t.Fatalf("descendants of 10 = %v, want %v", got, want)
	}
	if got := DescendantsOf(parent, 99); len(got) != 0 {
		t.Fatalf("descendants of a leaf = %v", got)
	}
	// A cycle (impossible in /proc, but the map is input) must not loop forever.
	if got := DescendantsOf(map[int]int{1: 2, 2: 1}, 1); len(got) != 1 {
		t.Fatalf("cycle: %v", got)
	}
}

func TestParseStatPPid(t *testing.T) {
	pp, ok := ParseStatPPid([]byte("123 (a (weird) name) S 77 123 123 0 -1"))
	if !ok || pp != 77 {
		t.Fatalf("ppid %d %v", pp, ok)
	}
	for _, bad := range []string{"", "123 no paren S 1", "1 (x)"} {
		if _, ok := ParseStatPPid([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestSamplerSeesChild starts a child that holds a known amount of touched memory and checks that
// the sampler's peak includes it and that it counts the child as a descendant.
func TestSamplerSeesChild(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	// python3 is not guaranteed; a shell that fills a 64 MiB variable is slow. Use a child of this
	// test binary instead: it allocates and touches 64 MiB, then waits.
	cmd := exec.Command(os.Args[0], "-test.run=TestHelperHold")
	cmd.Env = append(os.Environ(), "MEMSAMPLE_HOLD_MB=64")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 5)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready" {
		t.Fatalf("child not ready: %q %v", buf, err)
	}
	if got := Descendants("/proc", os.Getpid()); !contains(got, cmd.Process.Pid) {
		t.Fatalf("child %d not among descendants %v", cmd.Process.Pid, got)
	}
	s, err := Start(Options{Root: os.Getpid(), Interval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	r := s.Stop()
	if r.Samples < 2 || r.PeakProcesses < 1 {
		t.Fatalf("result %+v", r)
	}
	if r.PeakBytes < 60<<20 || r.PeakBytes > 1<<30 {
		t.Fatalf("peak %d bytes; the child holds 64 MiB", r.PeakBytes)
	}
	if r.Source != "pss" && r.Source != "rss" && r.Source != "pss+rss" {
		t.Fatalf("source %q", r.Source)
	}
}

func TestHelperHold(t *testing.T) {
	if os.Getenv("MEMSAMPLE_HOLD_MB") == "" {
		t.Skip("helper process only")
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = byte(i)
	}
	os.Stdout.WriteString("ready")
	time.Sleep(time.Minute)
	_ = b[len(b)-1]
}

func TestStartRejectsBadRoot(t *testing.T) {
	if _, err := Start(Options{Root: 0}); err == nil {
		t.Fatal("root 0 accepted")
	}
	if _, err := Start(Options{Root: 1 << 30}); err == nil {
		t.Fatal("missing root accepted")
	}
}

func TestProcessBytesSelf(t *testing.T) {
	b, src, err := ProcessBytes("/proc", os.Getpid())
	if err != nil || b <= 0 || (src != "pss" && src != "rss") {
		t.Fatalf("%d %q %v", b, src, err)
	}
	if _, _, err := ProcessBytes("/proc", 1<<30); err == nil {
		t.Fatal("missing pid read")
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
