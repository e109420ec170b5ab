package feed

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// slowSender records the pings and takes a while over each, as a broker round trip does.
type slowSender struct {
	mu   sync.Mutex
	sent []bool
}

func (s *slowSender) Send(_ context.Context, _ string, v []byte) error {
	p, err := whisk.ParsePingMessage(v)
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Microsecond)
	s.mu.Lock()
	s.sent = append(s.sent, p.IsEnabled)
	s.mu.Unlock()
	return nil
}

func (s *slowSender) since(n int) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.sent[n:]...)
}

func (s *slowSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// TestAnnounceIsTheLastWord: once Announce returned after a switch to disabled, no enabled ping
// goes out, though Run pings as fast as it can meanwhile (a ping Run made from the state before
// the switch would otherwise land after the disabled one and undo it at the controllers).
func TestAnnounceIsTheLastWord(t *testing.T) {
	var on atomic.Bool
	on.Store(true)
	s := &slowSender{}
	p := &Pinger{Sender: s, Interval: time.Microsecond, Enabled: on.Load}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i := range 200 {
		on.Store(true)
		time.Sleep(300 * time.Microsecond)
		on.Store(false)
		if err := p.Announce(context.Background()); err != nil {
			t.Fatal(err)
		}
		n := s.count()
		time.Sleep(time.Millisecond)
		for _, enabled := range s.since(n) {
			if enabled {
				t.Fatalf("round %d: an enabled ping after the disabled one was announced", i)
			}
		}
		if n == 0 || s.since(n - 1)[0] {
			t.Fatalf("round %d: the last ping before Announce returned is not a disabled one", i)
		}
	}
}
