package httpd

import (
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// corkOf reads TCP_CORK of c.
func corkOf(t *testing.T, c net.Conn) int {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is a %T, not a *net.TCPConn: NewServer's ConnContext did not reach the handler", c)
	}
	sc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	var serr error
	if err := sc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
	}); err != nil || serr != nil {
		t.Fatalf("getsockopt TCP_CORK: %v %v", err, serr)
	}
	return v
}

// corkProbe is a body that notes whether the socket was corked while it
// was read.
type corkProbe struct {
	t     *testing.T
	conn  net.Conn
	body  io.Reader
	corks []int
}

func (p *corkProbe) Read(b []byte) (int, error) {
	p.corks = append(p.corks, corkOf(p.t, p.conn))
	return p.body.Read(b)
}

// TestBodyCorked checks that a body sent through recorder.ReadFrom (the
// path of every file download) goes out corked, like nginx's tcp_nopush,
// and that the socket is uncorked afterwards so the tail is not held back.
func TestBodyCorked(t *testing.T) {
	const body = "corked body"
	type result struct {
		during []int
		after  int
	}
	done := make(chan result, 1)
	addr := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := newRecorder(w, r)
		p := &corkProbe{t: t, conn: rec.conn, body: strings.NewReader(body)}
		if _, err := rec.ReadFrom(p); err != nil {
			t.Errorf("ReadFrom: %v", err)
		}
		done <- result{p.corks, corkOf(t, rec.conn)}
	}))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != body {
		t.Fatalf("body %q, %v; want %q", got, err, body)
	}
	res := <-done
	if len(res.during) == 0 {
		t.Fatal("the body was never read")
	}
	for _, c := range res.during {
		if c != 1 {
			t.Errorf("TCP_CORK while sending the body: %v; want 1 throughout", res.during)
			break
		}
	}
	if res.after != 0 {
		t.Errorf("TCP_CORK after the body: %d; want 0, or the tail waits up to 200 ms", res.after)
	}
}
