package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

// LogConfig are the collection limits (OpenWhisk's DockerToActivationLogStore and
// DockerContainer.logs).
type LogConfig struct {
	// LimitBytes is the action's log limit; 0 disables collection (OpenWhisk collects nothing).
	LimitBytes int64
	// Idle is the longest wait between two lines once the activation has ended (OpenWhisk: 2 s).
	Idle time.Duration
	// Total bounds the whole collection (OpenWhisk: max(limit MB, 5) × 2 s).
	Total time.Duration
	// DrainAfterError is how long to keep reading after a developer error, where sentinels are not
	// waited for (OpenWhisk reads what is there): the collection ends once output is idle this long.
	DrainAfterError time.Duration
	// Stamped says each line starts with its time and a space ("<RFC 3339 time> <text>"): the
	// teemate shim passes on the time the enclave gave each console line, so the record keeps
	// it. A line whose stamp is "-" or not a time is stamped on arrival. A standard action proxy
	// writes bare lines (Stamped false), and every line is stamped on arrival.
	Stamped bool
	// Now stamps lines; time.Now by default.
	Now func() time.Time
}

// DefaultLogConfig returns OpenWhisk's limits for a log limit in bytes.
func DefaultLogConfig(limitBytes int64) LogConfig {
	mb := limitBytes >> 20
	if mb < 5 {
		mb = 5
	}
	return LogConfig{
		LimitBytes:      limitBytes,
		Idle:            2 * time.Second,
		Total:           time.Duration(mb) * 2 * time.Second,
		DrainAfterError: 50 * time.Millisecond,
	}
}

// maxLine bounds one line held in memory; a longer line is cut (the log limit cuts it anyway).
const maxLine = 1 << 20

// TimeFormat is the fixed-width RFC 3339 UTC time of a log line, as Docker writes it.
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

// FormatLine formats one log line the way OpenWhisk stores it.
func FormatLine(t time.Time, stream, text string) string {
	return fmt.Sprintf("%-30s %s: %s", t.UTC().Format(TimeFormat), stream, text)
}

type line struct {
	stream string
	at     time.Time
	text   string
	eof    bool
	// dropped marks where the first line that did not fit under the log limit was left out.
	dropped bool
}

// Collector reads a sandbox's stdout and stderr from the moment the sandbox starts; Wait ends the
// collection for one activation. The readers never wait for Wait: they queue what they read (up to
// the log limit; beyond it lines are only counted as dropped), so a sandbox that writes its logs
// before it answers /run, or an action that logs while it runs, never blocks on a full pipe while
// the invoker is still waiting for that answer. After Wait the readers drain to the end.
type Collector struct {
	cfg    LogConfig
	notify chan struct{} // one pending wake-up for Wait

	mu      sync.Mutex
	queue   []line
	kept    int64 // bytes of text ever queued; bounded by the log limit
	dropped bool  // a line did not fit under the limit (its marker is queued)
	closed  bool  // Wait has returned: nothing is queued any more
}

// Logs is the result of a collection.
type Logs struct {
	// Lines are formatted OpenWhisk log lines, the truncation or warning line included.
	Lines []string
	// Truncated: the log limit was reached.
	Truncated bool
	// Sentinels counts the streams whose sentinel was seen (2 = complete).
	Sentinels int
	// Incomplete: collection ended before both sentinels (idle or total limit, exit, developer error).
	Incomplete bool
}

// Collect starts reading stdout and stderr.
func Collect(stdout, stderr io.Reader, cfg LogConfig) *Collector {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Collector{cfg: cfg, notify: make(chan struct{}, 1)}
	for _, s := range []struct {
		name string
		r    io.Reader
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if s.r == nil {
			c.push(line{stream: s.name, eof: true})
			continue
		}
		go c.read(s.name, s.r)
	}
	return c
}

func (c *Collector) read(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= maxLine {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(buf) > 0 {
			text := string(bytes.TrimRight(buf, "\r\n"))
			at := c.cfg.Now()
			if c.cfg.Stamped && text != wire.LogSentinel {
				at, text = c.stamp(at, text)
			}
			c.push(line{stream: stream, at: at, text: text})
			buf = buf[:0]
		}
		if err != nil {
			c.push(line{stream: stream, eof: true})
			return
		}
	}
}

// stamp splits a stamped line into its time and text; without a usable time the line keeps
// arrival, the time it was read.
func (c *Collector) stamp(arrival time.Time, text string) (time.Time, string) {
	stamp, rest, ok := strings.Cut(text, " ")
	if !ok {
		return arrival, text
	}
	if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
		return t, rest
	}
	return arrival, rest
}

// push queues one line for Wait without ever blocking. Sentinels and ends of stream are always
// queued; text only while the total stays within the log limit (Wait would cut it there anyway).
func (c *Collector) push(l line) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if !l.eof && l.text != wire.LogSentinel {
		n := int64(len(l.text)) + 1
		if c.kept+n > c.cfg.LimitBytes {
			if !c.dropped { // one marker, where the logs stop
				c.dropped = true
				c.queue = append(c.queue, line{stream: l.stream, dropped: true})
			}
			c.mu.Unlock()
			c.wake()
			return
		}
		c.kept += n
	}
	c.queue = append(c.queue, l)
	c.mu.Unlock()
	c.wake()
}

func (c *Collector) wake() {
	select {
	case c.notify <- struct{}{}:
	default: // a wake-up is already pending; Wait takes the whole queue at once
	}
}

// take hands Wait everything queued so far.
func (c *Collector) take() []line {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue = nil
	return q
}

// Wait collects one activation's lines: until the sentinel has been seen on both streams, both
// streams ended, output stayed idle for cfg.Idle (counted from when Wait was called), cfg.Total
// passed, or ctx ended. After a developer error it does not wait for sentinels (it drains what is
// already there) and adds OpenWhisk's warning line. exited, when not nil, is the sandbox's exit
// signal: after it, only the output already written is read.
func (c *Collector) Wait(ctx context.Context, developerError bool, exited <-chan struct{}) Logs {
	var out Logs
	if c.cfg.LimitBytes <= 0 {
		c.discard()
		return out
	}
	total := time.NewTimer(c.cfg.Total)
	defer total.Stop()
	idleFor := c.cfg.Idle
	if developerError && c.cfg.DrainAfterError > 0 {
		idleFor = c.cfg.DrainAfterError
	}
	idle := time.NewTimer(idleFor)
	defer idle.Stop()
	var used int64
	// The enclave runtime applies the log limit itself (it sees the lines first) and ends its
	// stderr with OpenWhisk's truncation line when it cut. Stdout and stderr arrive on two pipes,
	// which keep no order between them, so that line may come before the last stdout lines:
	// it is taken out here and written last, where OpenWhisk puts it.
	truncatedLine := whisk.MsgTruncatedLogs(whisk.ByteSize(c.cfg.LimitBytes))
	cutUpstream := false
	sentinel := map[string]bool{}
	eof := map[string]bool{}
	var kept []line
	done := false
	for !done {
		select {
		case <-c.notify:
			for _, l := range c.take() {
				if done {
					break // what follows both sentinels belongs to no activation
				}
				switch {
				case l.eof:
					eof[l.stream] = true
				case l.dropped:
					out.Truncated = true
				case l.text == wire.LogSentinel:
					sentinel[l.stream] = true
				case sentinel[l.stream]:
					// After its own sentinel a stream's lines belong to no activation. The two
					// streams are read apart, so such a line can reach the queue before the other
					// stream's sentinel does.
				case c.cfg.Stamped && l.stream == "stderr" && l.text == truncatedLine:
					cutUpstream = true
				case !out.Truncated:
					n := int64(len(l.text)) + 1
					if used+n > c.cfg.LimitBytes {
						out.Truncated = true
						break
					}
					used += n
					kept = append(kept, l)
				}
				done = (sentinel["stdout"] || eof["stdout"]) && (sentinel["stderr"] || eof["stderr"])
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(idleFor)
			done = (sentinel["stdout"] || eof["stdout"]) && (sentinel["stderr"] || eof["stderr"])
		case <-exited:
			// The writer is gone; what it wrote is in the pipe. Keep reading until both streams
			// end, but no longer than the drain period.
			exited = nil
			idleFor = min(idleFor, 100*time.Millisecond)
			idle.Reset(idleFor)
		case <-idle.C:
			done = true
		case <-total.C:
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	// In time order, as OpenWhisk shows an activation's logs: the two pipes keep no order between
	// them, and a line that came later through one may have been written earlier (the enclave's
	// stamps say when). Stable, so lines of the same time keep the order they came in.
	slices.SortStableFunc(kept, func(a, b line) int { return a.at.Compare(b.at) })
	for _, l := range kept {
		out.Lines = append(out.Lines, FormatLine(l.at, l.stream, l.text))
	}
	for _, s := range []string{"stdout", "stderr"} {
		if sentinel[s] {
			out.Sentinels++
		}
	}
	out.Incomplete = out.Sentinels < 2
	if out.Truncated || cutUpstream {
		out.Truncated = true
		out.Lines = append(out.Lines, FormatLine(c.cfg.Now(), "stderr", truncatedLine))
	}
	if developerError {
		out.Lines = append(out.Lines, FormatLine(c.cfg.Now(), "stderr", whisk.MsgLogWarningDeveloperError))
	}
	c.discard()
	return out
}

// discard ends the collection: what the readers still read (until their streams end) is dropped.
func (c *Collector) discard() {
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
}
