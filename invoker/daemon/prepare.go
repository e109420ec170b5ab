package daemon

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/whiskapi"
	"github.com/teemate/platform/invoker/whisk"
)

// A drain (issue #20) moves an invoker's images one by one: the controller asks the destination to
// prepare each (servePrepare starts the image's enclave here, which takes the image key from the
// invoker that holds it), the destination's pings say when the image is warm and keyed (warmImages),
// and only then does the controller route the image's activations here.

// prepareTimeout bounds one image's preparation: an owner start with its key transfer.
const prepareTimeout = 2 * time.Minute

// preparer is what the enclave manager offers a drain.
type preparer interface {
	Prepare(ctx context.Context, image string, from int) error
}

// servePrepare takes the controller's requests to prepare images here until ctx ends; each is
// prepared in its own goroutine (the enclave manager starts one owner per image at a time).
// prepared, when set, is called after each image prepared (the daemon pings at once then).
func servePrepare(ctx context.Context, api *whiskapi.Client, p preparer, log *zap.Logger, prepared func()) {
	var preparing sync.WaitGroup
	defer preparing.Wait()
	var b pollBackoff
	epoch, after := "", int64(0)
	for ctx.Err() == nil {
		e, reqs, err := api.PollPrepare(ctx, epoch, after, keyPoll)
		if err != nil {
			b.failed(ctx, log, "polling the controller for images to prepare failed; trying again", err)
			continue
		}
		b.reset()
		if e != epoch {
			epoch, after = e, 0
		}
		for _, r := range reqs {
			after = max(after, r.Seq)
			preparing.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
				defer cancel()
				t0 := time.Now()
				if err := p.Prepare(pctx, r.Image, r.From); err != nil {
					log.Warn("preparing an image for a drain failed", zap.String("image", r.Image), zap.Int("from", r.From), zap.Error(err))
					return
				}
				log.Info("image prepared for a drain", zap.String("image", r.Image), zap.Int("from", r.From),
					zap.Duration("took", time.Since(t0)))
				if prepared != nil {
					prepared()
				}
			})
		}
	}
}

// warmLister is what an executor with warm enclaves offers the pings.
type warmLister interface {
	Warm(ctx context.Context) []enclave.WarmImage
}

// warmImages returns the pinger's list of warm images from exec, or nil when exec keeps none.
func warmImages(exec any) func() []whisk.WarmImage {
	w, ok := exec.(warmLister)
	if !ok {
		return nil
	}
	return func() []whisk.WarmImage {
		// The pings go out every second: an owner slower than this to answer counts as unkeyed.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var out []whisk.WarmImage
		for _, i := range w.Warm(ctx) {
			out = append(out, whisk.WarmImage{Image: i.Image, Kid: i.Kid})
		}
		return out
	}
}
