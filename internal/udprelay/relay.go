// Package udprelay is a small UDP relay that adds a fixed one-way delay in each direction, so
// tests and benchmarks can give a link a LAN-like round trip on kernels without netem. It is
// for test networks only: it must never be part of a serving path, and it makes no attempt at
// loss, reordering or rate limits.
//
// A client sends to the relay's listening socket; for each client address the relay opens one
// upstream socket and forwards the client's datagrams from it to the target. Replies may come
// from any port of the target host (a TFTP server answers from a new port per transfer): the
// relay remembers the last one and sends the client's later datagrams there, and returns
// replies to the client from the listening socket. Each datagram is released Delay after it
// arrived, in arrival order.
package udprelay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Relay forwards datagrams between clients on Listen and Target with a delay.
type Relay struct {
	conn   *net.UDPConn
	target netip.AddrPort
	delay  time.Duration

	mu    sync.Mutex
	peers map[netip.AddrPort]*peer
	wg    sync.WaitGroup
	// MaxPeers bounds upstream sockets; datagrams from further clients are dropped.
	MaxPeers int
	// IdleTimeout frees a client's upstream socket and thread after this long without traffic.
	IdleTimeout time.Duration
}

type peer struct {
	up       *net.UDPConn
	done     chan struct{} // closed when the peer is expired
	mu       sync.Mutex
	upstream netip.AddrPort // where the client's datagrams go: target, then the server's TID
	last     time.Time      // last datagram either way
	toServer chan packet
}

type packet struct {
	due  time.Time
	data []byte
	to   netip.AddrPort
}

// New listens on listen (e.g. "127.0.0.1:0") and relays to target with delay each way.
func New(listen string, target netip.AddrPort, delay time.Duration) (*Relay, error) {
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("udprelay: listen address %q: %w", listen, err)
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("udprelay: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	return &Relay{conn: c, target: target, delay: delay, peers: map[netip.AddrPort]*peer{}, MaxPeers: 1024, IdleTimeout: 30 * time.Second}, nil
}

// Addr is where clients send.
func (r *Relay) Addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Serve relays until ctx is done, then closes all sockets.
func (r *Relay) Serve(ctx context.Context) error {
	toClients := make(chan packet, 65536)
	stop := context.AfterFunc(ctx, func() {
		r.conn.Close()
		r.mu.Lock()
		for _, p := range r.peers {
			p.up.Close()
		}
		r.mu.Unlock()
	})
	defer stop()
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.release(ctx, nil, toClients, func(p packet) { r.conn.WriteToUDPAddrPort(p.data, p.to) })
	}()
	go func() {
		defer r.wg.Done()
		r.expire(ctx)
	}()
	defer r.wg.Wait()

	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("udprelay: reading from clients: %w", err)
		}
		p, err := r.peer(ctx, from, toClients)
		if err != nil {
			continue
		}
		p.mu.Lock()
		to := p.upstream
		p.last = time.Now()
		p.mu.Unlock()
		select {
		case p.toServer <- packet{time.Now().Add(r.delay), append([]byte(nil), buf[:n]...), to}:
		default: // queue full: behave like a congested link and drop
		}
	}
}

func (r *Relay) peer(ctx context.Context, client netip.AddrPort, toClients chan packet) (*peer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[client]; ok {
		return p, nil
	}
	if len(r.peers) >= r.MaxPeers {
		return nil, errors.New("too many peers")
	}
	network := "udp4"
	if r.target.Addr().Is6() && !r.target.Addr().Is4In6() {
		network = "udp6"
	}
	up, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	_ = up.SetReadBuffer(4 << 20)
	_ = up.SetWriteBuffer(4 << 20)
	p := &peer{up: up, done: make(chan struct{}), upstream: r.target, last: time.Now(), toServer: make(chan packet, 65536)}
	r.peers[client] = p
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.release(ctx, p.done, p.toServer, func(pk packet) { up.WriteToUDPAddrPort(pk.data, pk.to) })
	}()
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := up.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from.Addr().Unmap() != r.target.Addr().Unmap() {
				continue
			}
			p.mu.Lock()
			p.upstream = from
			p.last = time.Now()
			p.mu.Unlock()
			select {
			case toClients <- packet{time.Now().Add(r.delay), append([]byte(nil), buf[:n]...), client}:
			default:
			}
		}
	}()
	return p, nil
}

// release sends each packet when it is due. Delays are equal, so arrival order is due order.
// Go timers round sub-millisecond waits up to about a millisecond, which would turn a 0.1 ms
// delay into 1 ms; preciseSleep blocks this goroutine's own thread instead.
func (r *Relay) release(ctx context.Context, done chan struct{}, q chan packet, send func(packet)) {
	unlock := lockThreadPrecise()
	defer unlock()
	for {
		var p packet
		select {
		case p = <-q:
		case <-ctx.Done():
			return
		case <-done:
			return
		}
		if d := time.Until(p.due); d > 0 {
			preciseSleep(d)
		}
		send(p)
	}
}

// expire frees peers that have been idle for IdleTimeout.
func (r *Relay) expire(ctx context.Context) {
	t := time.NewTicker(max(r.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		for client, p := range r.peers {
			p.mu.Lock()
			idle := time.Since(p.last) > r.IdleTimeout
			p.mu.Unlock()
			if idle {
				delete(r.peers, client)
				close(p.done)
				p.up.Close()
			}
		}
		r.mu.Unlock()
	}
}
