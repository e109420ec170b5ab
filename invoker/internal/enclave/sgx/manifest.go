package sgx

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"
)

// ManifestParams are the values the project fills into enclave-runtime/manifest/
// nodejs-owner.manifest.template. Everything here is measured (it ends up in MRENCLAVE), so nothing
// per-owner or per-request may appear: one rendered manifest serves every owner of an image with the
// same slot count.
type ManifestParams struct {
	// Name is the measured enclave name given to owner.js as --enclave, e.g. "nodejs-20-s8".
	Name string
	// Image is the runtime kind, e.g. "nodejs:20".
	Image string
	// Slots is the TCS pool donated to joining sandboxes (1..1024).
	Slots int
	// HeapMBPerSlot is the heap budget of one activation's isolate; EnclaveSize covers Slots of them.
	HeapMBPerSlot int
	// Node, RuntimeDir (enclave-runtime/trusted), Addon and SealCrypto are host paths of trusted files.
	Node, RuntimeDir, Addon, SealCrypto string
	// LogLevel is Gramine's loader.log_level ("error" in production).
	LogLevel string
	// Debug makes a debug enclave (sgx.debug); never in production.
	Debug bool
}

// Owner threads the enclave needs besides the join pool (see the template for each line):
// main, 4 libuv pool threads, 2 V8 platform workers, Node's delayed-task scheduler, the addon's
// watchdog, one slot thread being created (slot threads are created one by one and leave their TCS
// when they park), Gramine's IPC, async and TLS-handshake helpers, and 3 spare.
const (
	ownerThreads   = 1 + 4 + 2 + 1 + 1 + 1 + 3 + 3 // = 16
	nodeBaseMB     = 512                           // Node, V8 code space, libraries, the owner's own heap
	perThreadKB    = 360                           // TCS + TLS + 2 SSA frames + 256 KiB stack + 64 KiB signal stack
	maxEnclaveSize = 64 << 10                      // MiB; beyond this a static (non-EDMM) enclave is impractical
)

// MaxThreads is sgx.max_threads: the owner's own threads plus one TCS per join slot.
func (p ManifestParams) MaxThreads() int { return ownerThreads + p.Slots }

// EnclaveSizeMB is sgx.enclave_size in MiB: the Node base, a heap budget per slot and the per-thread
// areas, rounded up to a power of two (Gramine requires one). Without EDMM all of it is committed at
// start, so it is also the owner's EPC/RAM footprint.
func (p ManifestParams) EnclaveSizeMB() int {
	need := nodeBaseMB + p.Slots*p.HeapMBPerSlot + (p.MaxThreads()*perThreadKB+1023)/1024
	size := 256
	for size < need {
		size *= 2
	}
	return size
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate rejects values that would make an unusable or unsafe manifest.
func (p ManifestParams) Validate() error {
	switch {
	case !nameRE.MatchString(p.Name):
		return fmt.Errorf("manifest: name %q must match %s", p.Name, nameRE)
	case p.Image == "" || strings.ContainsAny(p.Image, "\"\\\n"):
		return fmt.Errorf("manifest: bad image %q", p.Image)
	case p.Slots < 1 || p.Slots > 1024:
		return fmt.Errorf("manifest: slots %d out of 1..1024", p.Slots)
	case p.HeapMBPerSlot < 64 || p.HeapMBPerSlot > 4096:
		return fmt.Errorf("manifest: heap per slot %d MiB out of 64..4096", p.HeapMBPerSlot)
	case p.EnclaveSizeMB() > maxEnclaveSize:
		return fmt.Errorf("manifest: %d slots of %d MiB need a %d MiB enclave (max %d)", p.Slots, p.HeapMBPerSlot, p.EnclaveSizeMB(), maxEnclaveSize)
	}
	for _, f := range []struct{ name, v string }{{"node", p.Node}, {"runtime dir", p.RuntimeDir}, {"addon", p.Addon}, {"sealed-crypto addon", p.SealCrypto}} {
		if !strings.HasPrefix(f.v, "/") || strings.ContainsAny(f.v, "\"\\\n") {
			return fmt.Errorf("manifest: %s path %q must be absolute and plain", f.name, f.v)
		}
	}
	switch p.LogLevel {
	case "none", "error", "warning", "debug", "trace", "all":
	default:
		return fmt.Errorf("manifest: log level %q", p.LogLevel)
	}
	return nil
}

// RenderManifest fills the project's values into the template. The template uses [[ ]] for our values
// and leaves Gramine's own {{ }} Jinja expressions (gramine.runtimedir(), arch_libdir) for
// gramine-manifest, which runs next.
func RenderManifest(tmpl []byte, p ManifestParams) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t, err := template.New("manifest").Delims("[[", "]]").Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		return nil, fmt.Errorf("manifest template: %w", err)
	}
	data := struct {
		ManifestParams
		MaxThreads    int
		EnclaveSizeMB int
	}{p, p.MaxThreads(), p.EnclaveSizeMB()}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("manifest template: %w", err)
	}
	return out.Bytes(), nil
}

// ManifestName is the measured name for an image and slot count, e.g. "nodejs:20" with 8 slots gives
// "nodejs-20-s8".
func ManifestName(image string, slots int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(image) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return fmt.Sprintf("%s-s%d", strings.Trim(b.String(), "-."), slots)
}

func readTemplate(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest template: %w", err)
	}
	return b, nil
}
