// Package pool is the decision core of the warm-enclave pool: which owner (warm enclave) of an
// image a reservation gets a TCS slot of, when an owner is started, when one is dropped (it exited,
// or its health pings failed, or it had no lease for Config.IdleTimeout), when a prestarted image
// gets a new owner, and what closing means.
// It runs on the untrusted host, like its caller enclave.Manager.
//
// The core does no I/O, starts no goroutines and reads no clock (etcd raft's RawNode rule): the
// caller reports what happened (a reservation, a release, an owner started or died, a ping's
// result, the time) and performs the actions the core returns, in order. Pool is not safe for
// concurrent use; the caller serialises calls.
//
// # Usage
//
// enclave.Manager is the one caller. Each call returns the actions to perform:
//
//	p := pool.New(cfg, now)
//	acts := p.Prestart()            // StartOwner for each prestarted image
//	t, acts := p.Reserve("nodejs:20")
//	// StartOwner{Image, Owner, Peer}: start it (taking the image key from Peer, a live owner of the
//	//   image, when set), then report p.OwnerStarted(id) or p.StartFailed(id, err)
//	// Grant{Ticket, Owner}: the ticket holds a slot of Owner until p.Release(ticket)
//	// Reject{Ticket, Cause, Err}: the reservation failed
//	// StopOwner{Owner, Reason}: the owner is out of the pool: tell its leases, stop it
//	// PingOwner{Owner}: health-ping it, then report p.PingResult(id, err)
//	acts = p.Tick(now)              // pings come due; idle owners retire (StopOwner with Idle)
//
// A reservation nobody waits for any more is withdrawn with Cancel. Owners' process exits are
// reported with OwnerExited; reports about owners the core has already dropped are ignored, so the
// caller may report whatever it sees.
//
// The scenario files in testdata/ show the decisions command by command; go test -rewrite
// regenerates their expectations (review the diff).
package pool
