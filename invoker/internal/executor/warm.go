package executor

import (
	"context"
	"fmt"

	"github.com/teemate/platform/invoker/internal/enclave"
)

// warmEnclaves is what *enclave.Manager offers for a drain (issue #20): the images warm here, and
// starting an image's enclave before its activations come.
type warmEnclaves interface {
	Warm(ctx context.Context) []enclave.WarmImage
	Prepare(ctx context.Context, image string, from int) error
}

// Warm lists the images whose enclave is warm here (enclave.Manager.Warm); none when the model
// shares no enclave.
func (t *Executor) Warm(ctx context.Context) []enclave.WarmImage {
	w, ok := t.enclaves.(warmEnclaves)
	if !ok || !t.cfg.Model.SharesEnclave() {
		return nil
	}
	return w.Warm(ctx)
}

// Prepare starts image's enclave here unless it is warm (enclave.Manager.Prepare); from is the
// invoker the image moves from. A model that shares no enclave has nothing to prepare.
func (t *Executor) Prepare(ctx context.Context, image string, from int) error {
	if !t.cfg.Model.SharesEnclave() {
		return nil
	}
	w, ok := t.enclaves.(warmEnclaves)
	if !ok {
		return fmt.Errorf("prepare %s: these enclaves cannot be started ahead", image)
	}
	return w.Prepare(ctx, image, from)
}
