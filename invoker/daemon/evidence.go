package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/whiskapi"
)

// publishEvidence is the enclave manager's Hooks.Evidence: it publishes an owner's evidence to
// the controller and turns the controller's refusal of a key other than the image's published
// one (whiskapi.ErrKeyConflict) into enclave.ErrKeyRefused, on which the manager replaces the
// owner with one that takes the published key.
func publishEvidence(api *whiskapi.Client) func(ctx context.Context, image string, evidence []byte) error {
	return func(ctx context.Context, image string, evidence []byte) error {
		err := api.PublishEvidence(ctx, image, evidence)
		if errors.Is(err, whiskapi.ErrKeyConflict) {
			return fmt.Errorf("%w: %w", enclave.ErrKeyRefused, err)
		}
		return err
	}
}
