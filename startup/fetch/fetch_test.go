package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func payload(n int) ([]byte, string) {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// server serves content like nginx does (Range, If-Range via ETag) and lets
// a test break the first responses after cut bytes.
type server struct {
	mu      sync.Mutex
	content []byte
	etag    string
	cuts    []int // per request: abort after this many body bytes (-1: serve all)
	stall   bool  // first request: send cut bytes then hang until the client gives up
	ranges  []string
	ifRange []string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.ranges)
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.ifRange = append(s.ifRange, r.Header.Get("If-Range"))
	content, etag := s.content, s.etag
	cut := -1
	if n < len(s.cuts) {
		cut = s.cuts[n]
	}
	stall := s.stall && n == 0
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	if cut < 0 {
		http.ServeContent(w, r, "filesystem.squashfs", time.Time{}, bytes.NewReader(content))
		return
	}
	// A broken transfer: honour Range like the real server would, then
	// drop the connection once the body reaches offset cut.
	off := 0
	if rg := r.Header.Get("Range"); rg != "" {
		off, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(off)+"-"+strconv.Itoa(len(content)-1)+"/"+strconv.Itoa(len(content)))
		w.Header().Set("Content-Length", strconv.Itoa(len(content)-off))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
	}
	w.Write(content[off:cut])
	w.(http.Flusher).Flush()
	if stall {
		<-r.Context().Done()
	}
	panic(http.ErrAbortHandler)
}

func quick() Options {
	return Options{Sleep: func(time.Duration) {}, Attempts: 4}
}

func TestFileResumesWithRange(t *testing.T) {
	content, sum := payload(3<<20 + 17)
	s := &server{content: content, etag: `"v1"`, cuts: []int{1 << 20, 2 << 20}}
	ts := httptest.NewServer(s)
	defer ts.Close()
	dst := filepath.Join(t.TempDir(), "filesystem.squashfs")
	var finals int
	o := quick()
	o.Progress = func(p Progress) {
		if p.Final {
			finals++
			if p.Done != int64(len(content)) || p.Total != int64(len(content)) {
				t.Errorf("final progress %+v", p)
			}
		}
	}
	res, err := File(context.Background(), ts.URL+"/filesystem.squashfs", dst, sum, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sum || res.Size != int64(len(content)) || res.Attempts != 3 || res.Resumes != 2 || finals != 1 {
		t.Errorf("result %+v, finals %d", res, finals)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, content) {
		t.Fatal("downloaded content differs")
	}
	want := []string{"", "bytes=1048576-", "bytes=2097152-"}
	if strings.Join(s.ranges, ",") != strings.Join(want, ",") || s.ifRange[1] != `"v1"` {
		t.Errorf("Range headers %q If-Range %q", s.ranges, s.ifRange)
	}
}

// TestFileNoHash: with NoHash (dm-verity checks the blocks later) the
// download still resumes and checks the size, computes no sha256, and
// refuses a sha256 it would not check.
func TestFileNoHash(t *testing.T) {
	content, sum := payload(1<<20 + 5)
	ts := httptest.NewServer(&server{content: content, etag: `"v1"`, cuts: []int{300000}})
	defer ts.Close()
	dst := filepath.Join(t.TempDir(), "f")
	o := quick()
	o.NoHash, o.Size = true, int64(len(content))
	res, err := File(context.Background(), ts.URL+"/f", dst, "", o)
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != "" || res.Hash != "" || res.Resumes != 1 || res.Size != int64(len(content)) {
		t.Errorf("result %+v", res)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) {
		t.Error("downloaded content differs")
	}
	o.Size = int64(len(content)) + 1
	if _, err := File(context.Background(), ts.URL+"/f", dst, "", o); err == nil || !strings.Contains(err.Error(), "the manifest says") {
		t.Errorf("a size mismatch without a hash: %v", err)
	}
	if _, err := File(context.Background(), ts.URL+"/f", dst, sum, o); err == nil {
		t.Error("NoHash with a sha256 to check was accepted")
	}
}

func TestFileRestartsWhenTheFileChanged(t *testing.T) {
	old, _ := payload(100000)
	content, sum := payload(200000)
	s := &server{content: old, etag: `"v1"`, cuts: []int{5000}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			s.mu.Lock()
			s.content, s.etag = content, `"v2"` // replaced on the server after the first response
			s.mu.Unlock()
		}()
		s.ServeHTTP(w, r)
	}))
	defer ts.Close()
	dst := filepath.Join(t.TempDir(), "f")
	res, err := File(context.Background(), ts.URL+"/f", dst, sum, quick())
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sum || res.Resumes != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestFileChecksumMismatch(t *testing.T) {
	content, _ := payload(4096)
	_, other := payload(10)
	ts := httptest.NewServer(&server{content: content, etag: `"x"`})
	defer ts.Close()
	dst := filepath.Join(t.TempDir(), "f")
	res, err := File(context.Background(), ts.URL+"/f", dst, other, quick())
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ChecksumError", err)
	}
	want := "squashfs checksum mismatch: got " + res.SHA256 + " want " + other +
		"; the image on the registry is corrupt or changed: rebuild or re-upload it"
	if err.Error() != want || res.Attempts != 1 {
		t.Errorf("err = %q (attempts %d)\nwant  %q", err, res.Attempts, want)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("mismatching file kept: %v", err)
	}
}

func TestFileNotFoundIsNotRetried(t *testing.T) {
	var n int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		http.NotFound(w, r)
	}))
	defer ts.Close()
	_, err := File(context.Background(), ts.URL+"/nope", filepath.Join(t.TempDir(), "f"), "", quick())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 404 || n != 1 {
		t.Errorf("err = %v after %d requests", err, n)
	}
}

func TestFileGivesUpAfterAttempts(t *testing.T) {
	var n int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	_, err := File(context.Background(), ts.URL+"/f", filepath.Join(t.TempDir(), "f"), "", quick())
	if err == nil || !strings.Contains(err.Error(), "giving up after 4 attempts") || n != 4 {
		t.Errorf("err = %v after %d requests", err, n)
	}
}

func TestFileStallIsRetried(t *testing.T) {
	content, sum := payload(300000)
	s := &server{content: content, etag: `"s"`, cuts: []int{1000}, stall: true}
	ts := httptest.NewServer(s)
	defer ts.Close()
	o := quick()
	o.Stall = 300 * time.Millisecond
	var logs []string
	o.Log = func(f string, a ...any) { logs = append(logs, f) }
	res, err := File(context.Background(), ts.URL+"/f", filepath.Join(t.TempDir(), "f"), sum, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Resumes != 1 {
		t.Errorf("result %+v, logs %q", res, logs)
	}
}

func TestProgressIsRateLimited(t *testing.T) {
	content, sum := payload(8 << 20)
	ts := httptest.NewServer(&server{content: content, etag: `"p"`})
	defer ts.Close()
	// A clock that advances 100 ms per reading: the callback may fire at
	// most every 5 readings.
	var now time.Time
	var calls []Progress
	o := quick()
	o.Now = func() time.Time { now = now.Add(100 * time.Millisecond); return now }
	o.Every = 500 * time.Millisecond
	o.Progress = func(p Progress) { calls = append(calls, p) }
	if _, err := File(context.Background(), ts.URL+"/f", filepath.Join(t.TempDir(), "f"), sum, o); err != nil {
		t.Fatal(err)
	}
	readings := int(now.Sub(time.Time{}) / (100 * time.Millisecond))
	if len(calls) < 2 || len(calls) > readings/5+2 {
		t.Errorf("%d progress calls for %d clock readings", len(calls), readings)
	}
	for i := 1; i < len(calls)-1; i++ {
		if d := calls[i].Elapsed - calls[i-1].Elapsed; d < o.Every {
			t.Errorf("progress calls %d and %d only %s apart", i-1, i, d)
		}
	}
	if s := calls[len(calls)-1].String(); !strings.HasPrefix(s, "100% 8.4/8.4 MB ") || !strings.HasSuffix(s, " MB/s") {
		t.Errorf("final progress line %q", s)
	}
}

func TestGet(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/keys":
			w.Write([]byte("ssh-ed25519 AAAA test\n"))
		case "/big":
			w.Write(make([]byte, 2000))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	c := NewClient(false)
	b, err := Get(context.Background(), c, ts.URL+"/keys", 1000, 2)
	if err != nil || string(b) != "ssh-ed25519 AAAA test\n" {
		t.Errorf("Get = %q, %v", b, err)
	}
	if _, err := Get(context.Background(), c, ts.URL+"/big", 1000, 2); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Get big: %v", err)
	}
	var he *HTTPError
	if _, err := Get(context.Background(), c, ts.URL+"/none", 1000, 2); !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("Get 404: %v", err)
	}
}

func TestInsecure(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	defer ts.Close()
	if _, err := Get(context.Background(), NewClient(false), ts.URL, 10, 1); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("verifying client accepted a self-signed certificate: %v", err)
	}
	if b, err := Get(context.Background(), NewClient(true), ts.URL, 10, 1); err != nil || string(b) != "ok" {
		t.Errorf("insecure client: %q, %v", b, err)
	}
}

func TestVerify(t *testing.T) {
	content, sum := payload(1000)
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, content, 0o644)
	if err := Verify(p, sum); err != nil {
		t.Error(err)
	}
	_, other := payload(1)
	var ce *ChecksumError
	if err := Verify(p, other); !errors.As(err, &ce) || ce.Got != sum {
		t.Errorf("Verify wrong sum: %v", err)
	}
}
