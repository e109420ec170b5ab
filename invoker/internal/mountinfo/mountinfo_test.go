package mountinfo

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	text := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct
40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
41 22 0:40 / /tmp/my\040dir\134x rw - tmpfs my\040tmp rw,size=1k
garbage
1 2 3 - tmpfs
`
	got := Parse(text)
	want := []Mount{
		{Root: "/", Point: "/", FSType: "ext4", Source: "/dev/vda", Super: []string{"rw"}},
		{Root: "/", Point: "/sys/fs/cgroup/cpu", FSType: "cgroup", Source: "cgroup", Super: []string{"rw", "cpu"}},
		{Root: "/docker/abc", Point: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Source: "cgroup", Super: []string{"rw", "cpu", "cpuacct"}},
		{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2", Source: "cgroup2", Super: []string{"rw"}},
		{Root: "/", Point: `/tmp/my dir\x`, FSType: "tmpfs", Source: "my tmp", Super: []string{"rw", "size=1k"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if !got[2].HasOption("cpuacct") || got[2].HasOption("cpus") {
		t.Error("HasOption")
	}
}

func TestSelf(t *testing.T) {
	ms, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	root := false
	for _, m := range ms {
		root = root || m.Point == "/"
	}
	if !root {
		t.Fatalf("no mount at / among %d", len(ms))
	}
}
