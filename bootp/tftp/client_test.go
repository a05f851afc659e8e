package tftp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// testClient is a minimal RFC 1350/2347/7440 reading client with hooks to lose and duplicate
// packets. It acknowledges every windowsize-th block and, on a gap, the last block in order.
type testClient struct {
	conn    *net.UDPConn
	timeout time.Duration // per read; the request/last ACK is resent after it
	tries   int
	// dropData, if set, makes the client act as if DATA block blk (seen for the seen-th time,
	// counting from 1) never arrived.
	dropData func(blk uint64, seen int) bool
	dropOACK int  // act as if the first dropOACK OACKs were lost
	dupAcks  bool // send every ACK twice (provokes the sorcerer's apprentice)
	discard  bool // hash the content instead of keeping it (benchmarks)
	// errorAfter, if > 0, sends ERROR instead of acknowledging block errorAfter.
	errorAfter uint64
}

type getResult struct {
	data       []byte
	sum        [32]byte
	n          int64
	oack       map[string]string
	from       netip.AddrPort // the server's transfer ID
	dataPkts   int            // DATA packets received, duplicates included
	sawBlock0  bool           // the block number rolled over to 0
	blksize    int
	windowsize int
}

type remoteError struct {
	code ErrorCode
	msg  string
}

func (e *remoteError) Error() string { return fmt.Sprintf("server error %d: %s", e.code, e.msg) }

func newTestClient(t testing.TB, local string) *testClient {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testClient{conn: c, timeout: 2 * time.Second, tries: 5}
}

func rrq(name, mode string, opts ...string) []byte {
	b := []byte{0, opRRQ}
	b = append(append(b, name...), 0)
	b = append(append(b, mode...), 0)
	for _, o := range opts {
		b = append(append(b, o...), 0)
	}
	return b
}

// get fetches name; opts are option name/value pairs.
func (c *testClient) get(server netip.AddrPort, name string, opts ...string) (*getResult, error) {
	return c.getRaw(server, rrq(name, "octet", opts...))
}

func (c *testClient) getRaw(server netip.AddrPort, req []byte) (*getResult, error) {
	res := &getResult{blksize: 512, windowsize: 1}
	var h hash.Hash
	if c.discard {
		h = sha256.New()
	}
	buf := make([]byte, 65536+4)
	ack := make([]byte, 4)
	ack[1] = opACK
	var (
		peer     netip.AddrPort
		received uint64 // blocks received in order
		sinceAck int
		seen     = map[uint64]int{}
		oacks    int
		last     = req // what to resend on timeout
		dest     = server
		misses   int
	)
	send := func(b []byte) error {
		last = b
		n := 1
		if c.dupAcks && b[1] == opACK {
			n = 2
		}
		for i := 0; i < n; i++ {
			if _, err := c.conn.WriteToUDPAddrPort(b, dest); err != nil {
				return err
			}
		}
		return nil
	}
	sendAck := func(blk uint64) error {
		binary.BigEndian.PutUint16(ack[2:], uint16(blk))
		sinceAck = 0
		return send(ack)
	}
	if err := send(req); err != nil {
		return nil, err
	}
	for {
		c.conn.SetReadDeadline(time.Now().Add(c.timeout))
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if misses++; misses > c.tries {
					return res, fmt.Errorf("no answer after %d tries (%d blocks in)", misses, received)
				}
				if err := send(last); err != nil {
					return res, err
				}
				continue
			}
			return res, err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if peer.IsValid() && from != peer {
			continue
		}
		if n < 4 {
			return res, fmt.Errorf("short packet %q", buf[:n])
		}
		op := binary.BigEndian.Uint16(buf)
		switch op {
		case opERROR:
			msg, _, _ := bytes.Cut(buf[4:n], []byte{0})
			return res, &remoteError{ErrorCode(binary.BigEndian.Uint16(buf[2:])), string(msg)}
		case opOACK:
			if peer.IsValid() && received > 0 {
				continue
			}
			if oacks++; oacks <= c.dropOACK {
				continue
			}
			peer, dest, res.from = from, from, from
			res.oack = map[string]string{}
			f := bytes.Split(bytes.TrimSuffix(buf[2:n], []byte{0}), []byte{0})
			for i := 0; i+1 < len(f); i += 2 {
				res.oack[string(f[i])] = string(f[i+1])
			}
			if v, err := strconv.Atoi(res.oack["blksize"]); err == nil {
				res.blksize = v
			}
			if v, err := strconv.Atoi(res.oack["windowsize"]); err == nil {
				res.windowsize = v
			}
			if err := sendAck(0); err != nil {
				return res, err
			}
		case opDATA:
			peer, dest, res.from = from, from, from
			misses = 0
			res.dataPkts++
			blk16 := binary.BigEndian.Uint16(buf[2:])
			if blk16 == 0 {
				res.sawBlock0 = true
			}
			// Place the 16-bit number near what we expect.
			blk := received + 1 + uint64(int64(int16(blk16-uint16(received+1))))
			if c.dropData != nil {
				seen[blk]++
				if c.dropData(blk, seen[blk]) {
					continue
				}
			}
			if blk != received+1 {
				if blk > received+1 && sinceAck >= 0 {
					// A gap: ask for a resend from the block after the last one in order, once.
					if err := sendAck(received); err != nil {
						return res, err
					}
					sinceAck = -1 << 30
				}
				continue
			}
			if sinceAck < 0 {
				sinceAck = 0
			}
			data := buf[4:n]
			if h != nil {
				h.Write(data)
			} else {
				res.data = append(res.data, data...)
			}
			res.n += int64(len(data))
			received++
			sinceAck++
			if c.errorAfter > 0 && received == c.errorAfter {
				e := appendError(nil, ErrNotDefined, "client gives up")
				c.conn.WriteToUDPAddrPort(e, dest)
				return res, errors.New("client sent error")
			}
			final := len(data) < res.blksize
			if final || sinceAck >= res.windowsize {
				if err := sendAck(received); err != nil {
					return res, err
				}
			}
			if final {
				if h != nil {
					copy(res.sum[:], h.Sum(nil))
				} else {
					res.sum = sha256.Sum256(res.data)
				}
				return res, nil
			}
		}
	}
}
