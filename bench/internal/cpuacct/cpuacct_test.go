package cpuacct

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, c := range []struct {
		name, stat     string
		self, children time.Duration
		bad            bool
	}{
		{name: "node", stat: "1935 (node) S 1910 1910 1 0 -1 4194560 52311 0 0 0 1234 56 78 9 20 0 11 0 123 1 1 18446744073709551615",
			self: 12900 * time.Millisecond, children: 870 * time.Millisecond},
		{name: "a command name with spaces and parentheses", stat: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 5 6 20 0 1 0",
			self: 70 * time.Millisecond, children: 110 * time.Millisecond},
		{name: "runc's init", stat: "4102 (runc:[2:INIT]) S 1 4102 4102 0 -1 4194560 0 0 0 0 0 1 0 0 20 0 1 0",
			self: 10 * time.Millisecond},
		{name: "truncated", stat: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 1 2", bad: true},
		{name: "no command name", stat: "1 x S 0", bad: true},
		{name: "not a number", stat: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 a 2 3 4 20", bad: true},
		{name: "negative", stat: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 -1 2 3 4 20", bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(c.stat))
			if c.bad {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil || got.Self != c.self || got.Children != c.children {
				t.Fatalf("got %+v, %v; want self %v children %v", got, err, c.self, c.children)
			}
		})
	}
}

func TestCgroupUsage(t *testing.T) {
	for _, c := range []struct {
		name, file, body string
		want             time.Duration
		bad              bool
	}{
		{name: "v1 cpuacct.usage", file: "cpuacct.usage", body: "123456789\n", want: 123456789},
		{name: "v1 empty", file: "cpuacct.usage", body: "\n", bad: true},
		{name: "v1 garbage", file: "cpuacct.usage", body: "12 ms\n", bad: true},
		{name: "v2 cpu.stat", file: "cpu.stat", body: "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n", want: 2500 * time.Microsecond},
		{name: "v2 usage not first", file: "cpu.stat", body: "user_usec 2000\nusage_usec 7\n", want: 7 * time.Microsecond},
		{name: "v2 without usage", file: "cpu.stat", body: "user_usec 2000\nsystem_usec 500\n", bad: true},
		{name: "v2 bad value", file: "cpu.stat", body: "usage_usec x\n", bad: true},
		{name: "neither file", file: "memory.current", body: "4096\n", bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, c.file), []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := CgroupUsage(dir)
			if c.bad {
				if err == nil {
					t.Fatalf("accepted: %v", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestBetween(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	a := Snapshot{Self: ms(100), Reaped: ms(50), Owner: ms(1000), Other: ms(5), Containers: ms(300), ContainersOK: true,
		Pooled: []time.Duration{ms(4), ms(6)}}
	b := Snapshot{Self: ms(140), Reaped: ms(330), Owner: ms(1200), Other: ms(5), Containers: ms(500), ContainersOK: true,
		Pooled: []time.Duration{ms(5), ms(5)}}
	got := Between(a, b, 10, true)
	want := Split{Platform: 4, Owner: 20, SandboxRuntime: 28 + 5, InSandbox: 20 - 5, RuntimeInContainer: 5, Pooled: 4, ContainersRead: true}
	if !near(got, want) {
		t.Fatalf("containers: got %+v, want %+v", got, want)
	}
	if tot := got.Total(); tot < 71.99 || tot > 72.01 {
		t.Fatalf("total %v, want 72", tot)
	}
	// The process sandbox: the reaped children are the sandboxes themselves.
	got = Between(a, b, 10, false)
	if want := (Split{Platform: 4, Owner: 20, InSandbox: 28}); !near(got, want) {
		t.Fatalf("process: got %+v, want %+v", got, want)
	}
	// No pooled container seen: everything in the containers is counted as the sandbox's.
	a.Pooled, b.Pooled = nil, nil
	if got := Between(a, b, 10, true); got.InSandbox < 19.99 || got.SandboxRuntime < 27.99 || got.SandboxRuntime > 28.01 {
		t.Fatalf("without pooled containers: %+v", got)
	}
	// Containers not read (docker): nothing inside them is counted, and it says so.
	a.ContainersOK = false
	if got := Between(a, b, 10, true); got.ContainersRead || got.InSandbox != 0 {
		t.Fatalf("unread containers: %+v", got)
	}
	if got := Between(a, b, 0, true); got != (Split{}) {
		t.Fatalf("no activations: %+v", got)
	}
}

func near(a, b Split) bool {
	d := func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 }
	return d(a.Platform, b.Platform) && d(a.Owner, b.Owner) && d(a.SandboxRuntime, b.SandboxRuntime) && d(a.InSandbox, b.InSandbox) &&
		d(a.RuntimeInContainer, b.RuntimeInContainer) && a.Pooled == b.Pooled && a.ContainersRead == b.ContainersRead
}

// TestProbeCountsAReapedChild: a child that spins for a while and is waited for shows up in Reaped
// (the way the OCI runtime's commands are counted), and the probe rejects another root.
func TestProbeCountsAReapedChild(t *testing.T) {
	if _, err := New(Config{Root: 1}); err == nil && os.Getpid() != 1 {
		t.Fatal("a root other than this process was accepted")
	}
	p, err := New(Config{Root: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A shell loop for about 300 ms of CPU.
	cmd := exec.Command("sh", "-c", `end=$(($(date +%s%N) + 300000000)); while [ $(date +%s%N) -lt $end ]; do :; done`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Reaped - a.Reaped; d < 50*time.Millisecond {
		t.Fatalf("a reaped child's CPU: %v (want the spin's ~300 ms, at least 50 ms on a busy machine)", d)
	}
	if b.Self < a.Self {
		t.Fatalf("own CPU went back: %v -> %v", a.Self, b.Self)
	}
}

// A container counts as still being created while its process is the runtime's init or a
// prestarted shim waiting for its use; a shim at work is the sandbox's.
func TestRuntimeInit(t *testing.T) {
	for comm, want := range map[string]bool{
		"runc:[2:INIT]": true, "crun": true, "teemate-launch": true, "teemate-waiting": true,
		"teemate-shim": false, "teemate-start": false, "node": false, "": false,
	} {
		if got := runtimeInit(comm); got != want {
			t.Errorf("runtimeInit(%q) = %v, want %v", comm, got, want)
		}
	}
}
