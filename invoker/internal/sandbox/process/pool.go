package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/startconf"
)

// pool keeps sandboxes created ahead of their activations, as the oci backend keeps created but
// not started containers: a pooled sandbox is the start stub, already holding its bound proxy
// socket, blocked reading its start configuration from a pipe (descriptor 4). Create writes the
// configuration and closes the pipe; the stub execs the command in place. Each is used once.
type pool struct {
	rt     *Runtime
	stub   string
	dir    string
	run    string // random per Runtime: names never collide with a crashed run's
	seq    atomic.Uint64
	ready  chan *box
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPool(r *Runtime) (*pool, error) {
	stub, err := exec.LookPath(r.cfg.StartStub)
	if err != nil {
		return nil, fmt.Errorf("start stub: %w (make build)", err)
	}
	size := r.cfg.PoolSize
	if size == 0 {
		size = 2
	}
	var nonce [3]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.cfg.StateDir, "pool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pool{rt: r, stub: stub, dir: dir, run: hex.EncodeToString(nonce[:]), ready: make(chan *box, size)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.refill()
	return p, nil
}

// takePooled returns a created sandbox, or nil when the pool is empty (or there is none).
func (r *Runtime) takePooled() *box {
	if r.pool == nil {
		return nil
	}
	select {
	case b := <-r.pool.ready:
		return b
	default:
		return nil
	}
}

// refill keeps the pool full, creating a sandbox as soon as one is taken. Failures back off.
func (p *pool) refill() {
	defer p.wg.Done()
	sandbox.Refill(p.ctx, p.ready, p.create, (*box).discard,
		func(err error) { p.rt.log.Warn("refilling the sandbox pool failed", zap.Error(err)) }, nil)
}

// create starts one stub: its own directory with the bound proxy socket (descriptor 3) and the
// read end of its start pipe (descriptor 4).
func (p *pool) create() (*box, error) {
	id := p.idPrefix() + strconv.FormatUint(p.seq.Add(1), 10)
	dir := filepath.Join(p.dir, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pooled sandbox %s: %w", id, err)
	}
	sock := filepath.Join(dir, "proxy.sock")
	ln, err := bindProxy(sock)
	if err != nil {
		_ = os.RemoveAll(dir) // best effort, as below: the failure's error is the one to report
		return nil, fmt.Errorf("pooled sandbox %s: %w", id, err)
	}
	startR, startW, err := os.Pipe()
	if err != nil {
		closeAll(ln)
		_ = os.RemoveAll(dir) // best effort
		return nil, fmt.Errorf("pooled sandbox %s: start pipe: %w", id, err)
	}
	b, err := p.rt.spawn(id, []string{p.stub, "/dev/fd/4"}, nil, ln, startR)
	if err != nil {
		closeAll(startW)
		_ = os.RemoveAll(dir) // best effort
		return nil, fmt.Errorf("pooled sandbox %s: %w", id, err)
	}
	b.startW, b.poolDir, b.proxySocket = startW, dir, sock
	return b, nil
}

// close stops the refiller; the pooled sandboxes are live ones and Runtime.Close destroys them.
func (p *pool) close() {
	p.cancel()
	p.wg.Wait()
}

// idPrefix starts the ids of this pool's sandboxes: the backend's prefix and the pool's run.
func (p *pool) idPrefix() string { return p.rt.idPrefix() + p.run + "_" }

func (r *Runtime) idPrefix() string {
	if r.cfg.IDPrefix != "" {
		return r.cfg.IDPrefix
	}
	return "wsk_"
}

// start hands the pooled stub its command: the stub execs it with exactly spec.Env (and
// TEEMATE_PROXY_FD=3, which the stub sets itself), keeping the group and the socket.
func (b *box) start(spec sandbox.Spec) error {
	b.name = spec.Name
	path := spec.Command[0]
	if !filepath.IsAbs(path) {
		// The stub does no PATH search; the process backend sees the host's filesystem.
		found, err := exec.LookPath(path)
		if err != nil {
			return err
		}
		if path, err = filepath.Abs(found); err != nil {
			return err
		}
	}
	conf, err := startconf.Config{Path: path, Args: spec.Command, Env: envList(spec.Env), Cwd: "/"}.Encode()
	if err != nil {
		return err
	}
	_, err = b.startW.Write(conf)
	if cerr := b.startW.Close(); err == nil {
		err = cerr
	}
	b.startW = nil
	if err != nil {
		return fmt.Errorf("hand the command to the pooled sandbox: %w", err)
	}
	return nil
}

// discard destroys a sandbox that never served; the caller already has an error to report.
func (b *box) discard() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Destroy(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		b.rt.log.Warn("discarding a pooled sandbox failed", zap.String("id", b.ID()), zap.Error(err))
	}
}
