package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350 §5, RFC 2347 for OACK).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// ErrorCode is the code carried by a TFTP ERROR packet (RFC 1350 appendix, RFC 2347).
type ErrorCode uint16

// Error codes a client can receive.
const (
	ErrNotDefined       ErrorCode = 0
	ErrFileNotFound     ErrorCode = 1
	ErrAccessViolation  ErrorCode = 2
	ErrDiskFull         ErrorCode = 3
	ErrIllegalOperation ErrorCode = 4
	ErrUnknownTID       ErrorCode = 5
	ErrFileExists       ErrorCode = 6
	ErrNoSuchUser       ErrorCode = 7
	ErrOptionRefused    ErrorCode = 8
)

// Error is an error a Handler can return to choose the ERROR packet the client sees. Any other
// error is mapped by kind: fs.ErrNotExist → file not found, fs.ErrPermission → access violation,
// anything else → code 0 with a generic message (the detail goes to the log, not the wire).
type Error struct {
	Code    ErrorCode
	Message string // sent to the client: keep server paths out of it
	Err     error  // logged, never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("tftp error %d (%s): %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("tftp error %d (%s)", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Option limits from RFC 2348, 2349 and 7440.
const (
	minBlockSize   = 8
	maxBlockSize   = 65464
	defBlockSize   = 512
	maxTimeoutSecs = 255
	maxWindowSize  = 65535
	// maxRequestLen bounds what we accept as a request; RFC 1350 keeps requests within 512 bytes
	// but some clients send more options than fit, so allow a full Ethernet payload.
	maxRequestLen = 1500
)

// rawRequest is a parsed RRQ or WRQ.
type rawRequest struct {
	op       uint16
	filename string
	mode     string            // lower-cased
	options  map[string]string // keys lower-cased, values as sent; nil when none
}

var errMalformed = errors.New("malformed request")

// parseRequest decodes an RRQ/WRQ: opcode, then NUL-terminated filename, mode and option
// name/value pairs. A missing final NUL is tolerated (some embedded clients omit it); an odd
// trailing option name is dropped; the first of duplicate options wins.
func parseRequest(b []byte) (rawRequest, error) {
	var r rawRequest
	if len(b) < 4 || len(b) > maxRequestLen {
		return r, errMalformed
	}
	r.op = binary.BigEndian.Uint16(b)
	if r.op != opRRQ && r.op != opWRQ {
		return r, errMalformed
	}
	rest := b[2:]
	if rest[len(rest)-1] == 0 {
		rest = rest[:len(rest)-1]
	}
	fields := bytes.Split(rest, []byte{0})
	if len(fields) < 2 || len(fields[0]) == 0 {
		return r, errMalformed
	}
	r.filename = string(fields[0])
	r.mode = strings.ToLower(string(fields[1]))
	for i := 2; i+1 < len(fields); i += 2 {
		name := strings.ToLower(string(fields[i]))
		if name == "" {
			continue
		}
		if r.options == nil {
			r.options = make(map[string]string)
		}
		if _, dup := r.options[name]; !dup {
			r.options[name] = string(fields[i+1])
		}
	}
	return r, nil
}

// params are the negotiated transfer parameters.
type params struct {
	blksize    int
	windowsize int
	timeoutSec int // 0: server default
	oack       []byte
}

// negotiate applies RFC 2347 option negotiation. Unknown or malformed options are ignored (not
// refused), oversized blksize/windowsize are lowered to what we allow, tsize is answered with the
// real size when known. oack is nil when no option was accepted: then the transfer starts with
// DATA 1 at 512 bytes exactly as RFC 1350.
func negotiate(opts map[string]string, size int64, maxBlk, maxWin int) params {
	p := params{blksize: defBlockSize, windowsize: 1}
	if len(opts) == 0 {
		return p
	}
	var oack []byte
	add := func(name string, v int64) {
		if oack == nil {
			oack = append(make([]byte, 0, 64), 0, opOACK)
		}
		oack = append(oack, name...)
		oack = append(oack, 0)
		oack = strconv.AppendInt(oack, v, 10)
		oack = append(oack, 0)
	}
	// A fixed order keeps OACKs reproducible (tests compare them byte for byte).
	if v, ok := optInt(opts, "blksize"); ok && v >= minBlockSize {
		p.blksize = int(min(v, int64(maxBlk), maxBlockSize))
		add("blksize", int64(p.blksize))
	}
	if _, ok := optInt(opts, "tsize"); ok && size >= 0 {
		add("tsize", size)
	}
	if v, ok := optInt(opts, "timeout"); ok && v >= 1 && v <= maxTimeoutSecs {
		p.timeoutSec = int(v)
		add("timeout", v)
	}
	if v, ok := optInt(opts, "windowsize"); ok && v >= 1 && v <= maxWindowSize {
		p.windowsize = int(min(v, int64(maxWin)))
		add("windowsize", int64(p.windowsize))
	}
	p.oack = oack
	return p
}

func optInt(opts map[string]string, name string) (int64, bool) {
	s, ok := opts[name]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v >= 0
}

// appendError appends an ERROR packet.
func appendError(b []byte, code ErrorCode, msg string) []byte {
	b = append(b, 0, opERROR, byte(code>>8), byte(code))
	b = append(b, msg...)
	return append(b, 0)
}

// toNetascii converts content to netascii (RFC 764 as used by RFC 1350): LF → CR LF, CR → CR NUL.
func toNetascii(in []byte) []byte {
	out := make([]byte, 0, len(in)+len(in)/16)
	for _, c := range in {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out
}
