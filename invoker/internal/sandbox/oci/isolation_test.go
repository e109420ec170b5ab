package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// isolationProbe reports, from inside a sandbox, what confines it.
const isolationProbe = `const fs = require('fs');
const st = fs.readFileSync('/proc/self/status', 'utf8');
const field = k => (st.match(new RegExp('^' + k + ':\\s*(.*)$', 'm')) || [])[1];
let rootErr = 'none'; try { fs.writeFileSync('/probe', '1') } catch (e) { rootErr = e.code }
const ns = {}; for (const n of ['mnt', 'pid', 'net', 'uts', 'ipc']) ns[n] = fs.readlinkSync('/proc/self/ns/' + n);
console.log(JSON.stringify({pid: process.pid, rootErr, capEff: field('CapEff'), capPrm: field('CapPrm'), capBnd: field('CapBnd'),
  capInh: field('CapInh'), capAmb: field('CapAmb'), nnp: field('NoNewPrivs'), seccomp: field('Seccomp'), ns,
  hostname: require('os').hostname(), cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8')}));`

// TestIsolation checks, from inside, what every runtime of this backend must give a sandbox
// alike (run it with OCI_TEST_RUNTIME=teemate-launch, crun or runc): its command is pid 1, the
// root is read-only, the capabilities are the spec's set and no more, no_new_privs and the
// seccomp filter are on, the five namespaces are not the host's, and the memory limit holds.
func TestIsolation(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_9_guest_iso", Rootfs: "native", MemoryMB: 96,
		Command: []string{"/usr/bin/node", "-e", isolationProbe}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	stdout, stderr := sandboxtest.Drain(sb)
	sandboxtest.WaitExit(t, sb, 30*time.Second)
	var got struct {
		Pid                            int
		RootErr                        string
		CapEff, CapPrm, CapBnd, CapInh string
		CapAmb, Nnp, Seccomp, Hostname string
		Ns                             map[string]string
		Cgroup                         string
	}
	if err := json.Unmarshal([]byte(stdout()), &got); err != nil {
		t.Fatalf("probe output %q: %v (stderr %q)", stdout(), err, stderr())
	}
	var want uint64
	for _, c := range capabilities {
		want |= 1 << capabilityNumbers[c]
	}
	wantCaps := fmt.Sprintf("%016x", want)
	for what, v := range map[string][2]string{
		"pid":           {strconv.Itoa(got.Pid), "1"},
		"root write":    {got.RootErr, "EROFS"},
		"CapEff":        {got.CapEff, wantCaps},
		"CapPrm":        {got.CapPrm, wantCaps},
		"CapBnd":        {got.CapBnd, wantCaps},
		"CapInh":        {got.CapInh, "0000000000000000"},
		"CapAmb":        {got.CapAmb, "0000000000000000"},
		"NoNewPrivs":    {got.Nnp, "1"},
		"Seccomp":       {got.Seccomp, "2"},
		"hostname":      {got.Hostname, "sandbox"},
		"namespace set": {strconv.Itoa(len(got.Ns)), "5"},
	} {
		if v[0] != v[1] {
			t.Errorf("%s: %q, want %q", what, v[0], v[1])
		}
	}
	for n, inside := range got.Ns {
		host, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if inside == host {
			t.Errorf("%s namespace is the host's (%s)", n, host)
		}
	}
	b := sb.(*box)
	if !strings.Contains(got.Cgroup, ":memory:"+b.cgroup+"\n") {
		t.Errorf("not in its memory cgroup %s: %q", b.cgroup, got.Cgroup)
	}
	limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", b.cgroup, "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(limit)); s != strconv.Itoa(96<<20) {
		t.Errorf("memory limit %s, want %d", s, 96<<20)
	}
}

// TestMountTargetSymlinkEscape gives the runtime images whose mount targets are symbolic links
// out of the root (/run, where the slot is bound, to an absolute host path; /tmp, a tmpfs, by a
// relative path climbing out of the rootfs). Mounts are made before the pivot, when such a link
// still resolves against the host's root: nothing may be made or mounted on the host side. The
// launcher refuses the image, naming the target; runc resolves the link inside the root.
func TestMountTargetSymlinkEscape(t *testing.T) {
	needRuntime(t)
	host := t.TempDir() // what the links point at; must stay empty
	images, err := os.MkdirTemp("", "ociescape")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(images) })
	climb := strings.Repeat("../", 16)
	for name, link := range map[string][2]string{
		"escape_run": {"run", host},
		"escape_tmp": {"tmp", climb + strings.TrimPrefix(host, "/")},
	} {
		dir := filepath.Join(images, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(imagesDir, "teemate", "rootfs"), filepath.Join(dir, "rootfs")).CombinedOutput(); err != nil {
			t.Fatalf("copy the image: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, "image.json"), []byte(`{"cmd":["/bin/teemate-shim"],"env":["PATH=/usr/bin:/bin"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, "rootfs", link[0])
		if err := os.RemoveAll(target); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link[1], target); err != nil {
			t.Fatal(err)
		}
	}
	rt := newRuntime(t, Config{PoolSize: -1})
	rt.cfg.ImagesDir = images
	for _, image := range []string{"escape_run", "escape_tmp"} {
		t.Run(image, func(t *testing.T) {
			sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_9_guest_" + image, Rootfs: image, MemoryMB: 64,
				Command: sandboxtest.StartStubCommand()})
			if err == nil {
				sandboxtest.CheckStartStubRun(t, sb)
			}
			if rt.kind == kindLaunch && (err == nil || !strings.Contains(err.Error(), "symbolic link")) {
				t.Errorf("the launcher ran an image whose mount target is a symbolic link out of the root: %v", err)
			}
			left, rerr := os.ReadDir(host)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(left) != 0 {
				t.Errorf("a mount target resolved out of the root: %s holds %v (Create: %v)", host, left, err)
			}
		})
	}
}
