package oci

import (
	"encoding/binary"
	"errors"
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The sandbox's seccomp profile, in config.json (so runc and crun load it with libseccomp) and
// compiled here to BPF for teemate-launch. It is a deny list: what a container's process (the
// start stub, the shim, Node) never needs and what reaches the kernel's less exercised paths or
// escapes a namespace. Denied calls fail with EPERM, as Docker's profile makes them; clone3
// fails with ENOSYS so that the C library falls back to clone, whose namespace flags are then
// visible to the filter (clone3's are behind a pointer).

type specSeccomp struct {
	DefaultAction string           `json:"defaultAction"`
	Architectures []string         `json:"architectures,omitempty"`
	Syscalls      []specSyscallSet `json:"syscalls,omitempty"`
}

type specSyscallSet struct {
	Names    []string      `json:"names"`
	Action   string        `json:"action"`
	ErrnoRet *uint         `json:"errnoRet,omitempty"`
	Args     []specSysArgs `json:"args,omitempty"`
}

type specSysArgs struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo"`
	Op       string `json:"op"`
}

// deniedSyscalls fail with EPERM in every sandbox (the names the running architecture lacks are
// left out when the profile is made).
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
	"finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module",
	"ioperm", "iopl", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount",
	"mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
	"perf_event_open", "pivot_root", "query_module", "quotactl", "reboot", "request_key",
	"setdomainname", "sethostname", "setns", "settimeofday", "swapoff", "swapon", "syslog",
	"umount2", "unshare", "uselib", "userfaultfd", "vhangup",
}

// seccompArch is libseccomp's name of the running architecture.
func seccompArch() (string, *arch.Info, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return "", nil, fmt.Errorf("seccomp: %w", err)
	}
	switch info.Name {
	case "x86_64":
		return "SCMP_ARCH_X86_64", info, nil
	case "aarch64":
		return "SCMP_ARCH_AARCH64", info, nil
	}
	return "", nil, fmt.Errorf("seccomp: architecture %s is not supported", info.Name)
}

// sandboxSeccomp is the profile every container gets.
func sandboxSeccomp() (*specSeccomp, error) {
	name, info, err := seccompArch()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	return &specSeccomp{DefaultAction: "SCMP_ACT_ALLOW", Architectures: []string{name}, Syscalls: []specSyscallSet{
		{Names: names, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eperm},
		// A new user namespace would give the process every capability inside it.
		{Names: []string{"clone"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eperm,
			Args: []specSysArgs{{Index: 0, Value: unix.CLONE_NEWUSER, ValueTwo: unix.CLONE_NEWUSER, Op: "SCMP_CMP_MASKED_EQ"}}},
		{Names: []string{"clone3"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &enosys},
	}}, nil
}

// seccompBPF compiles a profile to the filter teemate-launch loads: struct sock_filter entries
// in the host's byte order. It takes the subset of the OCI format sandboxSeccomp writes (a
// default action of allow, errno actions, masked-equal argument tests) and refuses the rest.
// Calls of any other architecture (the 32-bit entry points of a 64-bit kernel) kill the process:
// a deny list has to see every entry point in the numbering it was made for.
func seccompBPF(s *specSeccomp) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	archName, info, err := seccompArch()
	if err != nil {
		return nil, err
	}
	if s.DefaultAction != "SCMP_ACT_ALLOW" {
		return nil, fmt.Errorf("seccomp: default action %s: only SCMP_ACT_ALLOW is supported", s.DefaultAction)
	}
	for _, a := range s.Architectures {
		if a != archName {
			return nil, fmt.Errorf("seccomp: architecture %s: only %s is supported", a, archName)
		}
	}
	policy := seccomp.Policy{DefaultAction: seccomp.ActionAllow}
	for _, set := range s.Syscalls {
		if set.Action != "SCMP_ACT_ERRNO" || set.ErrnoRet == nil || *set.ErrnoRet == 0 || *set.ErrnoRet > 4095 {
			return nil, fmt.Errorf("seccomp: action %s (errno %v): only SCMP_ACT_ERRNO with an errno is supported", set.Action, set.ErrnoRet)
		}
		g := seccomp.SyscallGroup{Action: seccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(*set.ErrnoRet))}
		if len(set.Args) == 0 {
			g.Names = set.Names
		} else {
			var conds seccomp.ArgumentConditions
			for _, a := range set.Args {
				if a.Op != "SCMP_CMP_MASKED_EQ" || a.Value != a.ValueTwo || a.Index > 5 {
					return nil, fmt.Errorf("seccomp: argument test %+v: only SCMP_CMP_MASKED_EQ of the mask itself is supported", a)
				}
				conds = append(conds, seccomp.Condition{Argument: uint32(a.Index), Operation: seccomp.BitsSet, Value: a.Value})
			}
			for _, n := range set.Names {
				g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{Name: n, Conditions: conds})
			}
		}
		policy.Syscalls = append(policy.Syscalls, g)
	}
	if len(policy.Syscalls) == 0 {
		return nil, errors.New("seccomp: the profile denies nothing")
	}
	prog, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	// The library's program lets other architectures through to the default action (allow).
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
	}
	raw, err := bpf.Assemble(append(guard, prog...))
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := make([]byte, 0, 8*len(raw))
	for _, r := range raw {
		out = binary.NativeEndian.AppendUint16(out, r.Op)
		out = append(out, r.Jt, r.Jf)
		out = binary.NativeEndian.AppendUint32(out, r.K)
	}
	return out, nil
}
