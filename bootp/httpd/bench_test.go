package httpd

import (
	"io"
	"net/http"
	"testing"
)

// hideReaderFrom wraps a ResponseWriter the naive way: without ReadFrom,
// which is what turns sendfile off. It exists to measure that cost.
type hideReaderFrom struct{ http.ResponseWriter }

func (w hideReaderFrom) Write(p []byte) (int, error) { return w.ResponseWriter.Write(p) }

// BenchmarkDownload fetches a 64 MiB squashfs over loopback with a real
// client and server: "sendfile" is the handler as shipped, "sendfile-nochunks"
// without the per-chunk write deadlines, "copy" the same handler behind a
// wrapper that hides io.ReaderFrom. Loopback with the client in the same
// process flatters "copy"; across a veth pair (bench/http.sh) the copy path
// costs ~1.7x the server CPU per byte of sendfile.
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	f := newFixture(b, size)
	url := "/images/" + testImg + "/filesystem.squashfs"
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"sendfile", f.h},
		{"sendfile-nochunks", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.h.StallTimeout = 0
			f.h.ServeHTTP(w, r)
			f.h.StallTimeout = DefaultStallTimeout
		})},
		{"copy", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.h.ServeHTTP(hideReaderFrom{w}, r) })},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := serveLoopback(b, tc.h)
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			defer client.CloseIdleConnections()
			b.SetBytes(size)
			for b.Loop() {
				resp, err := client.Get("http://" + addr + url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("got %d bytes, %v; want %d", n, err, size)
				}
			}
		})
	}
}
