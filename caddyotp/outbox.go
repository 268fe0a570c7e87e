package caddyotp

import "sync"

// outboxSize bounds the deliveries in flight for one gate, outboxPerClient those one address
// (an IPv6 /64) asked for, and outboxPerRange those of its range (limitRange); past any of
// them /send answers 503, for every number alike.
const (
	outboxSize      = 128
	outboxPerClient = 8
	outboxPerRange  = 32
)

// outbox runs deliveries in the background: at most size at once, at most perClient of them
// for one client address and perRange for its range, so that no address or range can take
// every slot.
type outbox struct {
	mu        sync.Mutex
	size      int
	perClient int
	perRange  int
	inFlight  int
	byClient  map[string]int // by limitAddr and by limitRange
}

func newOutbox(size, perClient, perRange int) *outbox {
	return &outbox{size: size, perClient: perClient, perRange: perRange, byClient: make(map[string]int)}
}

// reserve takes a slot for the client address, or says there is none.
func (ob *outbox) reserve(client string) bool {
	addr, rng := limitAddr(client), limitRange(client)
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.inFlight >= ob.size || ob.byClient[addr] >= ob.perClient || ob.byClient[rng] >= ob.perRange {
		return false
	}
	ob.inFlight++
	ob.byClient[addr]++
	ob.byClient[rng]++
	return true
}

// release gives back the client address's slot.
func (ob *outbox) release(client string) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.inFlight--
	for _, k := range []string{limitAddr(client), limitRange(client)} {
		if ob.byClient[k]--; ob.byClient[k] <= 0 {
			delete(ob.byClient, k)
		}
	}
}

// run runs job in the background on client's reserved slot, which it gives back when done.
func (ob *outbox) run(client string, job func()) {
	go func() {
		defer ob.release(client)
		job()
	}()
}
