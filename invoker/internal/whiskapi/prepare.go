package whiskapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Prepare asks this invoker to make an image warm before the controller moves its activations here
// from invoker From, which it drains (issue #20). Seq orders the requests of one controller run.
type Prepare struct {
	Seq   int64  `json:"seq"`
	Image string `json:"image"`
	From  int    `json:"from"`
}

// PollPrepare waits up to wait (at most 30 s) for the controller's requests to prepare images here
// with a sequence number above after. A controller that restarted numbers from 1 again: the
// answer's "epoch" changes, and every request it holds comes back.
func (c *Client) PollPrepare(ctx context.Context, epoch string, after int64, wait time.Duration) (newEpoch string, _ []Prepare, _ error) {
	var out struct {
		Epoch   string    `json:"epoch"`
		Prepare []Prepare `json:"prepare"`
	}
	q := url.Values{"timeout": {strconv.FormatInt(wait.Milliseconds(), 10)}, "after": {strconv.FormatInt(after, 10)},
		"epoch": {epoch}}
	status, err := c.keyCall(ctx, c.poll, http.MethodGet, c.base.JoinPath("internal", "v1", "prepare"), q, nil, &out)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("poll prepare requests: %w", err)
	case status != http.StatusOK:
		return "", nil, fmt.Errorf("poll prepare requests: HTTP %d: the controller cannot drain invokers", status)
	}
	return out.Epoch, out.Prepare, nil
}
