package pool_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/teemate/platform/invoker/internal/enclave/pool"
)

// The caller's loop: report what happened, perform what the pool decides. Here the "performing" is
// printing; enclave.Manager starts, pings and stops real owners instead.
func ExamplePool() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := pool.New(pool.Config{SlotsPerOwner: 1, HealthInterval: 5 * time.Second}, now)
	show := func(acts []pool.Action) {
		for _, a := range acts {
			fmt.Println(a)
		}
	}
	t1, acts := p.Reserve("nodejs:20")
	show(acts) // a cold image: start an owner
	show(p.OwnerStarted("nodejs-20-1"))
	_, acts = p.Reserve("nodejs:20")
	show(acts) // the only slot is leased: the second reservation waits
	show(p.Release(t1))
	show(p.Tick(now.Add(5 * time.Second)))
	show(p.OwnerExited("nodejs-20-1", errors.New("signal: killed")))
	// Output:
	// start-owner nodejs:20 nodejs-20-1 for 1
	// grant 1 nodejs-20-1
	// grant 2 nodejs-20-1
	// ping nodejs-20-1
	// stop-owner nodejs-20-1 leases=1 (exited: signal: killed)
}
