package tftp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Request is a read request as a Handler sees it.
type Request struct {
	// Path is the requested file name after CleanPath: relative, "/"-separated, no "." or ".."
	// elements. Behind a Mux it is relative to the mount prefix.
	Path string
	// Remote is the client's address and port (its transfer ID).
	Remote netip.AddrPort
	// Local is the address the client sent the request to; replies come from this address.
	Local netip.Addr
	// Options are the client's RFC 2347 options, names lower-cased, values as sent.
	Options map[string]string
}

// Handler answers read requests. It returns the content and its size in bytes; size -1 means
// unknown (no tsize is offered and the transfer ends where ReadAt reports io.EOF). If the
// io.ReaderAt is also an io.Closer, the server closes it when the transfer ends. ReadAt is
// called from one goroutine, with non-decreasing offsets except when a window is resent.
type Handler interface {
	ServeTFTP(r *Request) (io.ReaderAt, int64, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(r *Request) (io.ReaderAt, int64, error)

// ServeTFTP calls f(r).
func (f HandlerFunc) ServeTFTP(r *Request) (io.ReaderAt, int64, error) { return f(r) }

// maxPathLen bounds requested names; PXE firmware limits itself to 128 bytes, Linux to 4096.
const maxPathLen = 1024

// CleanPath is the one place where requested names are judged. It maps backslashes (Windows
// clients) to "/", strips leading "/" so absolute names land under the root (as tftpd -s does),
// drops "." and empty elements, and refuses "..", control characters (including NUL) and names
// longer than 1024 bytes. Names are not URL-decoded: "%2e%2e" is an ordinary file name.
func CleanPath(name string) (string, error) {
	if len(name) > maxPathLen {
		return "", fmt.Errorf("file name of %d bytes is longer than %d", len(name), maxPathLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("file name %q holds control character %#x", name, c)
		}
	}
	elems := strings.Split(strings.ReplaceAll(name, `\`, "/"), "/")
	out := elems[:0]
	for _, e := range elems {
		switch e {
		case "", ".":
		case "..":
			return "", fmt.Errorf("file name %q climbs out with \"..\"", name)
		default:
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return "", fmt.Errorf("file name %q names no file", name)
	}
	return strings.Join(out, "/"), nil
}

// Mux dispatches on the longest matching path prefix, like http.ServeMux without patterns. A
// non-empty prefix names a directory: "images" and "images/" both match "images/..." and the
// handler sees the rest of the path. The prefix "" matches everything. Safe for concurrent use.
type Mux struct {
	mu      sync.RWMutex
	entries []muxEntry // longest prefix first
}

type muxEntry struct {
	prefix string
	h      Handler
}

// Handle mounts h at prefix, replacing what was mounted there.
func (m *Mux) Handle(prefix string, h Handler) {
	prefix = strings.Trim(strings.ReplaceAll(prefix, `\`, "/"), "/")
	if prefix != "" {
		prefix += "/"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.entries {
		if m.entries[i].prefix == prefix {
			m.entries[i].h = h
			return
		}
	}
	m.entries = append(m.entries, muxEntry{prefix, h})
	sort.SliceStable(m.entries, func(i, j int) bool { return len(m.entries[i].prefix) > len(m.entries[j].prefix) })
}

// ServeTFTP hands r to the handler with the longest prefix of r.Path.
func (m *Mux) ServeTFTP(r *Request) (io.ReaderAt, int64, error) {
	m.mu.RLock()
	var h Handler
	var rest string
	for _, e := range m.entries {
		if p, ok := strings.CutPrefix(r.Path, e.prefix); ok && p != "" {
			h, rest = e.h, p
			break
		}
	}
	m.mu.RUnlock()
	if h == nil {
		return nil, 0, fmt.Errorf("%q: nothing mounted there: %w", r.Path, fs.ErrNotExist)
	}
	sub := *r
	sub.Path = rest
	return h.ServeTFTP(&sub)
}

// Dir serves regular files below root. Confinement is os.Root's: ".." and symlinks that lead
// out of root are refused by the kernel-backed lookup, not by string checks. Directories,
// devices, FIFOs and sockets are refused. root is opened per request, so a directory that is
// replaced (images re-staged) is picked up and a missing root is a per-request error.
func Dir(root string) Handler { return dirHandler(root) }

type dirHandler string

func (d dirHandler) ServeTFTP(r *Request) (io.ReaderAt, int64, error) {
	rt, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, 0, fmt.Errorf("tftp root %s: %w (create it or fix tftp-root)", string(d), err)
	}
	defer rt.Close()
	name := filepath.FromSlash(r.Path)
	// Stat first so a FIFO or device is never opened (opening has side effects on some devices).
	st, err := rt.Stat(name)
	if err != nil {
		return nil, 0, refuse(d, r.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, &Error{Code: ErrAccessViolation, Message: "not a regular file",
			Err: fmt.Errorf("%s: %s is a %s, only regular files are served", filepath.Join(string(d), name), r.Path, st.Mode().Type())}
	}
	// O_NONBLOCK: if the name was swapped for a FIFO after Stat, open must not hang.
	f, err := rt.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, refuse(d, r.Path, err)
	}
	fst, err := f.Stat()
	if err != nil || !fst.Mode().IsRegular() || !os.SameFile(st, fst) {
		f.Close()
		return nil, 0, &Error{Code: ErrAccessViolation, Message: "file changed while opening",
			Err: fmt.Errorf("%s changed between stat and open", filepath.Join(string(d), name))}
	}
	return f, fst.Size(), nil
}

func refuse(d dirHandler, p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s under %s: %w", p, string(d), err)
	}
	// os.Root reports escapes (via ".." or symlinks) with its own error; all of them are
	// refusals, and the client learns nothing about the layout beyond "no".
	return &Error{Code: ErrAccessViolation, Message: "access violation", Err: fmt.Errorf("%s under %s: %w", p, string(d), err)}
}
