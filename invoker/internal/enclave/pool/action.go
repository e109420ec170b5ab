package pool

import "fmt"

// Action is a decision of the core for the caller to perform: StartOwner, StopOwner, PingOwner,
// Grant or Reject.
type Action interface {
	fmt.Stringer
	action()
}

// StartOwner: start an owner of Image named Owner (unique for the life of the pool), then report
// OwnerStarted or StartFailed. Ticket is the reservation that asked for it (0: a prestart). Peer is
// a live owner of the same image when there is one: the new owner takes the image key from it by
// transfer (it starts awaiting the key) instead of unsealing or making one.
type StartOwner struct {
	Image, Owner string
	Ticket       Ticket
	Peer         string
}

// StopOwner: Owner is out of the pool. Tell its leases (they see it die), stop it and remove its
// files. Reason says why; Closing: the pool is closing, and Idle: the owner had no lease for
// Config.IdleTimeout; neither is a failure of the owner. Leases is how many slots were still
// leased (always 0 when Idle).
type StopOwner struct {
	Image, Owner, Reason string
	Closing, Idle        bool
	Leases               int
}

// PingOwner: health-ping Owner, then report PingResult.
type PingOwner struct {
	Owner string
}

// Grant: reservation Ticket holds a slot of Owner until Release(Ticket).
type Grant struct {
	Ticket Ticket
	Image  string
	Owner  string
}

// Cause is why a reservation was rejected.
type Cause int

const (
	// Closed: the pool is closing or closed.
	Closed Cause = iota + 1
	// StartFailed: the owner the reservation waited for could not be started; Reject.Err is why.
	StartFailed
)

// Reject: reservation Ticket gets no slot.
type Reject struct {
	Ticket Ticket
	Image  string
	Cause  Cause
	Err    error // the start's error, for StartFailed
}

func (StartOwner) action() {}
func (StopOwner) action()  {}
func (PingOwner) action()  {}
func (Grant) action()      {}
func (Reject) action()     {}

func (a StartOwner) String() string {
	s := fmt.Sprintf("start-owner %s %s", a.Image, a.Owner)
	if a.Ticket != 0 {
		s += fmt.Sprintf(" for %d", a.Ticket)
	}
	if a.Peer != "" {
		s += " key-from " + a.Peer
	}
	return s
}

func (a StopOwner) String() string {
	return fmt.Sprintf("stop-owner %s leases=%d (%s)", a.Owner, a.Leases, a.Reason)
}

func (a PingOwner) String() string { return "ping " + a.Owner }

func (a Grant) String() string { return fmt.Sprintf("grant %d %s", a.Ticket, a.Owner) }

func (a Reject) String() string {
	if a.Cause == StartFailed {
		return fmt.Sprintf("reject %d start failed: %v", a.Ticket, a.Err)
	}
	return fmt.Sprintf("reject %d closed", a.Ticket)
}
