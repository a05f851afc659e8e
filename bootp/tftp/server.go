package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// Defaults for the zero Server fields.
const (
	// DefaultMaxBlockSize fits one DATA packet in a 1500-byte Ethernet MTU:
	// 1500 - 20 (IPv4) - 8 (UDP) - 4 (TFTP header). Larger blocks would be IP-fragmented, and
	// PXE ROMs are known to mishandle fragments.
	DefaultMaxBlockSize  = 1468
	DefaultMaxWindowSize = 64
	DefaultTimeout       = time.Second
	DefaultRetries       = 5
	DefaultMaxTransfers  = 512
	// maxNetasciiSize bounds the in-memory conversion netascii needs (boot loaders use octet).
	maxNetasciiSize = 16 << 20
)

// Server is a read-only TFTP server. The zero value (plus a Handler) is ready to use; fields
// must not change once Serve has been called.
type Server struct {
	Handler Handler
	Log     *slog.Logger // nil: discard
	// MaxBlockSize caps the negotiated blksize (RFC 2348); set it to the path MTU minus 32.
	MaxBlockSize int
	// MaxWindowSize caps the negotiated windowsize (RFC 7440). A window is also held to 1 MiB.
	MaxWindowSize int
	// Timeout is how long to wait for an ACK before resending; a client's "timeout" option
	// (RFC 2349) overrides it for its transfer.
	Timeout time.Duration
	// Retries is how many times a packet is resent without progress before the transfer is
	// abandoned; with MinTimeout, a transfer is abandoned after (Retries+1)*Timeout without
	// progress.
	Retries int
	// MinTimeout, if set, makes the resend timeout adaptive: it follows the transfer's
	// measured round trip as TCP's does (RFC 6298: smoothed RTT plus four deviations, doubled
	// on each timeout, samples only from blocks sent once), between MinTimeout and Timeout.
	// On a lossy link each lost packet then costs about MinTimeout instead of Timeout (UEFI
	// firmware fetching ipxe.efi with 5% loss: 16 s at a fixed 1 s).
	MinTimeout time.Duration
	// MaxTransfers bounds concurrent transfers (each holds a socket and a buffer). Requests
	// beyond it are dropped silently, so clients retry instead of giving up on an error.
	MaxTransfers int
	// Observe, if set, is called once per request when it ends: bytes is the payload the client
	// acknowledged, err nil for a complete transfer. It runs on the transfer's goroutine.
	Observe func(remote netip.AddrPort, path string, bytes int64, err error)

	bufs sync.Pool // *[]byte of poolBufSize, reused across transfers
}

const poolBufSize = 64 << 10

var (
	// ErrReadOnly is what Observe sees for a write request.
	ErrReadOnly = errors.New("write request refused: read-only server")
	// ErrNotFound is for handlers: the client gets ERROR 1 "file not found". Any error wrapping
	// fs.ErrNotExist does the same.
	ErrNotFound = fmt.Errorf("tftp: %w", fs.ErrNotExist)
)

// Serve answers requests arriving on conn until ctx is done, then ends all transfers and
// returns nil. Each transfer runs on its own socket bound to the address the request was sent
// to (read from IP_PKTINFO when conn listens on a wildcard address), so a multi-homed server
// answers from the address the client expects. Serve does not close conn. Transfer sockets
// are opened in the network namespace of the calling process, which must be conn's.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if s.Handler == nil {
		return errors.New("tftp: Server.Handler is nil; set it to a Mux or Dir before Serve")
	}
	l, err := newListener(conn)
	if err != nil {
		return err
	}
	log := s.logger()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A past deadline wakes the blocked read; the caller's conn stays open.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	slots := make(chan struct{}, orDefault(s.MaxTransfers, DefaultMaxTransfers))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		active = make(map[netip.AddrPort]struct{})
	)
	defer wg.Wait()

	var (
		dropped     int       // requests dropped since the last warning
		lastDropLog time.Time // a flood must not become a log flood
	)
	buf := make([]byte, 65536)
	for {
		n, remote, local, err := l.read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Someone else's deadline on a shared conn: clear it, then look at ctx again
				// in case ours fired in between (its deadline is set after ctx is done).
				conn.SetReadDeadline(time.Time{})
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			return fmt.Errorf("tftp: reading requests on %v: %w", conn.LocalAddr(), err)
		}
		if n < 4 || buf[0] != 0 || (buf[1] != opRRQ && buf[1] != opWRQ) {
			// Stray DATA/ACK/garbage on the request port: not ours to answer (RFC 1350 TIDs).
			if log.Enabled(ctx, slog.LevelDebug) {
				log.Debug("tftp: ignored datagram", "remote", remote, "bytes", n)
			}
			continue
		}
		mu.Lock()
		_, dup := active[remote]
		if !dup {
			select {
			case slots <- struct{}{}:
				active[remote] = struct{}{}
			default:
				mu.Unlock()
				if dropped++; time.Since(lastDropLog) >= time.Second {
					log.Warn("tftp: too many transfers, requests dropped (clients retry)", "remote", remote, "max", cap(slots), "dropped", dropped)
					dropped, lastDropLog = 0, time.Now()
				}
				continue
			}
		}
		mu.Unlock()
		if dup {
			// A retransmitted request while its transfer runs: that transfer answers it.
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		wg.Add(1)
		go func() {
			defer func() {
				mu.Lock()
				delete(active, remote)
				mu.Unlock()
				<-slots
				wg.Done()
			}()
			s.serveRequest(ctx, pkt, remote, local)
		}()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// serveRequest runs one request to its end, then logs and observes it.
func (s *Server) serveRequest(ctx context.Context, pkt []byte, remote netip.AddrPort, local netip.Addr) {
	start := time.Now()
	t := &transfer{s: s, remote: remote, local: local}
	err := t.run(ctx, pkt)
	if s.Observe != nil {
		s.Observe(remote, t.path, t.acked, err)
	}
	attrs := []any{"remote", remote, "local", local, "path", t.path, "bytes", t.acked,
		"blksize", t.bs, "windowsize", t.win, "duration", time.Since(start).Round(time.Microsecond)}
	if err != nil {
		s.logger().Warn("tftp: transfer failed", append(attrs, "err", err)...)
		return
	}
	s.logger().Info("tftp: transfer done", attrs...)
}

// transfer is one request: a connected socket, the content and the window state.
type transfer struct {
	s      *Server
	conn   *net.UDPConn
	remote netip.AddrPort
	local  netip.Addr
	path   string
	acked  int64

	r       io.ReaderAt
	size    int64 // -1 until known
	bs, win int
	timeout time.Duration // the most a resend waits (and the fixed wait without MinTimeout)
	retries int
	rto     rto

	chunk      []byte // file data for blocks chunkFirst...; refilled with one pread
	chunkFirst uint64
	chunkLen   int
	last       uint64 // number of the final block; 0 until known
	hdrs       []byte // 4 bytes per window slot
	b          *batch
	rd         *reader
	ack        [516]byte
	deadline   time.Time // the read deadline last set; zero when none is
	armed      bool      // the deadline covers the current wait
}

func (t *transfer) run(ctx context.Context, pkt []byte) (err error) {
	req, perr := parseRequest(pkt)
	t.path = req.filename
	t.conn, err = dialTransfer(t.local, t.remote)
	if err != nil {
		return err
	}
	defer t.conn.Close()
	stop := context.AfterFunc(ctx, func() { t.conn.Close() })
	defer stop()
	// A panicking Handler (or ReaderAt) fails its own request, not the server, as in net/http.
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic serving %q: %v\n%s", t.path, v, debug.Stack())
			t.sendError(ErrNotDefined, "internal error")
		}
	}()

	switch {
	case perr != nil:
		t.sendError(ErrIllegalOperation, "malformed request")
		return fmt.Errorf("%w from %v", perr, t.remote)
	case req.op == opWRQ:
		t.sendError(ErrAccessViolation, "read-only server")
		return ErrReadOnly
	case req.mode != "octet" && req.mode != "netascii":
		t.sendError(ErrIllegalOperation, "unsupported mode")
		return fmt.Errorf("mode %q not supported (octet or netascii)", req.mode)
	}
	clean, err := CleanPath(req.filename)
	if err != nil {
		t.sendError(ErrAccessViolation, "access violation")
		return err
	}
	t.path = clean
	r, size, err := t.s.Handler.ServeTFTP(&Request{Path: clean, Remote: t.remote, Local: t.local, Options: maps.Clone(req.options)})
	if err == nil && r == nil {
		err = fmt.Errorf("handler returned no content and no error for %q", clean)
	}
	if err != nil {
		code, msg := wireError(err)
		t.sendError(code, msg)
		return err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	if req.mode == "netascii" {
		if r, size, err = netascii(r, size); err != nil {
			t.sendError(ErrNotDefined, "file too large for netascii, use octet")
			return err
		}
	}
	t.r, t.size = r, size

	p := negotiate(req.options, size, orDefault(t.s.MaxBlockSize, DefaultMaxBlockSize), orDefault(t.s.MaxWindowSize, DefaultMaxWindowSize))
	t.bs, t.win = p.blksize, p.windowsize
	t.timeout = orDefault64(t.s.Timeout, DefaultTimeout)
	if p.timeoutSec > 0 {
		t.timeout = time.Duration(p.timeoutSec) * time.Second
	}
	t.retries = t.s.Retries
	if t.retries <= 0 {
		t.retries = DefaultRetries
	}
	t.rto = newRTO(min(t.s.MinTimeout, t.timeout), t.timeout)
	if size >= 0 {
		t.last = uint64(size)/uint64(t.bs) + 1
	}
	release := t.setupBuffers()
	defer release()

	if p.oack != nil {
		if err := t.negotiateOACK(p.oack); err != nil {
			return err
		}
	}
	return t.sendFile()
}

func orDefault64(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

// wireError picks what the client is told about a handler error; details stay in the log.
func wireError(err error) (ErrorCode, string) {
	var te *Error
	switch {
	case errors.As(err, &te):
		return te.Code, te.Message
	case errors.Is(err, fs.ErrNotExist):
		return ErrFileNotFound, "file not found"
	case errors.Is(err, fs.ErrPermission):
		return ErrAccessViolation, "access violation"
	}
	return ErrNotDefined, "cannot read file"
}

func netascii(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	limit := int64(maxNetasciiSize)
	if size > limit {
		return nil, 0, fmt.Errorf("netascii needs the file in memory; %d bytes is over %d", size, limit)
	}
	b, err := io.ReadAll(io.NewSectionReader(r, 0, limit+1))
	if err != nil {
		return nil, 0, err
	}
	if int64(len(b)) > limit {
		return nil, 0, fmt.Errorf("netascii needs the file in memory; more than %d bytes", limit)
	}
	out := toNetascii(b)
	return bytesReaderAt(out), int64(len(out)), nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// setupBuffers sizes the read chunk to hold at least a window and about 64 KiB, so a lockstep
// transfer issues one pread per ~44 blocks instead of one per block.
func (t *transfer) setupBuffers() (release func()) {
	blocks := max(t.win, poolBufSize/t.bs, 1)
	need := blocks * t.bs
	release = func() {}
	if need <= poolBufSize {
		bp, _ := t.s.bufs.Get().(*[]byte)
		if bp == nil {
			b := make([]byte, poolBufSize)
			bp = &b
		}
		t.chunk = (*bp)[:need]
		release = func() { t.s.bufs.Put(bp) }
	} else {
		t.chunk = make([]byte, need)
	}
	t.chunkFirst, t.chunkLen = 0, 0
	t.hdrs = make([]byte, 4*t.win)
	for i := 0; i < t.win; i++ {
		t.hdrs[4*i+1] = opDATA
	}
	t.b = newBatch(t.conn, t.win)
	t.rd = newReader(t.conn, t.ack[:], t.arm)
	return release
}

// negotiateOACK sends the OACK and waits for ACK 0 (RFC 2347), resending on timeout.
func (t *transfer) negotiateOACK(oack []byte) error {
	for try := 0; ; try++ {
		if try > t.retries {
			return fmt.Errorf("no ACK for OACK after %d tries", try)
		}
		if _, err := t.conn.Write(oack); err != nil {
			return fmt.Errorf("sending OACK: %w", err)
		}
		t.armed = false
		for {
			op, blk, err := t.readReply()
			if err != nil {
				if errors.Is(err, errTimeout) {
					break
				}
				return err
			}
			if op == opACK && blk == 0 {
				return nil
			}
		}
	}
}

var (
	errTimeout  = errors.New("timeout")
	errDeadline = os.ErrDeadlineExceeded
)

// readReply waits for an ACK or ERROR; other packets are ignored. A client ERROR ends the
// transfer.
func (t *transfer) readReply() (op, block uint16, err error) {
	for {
		n, err := t.rd.read()
		if err != nil {
			if errors.Is(err, errDeadline) {
				// An expired deadline fails reads before the reader gets to arm a new one:
				// clear it so the next wait arms afresh.
				t.conn.SetReadDeadline(time.Time{})
				t.deadline = time.Time{}
				return 0, 0, errTimeout
			}
			return 0, 0, fmt.Errorf("client gone: %w", err)
		}
		if n < 4 {
			continue
		}
		op = uint16(t.ack[0])<<8 | uint16(t.ack[1])
		block = uint16(t.ack[2])<<8 | uint16(t.ack[3])
		switch op {
		case opACK:
			return op, block, nil
		case opERROR:
			msg := t.ack[4:n]
			for i, c := range msg {
				if c == 0 {
					msg = msg[:i]
					break
				}
			}
			return op, block, fmt.Errorf("client sent error %d: %q", block, msg)
		}
	}
}

// sendFile sends DATA in windows of t.win blocks (1 = RFC 1350 lockstep). Only a timeout resends;
// a duplicate ACK never does, which is what keeps the sorcerer's apprentice away. An ACK inside
// the window moves the window to the block after it (RFC 7440 §4).
func (t *transfer) sendFile() error {
	base := uint64(0) // highest acknowledged block
	tries := 0
	resent := false // the window in flight was sent before: its ACK times nothing (Karn)
	var sentAt, progressAt time.Time
	if t.rto.adaptive() {
		progressAt = time.Now()
	}
	for {
		first := base + 1
		if err := t.fill(first); err != nil {
			t.sendError(ErrNotDefined, "read error")
			return err
		}
		count := uint64(t.win)
		if t.last != 0 && t.last-base < count {
			count = t.last - base
		}
		for i := uint64(0); i < count; i++ {
			blk := first + i
			h := t.hdrs[4*i : 4*i+4]
			h[2], h[3] = byte(blk>>8), byte(blk)
			t.b.set(int(i), h, t.blockData(blk))
		}
		if t.rto.adaptive() {
			sentAt = time.Now()
		}
		if err := t.b.send(int(count)); err != nil {
			return fmt.Errorf("sending DATA %d: %w", uint16(first), err)
		}
		t.armed = false
		for {
			_, blk, err := t.readReply()
			if errors.Is(err, errTimeout) {
				tries++
				resent = true
				if t.rto.adaptive() {
					t.rto.backOff()
					if time.Since(progressAt) > time.Duration(t.retries+1)*t.timeout {
						return fmt.Errorf("no ACK for block %d for %v (%d resends)", uint16(first), time.Since(progressAt).Round(time.Millisecond), tries-1)
					}
				} else if tries > t.retries {
					return fmt.Errorf("no ACK for block %d after %d tries of %v", uint16(first), tries, t.timeout)
				}
				break // resend the window
			}
			if err != nil {
				return err
			}
			delta := uint64(blk - uint16(base)) // block numbers wrap at 65536 (to 0)
			if delta == 0 || delta > count {
				continue // duplicate or stale ACK: wait on, keep the deadline
			}
			if t.rto.adaptive() {
				now := time.Now()
				if !resent {
					t.rto.sample(now.Sub(sentAt))
				}
				progressAt = now
			}
			resent = false
			base += delta
			tries = 0
			t.acked = min(int64(base)*int64(t.bs), t.end())
			if base == t.last {
				return nil
			}
			break
		}
	}
}

// arm runs when the reader is about to park: an ACK that is already queued (the common case
// when client and server share a core) costs no clock read and no timer update. The first park
// after a send bounds the wait to between 7/8 and all of the timeout; later parks for the same
// send keep that deadline, so stray packets cannot stretch it. Moving the deadline is a runtime
// timer update, so it moves only when it would end more than timeout/8 early, or late.
func (t *transfer) arm() {
	if t.armed {
		return
	}
	t.armed = true
	want := time.Now().Add(t.rto.current())
	// Kept if it ends no later than wanted and less than an eighth of the
	// wait earlier: a deadline set for a longer wait (before the first
	// round trip was measured) or a much shorter one is replaced.
	if !t.deadline.IsZero() && !t.deadline.After(want) && want.Sub(t.deadline) < t.rto.current()/8 {
		return
	}
	t.deadline = want
	t.conn.SetReadDeadline(want)
}

// rto is a transfer's resend timeout. Fixed (lo == hi) it stays at hi; adaptive it follows
// RFC 6298 from the first sample on, starting at hi.
type rto struct {
	lo, hi, cur  time.Duration
	srtt, rttvar time.Duration
	sampled      bool
}

func newRTO(lo, hi time.Duration) rto {
	if lo <= 0 {
		lo = hi
	}
	return rto{lo: lo, hi: hi, cur: hi}
}

func (r *rto) adaptive() bool         { return r.lo < r.hi }
func (r *rto) current() time.Duration { return r.cur }

// sample takes the round trip of a window sent once: from its send to the ACK that moved the
// window on.
func (r *rto) sample(rtt time.Duration) {
	if !r.sampled {
		r.srtt, r.rttvar, r.sampled = rtt, rtt/2, true
	} else {
		d := r.srtt - rtt
		if d < 0 {
			d = -d
		}
		r.rttvar = (3*r.rttvar + d) / 4
		r.srtt = (7*r.srtt + rtt) / 8
	}
	r.cur = min(max(r.srtt+4*r.rttvar, r.lo), r.hi)
}

// backOff doubles the timeout after one ran out, up to hi.
func (r *rto) backOff() { r.cur = min(2*r.cur, r.hi) }

// end is the content size, or the largest int64 while it is not known yet.
func (t *transfer) end() int64 {
	if t.size >= 0 {
		return t.size
	}
	return int64(^uint64(0) >> 1)
}

// covered reports whether the chunk holds block blk's data (all of it, or up to the end).
func (t *transfer) covered(blk uint64) bool {
	if t.chunkFirst == 0 || blk < t.chunkFirst {
		return false
	}
	start := int64(t.chunkFirst-1) * int64(t.bs)
	if t.size >= 0 && start+int64(t.chunkLen) == t.size {
		return true // the chunk reaches the end: every later block is (partly) here
	}
	return int64(blk-t.chunkFirst+1)*int64(t.bs) <= int64(t.chunkLen)
}

// fill makes the chunk hold blocks first..first+win-1 (or up to the end), with one ReadAt when
// they are not there yet.
func (t *transfer) fill(first uint64) error {
	lastNeeded := first + uint64(t.win) - 1
	if t.last != 0 && lastNeeded > t.last {
		lastNeeded = t.last
	}
	if t.covered(first) && t.covered(lastNeeded) {
		return nil
	}
	off := int64(first-1) * int64(t.bs)
	want := len(t.chunk)
	if t.size >= 0 && t.size-off < int64(want) {
		want = int(t.size - off)
	}
	n, err := t.r.ReadAt(t.chunk[:want], off)
	switch {
	case n == want && (err == nil || err == io.EOF):
	case err == io.EOF && t.size < 0:
	case err == nil || err == io.EOF:
		return fmt.Errorf("%s: short read at offset %d (file shrank while being sent?)", t.path, off+int64(n))
	default:
		return fmt.Errorf("%s: reading at offset %d: %w", t.path, off+int64(n), err)
	}
	t.chunkFirst, t.chunkLen = first, n
	if t.size < 0 && (n < len(t.chunk) || err == io.EOF) {
		t.size = off + int64(n)
		t.last = uint64(t.size)/uint64(t.bs) + 1
	}
	return nil
}

func (t *transfer) blockData(blk uint64) []byte {
	lo := int(blk-t.chunkFirst) * t.bs
	hi := min(lo+t.bs, t.chunkLen)
	if lo >= hi {
		return nil
	}
	return t.chunk[lo:hi]
}

func (t *transfer) sendError(code ErrorCode, msg string) {
	var b [128]byte
	t.conn.Write(appendError(b[:0], code, msg))
}

// dialTransfer opens the transfer's socket: a new port (the server's TID) on the address the
// client sent to, connected to the client so the kernel drops other senders' packets.
func dialTransfer(local netip.Addr, remote netip.AddrPort) (*net.UDPConn, error) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	network := "udp6"
	if remote.Addr().Is4() {
		network = "udp4"
	}
	raddr := net.UDPAddrFromAddrPort(remote)
	local = local.Unmap()
	if local.IsValid() && !local.IsUnspecified() && local.Is4() == remote.Addr().Is4() {
		laddr := &net.UDPAddr{IP: local.AsSlice(), Zone: local.Zone()}
		if c, err := net.DialUDP(network, laddr, raddr); err == nil {
			return c, nil
		}
		// The address may be a broadcast or no longer ours: fall back to the routing choice.
	}
	c, err := net.DialUDP(network, nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("opening transfer socket to %v: %w", remote, err)
	}
	return c, nil
}

func zoneFor(a netip.Addr, ifindex int) netip.Addr {
	if ifindex > 0 && a.Is6() && !a.Is4In6() && a.IsLinkLocalUnicast() {
		return a.WithZone(strconv.Itoa(ifindex))
	}
	return a
}
