package oci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A prestarted pool's containers run the command itself, told where their use's configuration
// will be; otherwise everything is as for the start stub.
func TestBuildSpecPrestart(t *testing.T) {
	p := containerParams{ID: "wsk0_a_1", Rootfs: "/img/teemate/rootfs", Slot: "/st/wsk0_a_1/slot",
		Cgroup: "/teemate/wsk0_a_1", MemoryMB: 128, PidsLimit: 64, TmpMB: 16}
	plain, err := buildSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	p.Prestart = "/bin/teemate-shim"
	s, err := buildSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"/bin/teemate-shim"}) ||
		!reflect.DeepEqual(s.Process.Env, []string{"PATH=/usr/bin:/bin", "TEEMATE_PROXY_FD=3", "TEEMATE_START_CONF=/run/teemate/start.conf"}) {
		t.Errorf("prestarted process %v %v", s.Process.Args, s.Process.Env)
	}
	s.Process.Args, s.Process.Env = plain.Process.Args, plain.Process.Env
	if !reflect.DeepEqual(s, plain) {
		t.Error("a prestarted container differs from a pooled one in more than its process's command and environment")
	}
	p.Prestart = "bin/teemate-shim"
	if _, err := buildSpec(p); err == nil {
		t.Error("a relative prestarted command was accepted")
	}
}

func TestBuildSpec(t *testing.T) {
	s, err := buildSpec(containerParams{ID: "wsk0_a_1", Rootfs: "/img/teemate/rootfs", Slot: "/st/wsk0_a_1/slot",
		Cgroup: "/teemate/wsk0_a_1", MemoryMB: 128, PidsLimit: 64, TmpMB: 16})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly || s.Root.Path != "/img/teemate/rootfs" || !s.Process.NoNewPrivileges || s.Process.Terminal {
		t.Errorf("root %+v nnp %v terminal %v", s.Root, s.Process.NoNewPrivileges, s.Process.Terminal)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{StubPath, "/run/teemate/start.conf"}) {
		t.Errorf("args %v", s.Process.Args)
	}
	var ns []string
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	if strings.Join(ns, ",") != "pid,ipc,uts,mount,network" {
		t.Errorf("namespaces %v", ns)
	}
	if s.Linux.RootfsPropagation != "rslave" {
		t.Errorf("rootfs propagation %q: per-use mounts would not reach the container", s.Linux.RootfsPropagation)
	}
	if m := s.Linux.Resources.Memory; m == nil || m.Limit != 128<<20 || m.Swap != m.Limit {
		t.Errorf("memory %+v", m)
	}
	if p := s.Linux.Resources.Pids; p == nil || p.Limit != 64 {
		t.Errorf("pids %+v", p)
	}
	for _, c := range s.Process.Capabilities.Bounding {
		if c == "CAP_NET_RAW" || c == "CAP_NET_ADMIN" || c == "CAP_SYS_ADMIN" {
			t.Errorf("capability %s kept", c)
		}
	}
	found := map[string]specMount{}
	for _, m := range s.Mounts {
		found[m.Destination] = m
	}
	if m := found["/tmp"]; m.Type != "tmpfs" || !strings.Contains(strings.Join(m.Options, ","), "size=16m") {
		t.Errorf("/tmp %+v", m)
	}
	if m := found[SlotGuestDir]; m.Source != "/st/wsk0_a_1/slot" || !reflect.DeepEqual(m.Options[:2], []string{"rbind", "rslave"}) {
		t.Errorf("slot %+v", m)
	}

	s, err = buildSpec(containerParams{ID: "x", Rootfs: "/r", Slot: "/s", Cgroup: "/c", TmpMB: 1})
	if err != nil || s.Linux.Resources.Memory != nil || s.Linux.Resources.Pids != nil {
		t.Errorf("no limits: %v %+v", err, s.Linux.Resources)
	}
	for _, p := range []containerParams{
		{ID: "", Rootfs: "/r", Slot: "/s", Cgroup: "/c", TmpMB: 1},
		{ID: "x", Rootfs: "r", Slot: "/s", Cgroup: "/c", TmpMB: 1},
		{ID: "x", Rootfs: "/r", Slot: "/s", Cgroup: "/c", TmpMB: 0},
		{ID: "x", Rootfs: "/r", Slot: "/s", Cgroup: "/c", TmpMB: 1, MemoryMB: -1},
	} {
		if _, err := buildSpec(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestSlotTarget(t *testing.T) {
	for _, c := range []struct {
		guest, want, err string
	}{
		{"/run/teemate/proxy", "/slot/proxy", ""},
		{"/run/teemate/gate/", "/slot/gate", ""},
		{"/run/teemate/a/b", "/slot/a/b", ""},
		{"/run/teemate", "", "only below"},
		{"/run/teemate/../etc", "", "only below"},
		{"/run/teemateX", "", "only below"},
		{"/etc", "", "only below"},
		{"run/teemate/proxy", "", "not absolute"},
		{"/run/teemate/start.conf", "", "reserved"},
	} {
		got, err := slotTarget("/slot", c.guest)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("%s: %q %v, want %q", c.guest, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: error %v, want %q", c.guest, err, c.err)
		}
	}
}

func TestParseOOMKills(t *testing.T) {
	for _, c := range []struct {
		text string
		want int64
		ok   bool
	}{
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, true},
		{"low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n", 1, true},
		{"oom_kill_disable 0\nunder_oom 0\n", 0, false},
		{"oom_kill x\n", 0, false},
		{"", 0, false},
	} {
		got, err := parseOOMKills(c.text)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q: %d %v", c.text, got, err)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got, err := mergeEnv([]string{"PATH=/bin", "A=1"}, map[string]string{"A": "2", "B": "x=y"})
	if err != nil || !reflect.DeepEqual(got, []string{"A=2", "B=x=y", "PATH=/bin"}) {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []map[string]string{{"": "1"}, {"A=B": "1"}, {"A": "\x00"}} {
		if _, err := mergeEnv(nil, bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := mergeEnv([]string{"NOEQUALS"}, nil); err == nil {
		t.Error("a bad image env entry accepted")
	}
}

func TestConfigMountPoints(t *testing.T) {
	c, err := Config{ImagesDir: "/i", StateDir: "/s"}.withDefaults()
	if err != nil || !reflect.DeepEqual(c.MountPoints, DefaultMountPoints) || c.RefillWorkers != 1 || c.PoolSize != 2 {
		t.Fatalf("defaults %+v %v", c, err)
	}
	c, err = Config{ImagesDir: "/i", StateDir: "/s", MountPoints: []string{"/run/teemate/a/", "/run/teemate/b/../c"}}.withDefaults()
	if err != nil || !reflect.DeepEqual(c.MountPoints, []string{"/run/teemate/a", "/run/teemate/c"}) {
		t.Fatalf("mount points %v %v", c.MountPoints, err)
	}
	for _, bad := range []string{"/etc", "/run/teemate", "run/teemate/x", "/run/teemate/start.conf"} {
		if _, err := (Config{ImagesDir: "/i", StateDir: "/s", MountPoints: []string{bad}}).withDefaults(); err == nil {
			t.Errorf("mount point %q accepted", bad)
		}
	}
}

func TestRefillPriority(t *testing.T) {
	for _, c := range []struct{ ready, nice int }{{0, 0}, {1, refillNice}, {4, refillNice}} {
		if got := refillPriority(c.ready); got != c.nice {
			t.Errorf("%d ready: nice %d, want %d", c.ready, got, c.nice)
		}
	}
}

// The launcher runs what the start configuration names itself (-S), so a sandbox's command is
// exec'd once; a process other than the stub on its configuration is run as given.
func TestLaunchPlanReadsTheStartConfiguration(t *testing.T) {
	s, err := buildSpec(containerParams{ID: "wsk0_a_1", Rootfs: "/img/teemate/rootfs", Slot: "/st/wsk0_a_1/slot",
		Cgroup: "/teemate/wsk0_a_1", MemoryMB: 128, PidsLimit: 64, TmpMB: 16})
	if err != nil {
		t.Fatal(err)
	}
	_, args, err := launchPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(args, " "); !strings.Contains(plan, " -S /run/teemate/start.conf ") {
		t.Errorf("plan without -S: %s", plan)
	}
	s.Process.Args = []string{"/bin/sh", "-c", "true"}
	if _, args, err = launchPlan(s); err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(args, " "); strings.Contains(plan, " -S ") || !strings.HasSuffix(plan, "-- /bin/sh /bin/sh -c true") {
		t.Errorf("another process: %s", plan)
	}
}

// writeCgroupFile writes the whole value, and says which file failed and why.
func TestWriteCgroupFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pids.max")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeCgroupFile(p, "64"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "64" {
		t.Fatalf("wrote %q (%v)", b, err)
	}
	missing := filepath.Join(dir, "absent", "cgroup.procs")
	err := writeCgroupFile(missing, "1")
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := writeCgroupFile(dir, "1"); !errors.As(err, &pe) || pe.Path != dir {
		t.Fatalf("a directory: %v", err)
	}
}
