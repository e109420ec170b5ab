package sgx

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Node patch series of the SGX build (node-isolate-patch/patches) is checked by its own script;
// this test runs it so that `go test ./invoker/internal/enclave/sgx/...` covers every artefact of the
// SGX path. Without a Node tree only the new files are checked; NODE_SRC=<a Node tree at
// NODE_VERSION> in the test's environment checks the whole series against it. The synthetic trees
// below hold only the lines the series' hunks anchor on, to prove the script accepts a matching tree
// and refuses a wrong version or moved context.
func TestNodePatchSeries(t *testing.T) {
	script := repoFile(t, "node-isolate-patch/patches/check.sh")
	run := func(nodeSrc string) (string, error) {
		cmd := exec.Command("sh", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		if nodeSrc != "" {
			cmd.Env = append(cmd.Env, "NODE_SRC="+nodeSrc)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tree := func(version, gyp string) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
			t.Fatal(err)
		}
		v := strings.SplitN(version, ".", 3)
		h := "#define NODE_MAJOR_VERSION " + v[0] + "\n#define NODE_MINOR_VERSION " + v[1] + "\n#define NODE_PATCH_VERSION " + v[2] + "\n"
		if err := os.WriteFile(filepath.Join(dir, "src", "node_version.h"), []byte(h), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "node.gyp"), []byte(gyp), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	pinned, err := os.ReadFile(repoFile(t, "node-isolate-patch/patches/NODE_VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimPrefix(strings.TrimSpace(string(pinned)), "v")
	anchor := "    'node_sources': [\n" + listLines("src/api/hooks.cc", "src/api/utils.cc", "src/async_wrap.cc", "src/base_object.cc", "src/cares_wrap.cc") + "    ],\n"

	out, err := run("")
	if err != nil || !strings.Contains(out, "ok   new files apply") || !strings.Contains(out, "set NODE_SRC") {
		t.Fatalf("without a tree: %v\n%s", err, out)
	}
	if out, err := run(tree(version, anchor)); err != nil || !strings.Contains(out, "the series applies") {
		t.Fatalf("matching tree: %v\n%s", err, out)
	}
	if out, err := run(tree("18.0.0", anchor)); err == nil || !strings.Contains(out, "pinned to v"+version) {
		t.Fatalf("wrong version accepted: %v\n%s", err, out)
	}
	moved := "    'node_sources': [\n" + listLines("src/api/utils.cc", "src/async_wrap.cc") + "    ],\n"
	if out, err := run(tree(version, moved)); err == nil || !strings.Contains(out, "does not apply") {
		t.Fatalf("moved context accepted: %v\n%s", err, out)
	}
	if src := os.Getenv("NODE_SRC"); src != "" {
		if out, err := run(src); err != nil {
			t.Fatalf("NODE_SRC=%s: %v\n%s", src, err, out)
		}
	}
}

func listLines(files ...string) string {
	var b strings.Builder
	for _, f := range files {
		b.WriteString("      '" + f + "',\n")
	}
	return b.String()
}
