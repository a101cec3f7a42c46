// Package watchq delivers watch events with "latest state wins" coalescing:
// a consumer that falls behind skips intermediate states but always gets the
// last one.
package watchq

import "github.com/coordkit/coord/coord"

// Q is the sending side of a watch channel. One goroutine sends.
type Q struct {
	ch chan coord.Event
}

// New returns a queue and the channel its consumer reads.
func New() (*Q, <-chan coord.Event) {
	ch := make(chan coord.Event, 1)
	return &Q{ch: ch}, ch
}

// Send delivers ev, replacing an event the consumer has not taken yet.
func (q *Q) Send(ev coord.Event) {
	for {
		select {
		case q.ch <- ev:
			return
		default:
		}
		select {
		case <-q.ch: // stale: drop it
		default:
		}
	}
}

// Close closes the channel; an event still buffered is delivered first.
func (q *Q) Close() { close(q.ch) }
