package udprelay

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The relay delays both ways and follows the server to the new port it answers from, as a TFTP
// server does.
func TestRelayDelayAndNewPort(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tid, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tid.Close()
	const delay = 5 * time.Millisecond
	r, err := New("127.0.0.1:0", srv.LocalAddr().(*net.UDPAddr).AddrPort(), delay)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf := make([]byte, 100)
	read := func(c *net.UDPConn) (string, netip.AddrPort) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n]), from
	}

	start := time.Now()
	cl.WriteToUDPAddrPort([]byte("request"), r.Addr())
	msg, relayPeer := read(srv)
	if msg != "request" {
		t.Fatalf("server got %q", msg)
	}
	// Answer from another port (the transfer ID); the client sees it from the relay.
	tid.WriteToUDPAddrPort([]byte("data 1"), relayPeer)
	msg, from := read(cl)
	if rtt := time.Since(start); msg != "data 1" || from != r.Addr() || rtt < 2*delay {
		t.Fatalf("client got %q from %v after %v; want data 1 from %v after ≥ %v", msg, from, rtt, r.Addr(), 2*delay)
	}
	cl.WriteToUDPAddrPort([]byte("ack 1"), r.Addr())
	if msg, _ := read(tid); msg != "ack 1" {
		t.Fatalf("transfer port got %q, want ack 1", msg)
	}
}

// Idle clients are forgotten: their upstream sockets close, and a returning client gets a new one.
func TestRelayExpiresIdlePeers(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, err := New("127.0.0.1:0", srv.LocalAddr().(*net.UDPAddr).AddrPort(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r.IdleTimeout = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf := make([]byte, 10)
	hop := func() netip.AddrPort {
		cl.WriteToUDPAddrPort([]byte("x"), r.Addr())
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		return from
	}
	peers := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.peers)
	}
	hop()
	if peers() != 1 {
		t.Fatalf("%d peers after one client, want 1", peers())
	}
	for i := 0; i < 200 && peers() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := peers(); n != 0 {
		t.Fatalf("%d peers left after %v idle, want 0", n, r.IdleTimeout)
	}
	hop() // a returning client is relayed again, through a new upstream socket
	if peers() != 1 {
		t.Errorf("%d peers after the client returned, want 1", peers())
	}
}
