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
