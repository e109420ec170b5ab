package oci

import (
	"bufio"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// The subset of the OCI runtime spec (config.json) this backend writes.
type runtimeSpec struct {
	OCIVersion string            `json:"ociVersion"`
	Process    specProcess       `json:"process"`
	Root       specRoot          `json:"root"`
	Hostname   string            `json:"hostname"`
	Mounts     []specMount       `json:"mounts"`
	Linux      specLinux         `json:"linux"`
	Annotation map[string]string `json:"annotations,omitempty"`
}

type specProcess struct {
	Terminal        bool         `json:"terminal"`
	User            specUser     `json:"user"`
	Args            []string     `json:"args"`
	Env             []string     `json:"env"`
	Cwd             string       `json:"cwd"`
	Capabilities    specCaps     `json:"capabilities"`
	Rlimits         []specRlimit `json:"rlimits"`
	NoNewPrivileges bool         `json:"noNewPrivileges"`
}

type specUser struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

type specCaps struct {
	Bounding    []string `json:"bounding"`
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable"`
	Ambient     []string `json:"ambient"`
}

type specRlimit struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

type specRoot struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

type specMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type specLinux struct {
	Namespaces        []specNamespace `json:"namespaces"`
	RootfsPropagation string          `json:"rootfsPropagation,omitempty"`
	CgroupsPath       string          `json:"cgroupsPath"`
	Resources         specResources   `json:"resources"`
	MaskedPaths       []string        `json:"maskedPaths"`
	ReadonlyPaths     []string        `json:"readonlyPaths"`
	Seccomp           *specSeccomp    `json:"seccomp,omitempty"`
}

type specNamespace struct {
	Type string `json:"type"`
}

type specResources struct {
	Devices []specDevice `json:"devices"`
	Memory  *specMemory  `json:"memory,omitempty"`
	Pids    *specPids    `json:"pids,omitempty"`
}

type specDevice struct {
	Allow  bool   `json:"allow"`
	Access string `json:"access"`
}

type specMemory struct {
	Limit int64 `json:"limit"`
	Swap  int64 `json:"swap"`
}

type specPids struct {
	Limit int64 `json:"limit"`
}

// capabilities are Docker's defaults without NET_RAW and NET_ADMIN, as OpenWhisk drops them.
var capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Guest paths the backend relies on.
const (
	// SlotGuestDir is where the per-container slot appears inside; per-use mounts go below it.
	SlotGuestDir = "/run/teemate"
	// StartConfigName is the per-use configuration file in the slot, read by the start stub.
	StartConfigName = "start.conf"
	// StubPath is the start stub inside every image.
	StubPath = "/sbin/teemate-start"
)

// containerParams is what a pooled container is made from (fixed at create).
type containerParams struct {
	ID        string
	Rootfs    string // absolute host path of the image's root filesystem
	Slot      string // absolute host path of the slot directory
	Cgroup    string // cgroupsPath, e.g. /teemate/<id>
	MemoryMB  int
	PidsLimit int
	TmpMB     int // size of the /tmp tmpfs
	// Prestart is the command to run from creation (PoolKey.Prestart); empty: the start stub.
	Prestart string
}

// buildSpec makes config.json for a pooled container: pure, so it is tested with tables.
func buildSpec(p containerParams) (runtimeSpec, error) {
	if p.ID == "" || !filepath.IsAbs(p.Rootfs) || !filepath.IsAbs(p.Slot) || p.Cgroup == "" {
		return runtimeSpec{}, fmt.Errorf("container parameters incomplete: %+v", p)
	}
	if p.MemoryMB < 0 || p.PidsLimit < 0 || p.TmpMB <= 0 {
		return runtimeSpec{}, fmt.Errorf("bad limits: memory %d MB, pids %d, tmp %d MB", p.MemoryMB, p.PidsLimit, p.TmpMB)
	}
	args, env := []string{StubPath, filepath.Join(SlotGuestDir, StartConfigName)}, []string{"PATH=/usr/bin:/bin"}
	if p.Prestart != "" {
		if !filepath.IsAbs(p.Prestart) {
			return runtimeSpec{}, fmt.Errorf("prestarted command %q is not an absolute path", p.Prestart)
		}
		// The command waits for its use with the proxy's socket alone, then reads the rest of
		// its environment from the start configuration (sandbox.Spec.Prestart).
		args = []string{p.Prestart}
		env = append(env, "TEEMATE_PROXY_FD=3", "TEEMATE_START_CONF="+filepath.Join(SlotGuestDir, StartConfigName))
	}
	s := runtimeSpec{
		OCIVersion: "1.0.2",
		Process: specProcess{
			Args: args,
			Env:  env,
			Cwd:  "/",
			Capabilities: specCaps{Bounding: capabilities, Effective: capabilities, Permitted: capabilities,
				Inheritable: []string{}, Ambient: []string{}},
			Rlimits:         []specRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     specRoot{Path: p.Rootfs, Readonly: true},
		Hostname: "sandbox",
		Mounts: []specMount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.Itoa(p.TmpMB) + "m"}},
			// The slot: rslave, so what the invoker mounts below it at acquire time shows up here.
			{Destination: SlotGuestDir, Type: "bind", Source: p.Slot, Options: []string{"rbind", "rslave", "nosuid", "nodev"}},
		},
		Linux: specLinux{
			Namespaces:  []specNamespace{{"pid"}, {"ipc"}, {"uts"}, {"mount"}, {"network"}},
			CgroupsPath: p.Cgroup,
			// runc's default; crun's is private, which would cut the slot's propagation.
			RootfsPropagation: "rslave",
			Resources: specResources{
				Devices: []specDevice{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	sc, err := sandboxSeccomp()
	if err != nil {
		return runtimeSpec{}, err
	}
	s.Linux.Seccomp = sc
	if p.MemoryMB > 0 {
		b := int64(p.MemoryMB) << 20
		s.Linux.Resources.Memory = &specMemory{Limit: b, Swap: b} // swap = memory: no swap at all
	}
	if p.PidsLimit > 0 {
		s.Linux.Resources.Pids = &specPids{Limit: int64(p.PidsLimit)}
	}
	return s, nil
}

// slotTarget maps a per-use mount's guest path to its place in the slot, or fails when the path
// is not below SlotGuestDir (a pooled container's mounts are fixed; only the slot can change).
func slotTarget(slot, guest string) (string, error) {
	if !filepath.IsAbs(guest) {
		return "", fmt.Errorf("guest path %q is not absolute", guest)
	}
	g := filepath.Clean(guest)
	rel, err := filepath.Rel(SlotGuestDir, g)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("guest path %s: the oci backend mounts per-use directories only below %s", guest, SlotGuestDir)
	}
	if rel == StartConfigName {
		return "", fmt.Errorf("guest path %s is reserved for the start configuration", guest)
	}
	return filepath.Join(slot, rel), nil
}

// parseOOMKills reads the oom_kill counter from memory.oom_control (cgroup v1) or memory.events
// (cgroup v2); both are "key value" lines.
func parseOOMKills(text string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "oom_kill" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("oom_kill %q: %w", f[1], err)
			}
			return n, nil
		}
	}
	return 0, errors.New("no oom_kill line")
}

// imageConfig is deploy/images' image.json: the image's default command and environment.
type imageConfig struct {
	Cmd []string `json:"cmd"`
	Env []string `json:"env"`
}

// mergeEnv is the image's environment overridden by the spec's, sorted by name.
func mergeEnv(image []string, spec map[string]string) ([]string, error) {
	m := map[string]string{}
	for _, kv := range image {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("image environment entry %q is not NAME=value", kv)
		}
		m[k] = v
	}
	for k, v := range spec {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("environment variable %q is not valid", k)
		}
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sortStrings(out)
	return out, nil
}
