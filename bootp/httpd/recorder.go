package httpd

import (
	"io"
	"net"
	"net/http"
	"time"
)

// stallChunk is how much of a download must go out within one StallTimeout:
// 4 MiB in 30 s allows links down to ~1 Mbit/s.
const stallChunk = 4 << 20

// recorder notes the status and counts the bytes of a response for the
// access log, the metrics and the tracker.
//
// It implements io.ReaderFrom on purpose: http.ServeContent copies a file
// with io.CopyN, and only if the writer it gets is an io.ReaderFrom does the
// copy reach net.TCPConn.ReadFrom and sendfile(2). A plain wrapper (or a
// counting reader around the file) silently falls back to a 32 KiB
// read/write loop, several times slower.
type recorder struct {
	http.ResponseWriter
	rc     *http.ResponseController // of the wrapped writer, for deadlines
	conn   net.Conn                 // the client's connection; nil outside NewServer's servers
	status int
	wrote  bool
	bytes  int64

	// stall, when set, makes ReadFrom send in pieces of chunk bytes and push
	// the write deadline forward before each: a download that progresses
	// never times out, one that stalls does.
	stall time.Duration
	chunk int64
}

// newRecorder wraps w, the writer for req.
func newRecorder(w http.ResponseWriter, req *http.Request) *recorder {
	rec := &recorder{ResponseWriter: w, rc: http.NewResponseController(w), status: http.StatusOK}
	rec.conn, _ = req.Context().Value(connKey{}).(net.Conn)
	return rec
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, code >= 200 // 1xx are interim
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (Flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ReadFrom hands src to the wrapped writer's ReadFrom so sendfile stays in
// use; see the type's comment.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wrote = true
	// Cork the socket while the body goes out, as nginx's tcp_nopush does.
	// Go turns TCP_NODELAY on, and with it the kernel sends each piece
	// sendfile appends to an otherwise empty send queue at once: on a
	// fast link many part-filled packets instead of full 64 KiB ones
	// (bench/http.sh, one client over veth: ~40% more packets, ~35% more
	// ACKs, 0.6-0.7x nginx's throughput; corked: 0.92-1.00x).
	// Uncorking at the end sends the tail at once.
	if tc, ok := r.conn.(*net.TCPConn); ok {
		if setCork(tc, true) {
			defer setCork(tc, false)
		}
	}
	rf, ok := r.ResponseWriter.(io.ReaderFrom)
	if !ok {
		n, err := io.Copy(writerOnly{r.ResponseWriter}, src)
		r.bytes += n
		return n, err
	}
	if r.stall <= 0 {
		n, err := rf.ReadFrom(src)
		r.bytes += n
		return n, err
	}
	// ServeContent passes an *io.LimitedReader around the *os.File. The
	// chunks must wrap the file itself: net's sendfile path recognises one
	// LimitedReader around an *os.File, not a LimitedReader of a
	// LimitedReader.
	inner, lr := src, (*io.LimitedReader)(nil)
	if l, ok := src.(*io.LimitedReader); ok {
		inner, lr = l.R, l
	}
	var total int64
	for {
		chunk := r.chunk
		if chunk <= 0 {
			chunk = stallChunk
		}
		if lr != nil {
			chunk = min(chunk, lr.N)
		}
		if chunk <= 0 {
			return total, nil
		}
		_ = r.rc.SetWriteDeadline(time.Now().Add(r.stall)) // unsupported under httptest only
		n, err := rf.ReadFrom(&io.LimitedReader{R: inner, N: chunk})
		total += n
		r.bytes += n
		if lr != nil {
			lr.N -= n
		}
		if err != nil || n < chunk {
			return total, err
		}
	}
}

// writerOnly hides every method but Write, so io.Copy cannot loop back into
// recorder.ReadFrom.
type writerOnly struct{ io.Writer }
