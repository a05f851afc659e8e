// Package fetch downloads the image's squashfs (and small files: the
// manifest, authorized_keys) over HTTP(S) for the init helper: bounded
// retries, resume with Range requests, a stall timeout, sha256 verified while
// the bytes arrive, and a rate-limited progress callback for the console.
//
// It must never keep a file whose checksum does not match, nor retry
// forever: every loop here is bounded in attempts and time.
package fetch

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// NewClient is the HTTP client the init uses for everything: bounded dial
// and header timeouts (no overall timeout: a large squashfs over a slow link
// may legitimately take minutes; stalls are caught by Options.Stall).
// insecure accepts HTTPS certificates that do not verify (livebootp.insecure).
func NewClient(insecure bool) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil, // the initrd has no proxy settings, and the registry is local
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConnsPerHost:   2,
		DisableCompression:    true, // squashfs is compressed already; keep Range offsets honest
	}
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec: the operator asked for it (livebootp.insecure)
	}
	return &http.Client{Transport: tr}
}

// Progress is the state of a download, handed to Options.Progress.
type Progress struct {
	Done    int64 // bytes received so far (including resumed bytes)
	Total   int64 // expected size, 0 when unknown
	Elapsed time.Duration
	Final   bool // the download completed
}

// String renders a console line such as "45% 120.3/267.0 MB 38.2 MB/s".
func (p Progress) String() string {
	rate := 0.0
	if p.Elapsed > 0 {
		rate = float64(p.Done) / 1e6 / p.Elapsed.Seconds()
	}
	if p.Total > 0 {
		return fmt.Sprintf("%d%% %.1f/%.1f MB %.1f MB/s", p.Done*100/p.Total, float64(p.Done)/1e6, float64(p.Total)/1e6, rate)
	}
	return fmt.Sprintf("%.1f MB %.1f MB/s", float64(p.Done)/1e6, rate)
}

// Options tune File. Zero values take the defaults in brackets.
type Options struct {
	Client   *http.Client  // [NewClient(false)]
	Attempts int           // requests in total, first one included [8]
	Backoff  time.Duration // wait before the 2nd attempt, doubled each time up to 10 s [1 s]
	Stall    time.Duration // give up on a connection that delivers nothing this long [20 s]
	Size     int64         // expected size when known (manifest), for progress; checked too
	// NoHash skips the sha256 (wantSHA must be ""): the caller verifies
	// the file another way, as dm-verity does block by block when it is
	// read. Hashing is most of what a download costs on a slow CPU.
	NoHash bool
	// Progress is called at most once per Every, and once with Final set.
	Progress func(Progress)
	Every    time.Duration                    // [500 ms]
	Now      func() time.Time                 // [time.Now]
	Sleep    func(time.Duration)              // [time.Sleep]
	Log      func(format string, args ...any) // retries and resumes, for the console [discard]
}

func (o *Options) defaults() {
	if o.Client == nil {
		o.Client = NewClient(false)
	}
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Stall <= 0 {
		o.Stall = 20 * time.Second
	}
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// ChecksumError is a completed download whose sha256 is not the expected one.
// It is never retried: the bytes arrived intact over TCP, so the file on the
// server is not the one the boot script names.
type ChecksumError struct {
	URL       string
	Got, Want string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("squashfs checksum mismatch: got %s want %s; the image on the registry is corrupt or changed: rebuild or re-upload it", e.Got, e.Want)
}

// Hint says where to look, for the init's FAILED line.
func (e *ChecksumError) Hint() string {
	return "sha256sum of " + e.URL + " on the registry against the manifest and the boot script's livebootp.sha256"
}

// HTTPError is a response with an unexpected status.
type HTTPError struct {
	URL    string
	Status int
	Text   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.URL, e.Status, e.Text)
}

// Permanent reports statuses that another attempt will not fix.
func (e *HTTPError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// Result describes a completed download.
type Result struct {
	Size     int64
	SHA256   string // hex
	Attempts int
	Resumes  int    // attempts that continued with a Range request
	Hash     string // the sha256 code that ran: "kernel" (AF_ALG) or "go"
}

// File downloads url into path (created or truncated), verifying wantSHA
// (hex; empty skips verification) as the bytes arrive. On a broken
// connection it asks for the rest with Range (guarded by If-Range so a file
// that changed on the server is fetched again whole). On any error the
// partial file is removed.
func File(ctx context.Context, url, path, wantSHA string, o Options) (res Result, err error) {
	o.defaults()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return res, fmt.Errorf("download %s: %w", url, err)
	}
	defer func() {
		cerr := f.Close()
		if err == nil && cerr != nil {
			err = fmt.Errorf("download %s into %s: %w", url, path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if o.NoHash && wantSHA != "" {
		return res, fmt.Errorf("download %s: a sha256 to check but NoHash set", url)
	}
	var h hash.Hash
	if !o.NoHash {
		var hashName string
		h, hashName = newSHA256()
		if c, ok := h.(io.Closer); ok {
			defer c.Close()
		}
		res.Hash = hashName
	}
	d := &download{url: url, f: f, o: &o, h: h, start: o.Now()}
	d.lastShown = d.start // the first line after Every, not at the first byte
	var last error
	wait := o.Backoff
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		res.Attempts = attempt
		if attempt > 1 {
			o.Log("retrying %s in %s (attempt %d of %d): %v", url, wait, attempt, o.Attempts, last)
			o.Sleep(wait)
			if wait *= 2; wait > 10*time.Second {
				wait = 10 * time.Second
			}
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("download %s: %w", url, err)
		}
		resumed, done, err := d.attempt(ctx)
		if resumed {
			res.Resumes++
		}
		if done {
			break
		}
		last = err
		var he *HTTPError
		var hashErr *hashError
		if (errors.As(err, &he) && he.Permanent()) || errors.As(err, &hashErr) {
			return res, err
		}
		if attempt == o.Attempts {
			return res, fmt.Errorf("download %s: giving up after %d attempts: %w", url, attempt, last)
		}
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("download %s into %s: fsync: %w", url, path, err)
	}
	res.Size = d.done
	if d.h != nil {
		res.SHA256 = hex.EncodeToString(d.h.Sum(nil))
	}
	if o.Progress != nil {
		o.Progress(Progress{Done: d.done, Total: d.total, Elapsed: o.Now().Sub(d.start), Final: true})
	}
	if o.Size > 0 && res.Size != o.Size {
		return res, fmt.Errorf("download %s: got %d bytes, the manifest says %d; the image on the registry changed: rebuild or re-upload it", url, res.Size, o.Size)
	}
	if wantSHA != "" && !strings.EqualFold(res.SHA256, wantSHA) {
		return res, &ChecksumError{URL: url, Got: res.SHA256, Want: strings.ToLower(wantSHA)}
	}
	return res, nil
}

type download struct {
	url       string
	f         *os.File
	o         *Options
	h         hash.Hash
	done      int64
	total     int64
	validator string // ETag or Last-Modified of the first response, for If-Range
	start     time.Time
	lastShown time.Time
}

// attempt performs one request; done means the whole body has arrived.
func (d *download) attempt(parent context.Context) (resumed, done bool, err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return false, false, &HTTPError{URL: d.url, Status: 400, Text: err.Error()}
	}
	ranged := d.done > 0
	if ranged {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.done, 10)+"-")
		if d.validator != "" {
			req.Header.Set("If-Range", d.validator)
		}
	}
	// The stall timer cancels the request when no bytes arrive for a while;
	// each read pushes it back.
	stall := time.AfterFunc(d.o.Stall, cancel)
	defer stall.Stop()
	resp, err := d.o.Client.Do(req)
	if err != nil {
		if parent.Err() == nil && ctx.Err() != nil {
			err = fmt.Errorf("no response for %s", d.o.Stall)
		}
		return false, false, fmt.Errorf("GET %s: %w", d.url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && ranged:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.done {
			// A range we did not ask for: start over rather than splice.
			if err := d.reset(); err != nil {
				return false, false, err
			}
			return false, false, fmt.Errorf("GET %s: unexpected Content-Range %q for offset %d", d.url, resp.Header.Get("Content-Range"), d.done)
		}
		if total > 0 {
			d.total = total
		}
		resumed = true
		d.o.Log("resuming %s at %d bytes", d.url, d.done)
	case resp.StatusCode == http.StatusOK:
		if ranged {
			// The server ignored Range, or If-Range said the file changed.
			if err := d.reset(); err != nil {
				return false, false, err
			}
		}
		if resp.ContentLength > 0 {
			d.total = resp.ContentLength
		}
		d.validator = resp.Header.Get("ETag")
		if d.validator == "" || strings.HasPrefix(d.validator, "W/") {
			d.validator = resp.Header.Get("Last-Modified")
		}
	default:
		return false, false, &HTTPError{URL: d.url, Status: resp.StatusCode, Text: http.StatusText(resp.StatusCode)}
	}
	if d.total == 0 && d.o.Size > 0 {
		d.total = d.o.Size
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(d.o.Stall)
			if _, err := d.f.Write(buf[:n]); err != nil {
				return resumed, false, fmt.Errorf("download %s into %s: %w (is the tmpfs or the disk full?)", d.url, d.f.Name(), err)
			}
			if d.h != nil {
				if _, err := d.h.Write(buf[:n]); err != nil {
					return resumed, false, &hashError{err}
				}
			}
			d.done += int64(n)
			d.progress()
		}
		if rerr == io.EOF {
			if d.total > 0 && d.done < d.total {
				return resumed, false, fmt.Errorf("GET %s: connection closed at %d of %d bytes", d.url, d.done, d.total)
			}
			return resumed, true, nil
		}
		if rerr != nil {
			if parent.Err() == nil && ctx.Err() != nil {
				rerr = fmt.Errorf("no data for %s", d.o.Stall)
			}
			return resumed, false, fmt.Errorf("GET %s at %d bytes: %w", d.url, d.done, rerr)
		}
	}
}

// hashError is a failure of the hash itself (the kernel's, through
// AF_ALG), which another attempt will not fix.
type hashError struct{ err error }

func (e *hashError) Error() string { return "computing the sha256: " + e.err.Error() }
func (e *hashError) Unwrap() error { return e.err }

func (d *download) reset() error {
	if err := d.f.Truncate(0); err != nil {
		return err
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if d.h != nil {
		d.h.Reset()
	}
	d.done, d.total, d.validator = 0, 0, ""
	return nil
}

func (d *download) progress() {
	if d.o.Progress == nil {
		return
	}
	now := d.o.Now()
	if now.Sub(d.lastShown) < d.o.Every {
		return
	}
	d.lastShown = now
	d.o.Progress(Progress{Done: d.done, Total: d.total, Elapsed: now.Sub(d.start)})
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func contentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// Get fetches a small resource (manifest, authorized_keys) into memory, at
// most max bytes, with a few quick retries. A 404 is returned at once as
// *HTTPError so callers can tell "unknown here" from "unreachable".
func Get(ctx context.Context, client *http.Client, url string, max int64, attempts int) ([]byte, error) {
	if attempts <= 0 {
		attempts = 3
	}
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(i) * 500 * time.Millisecond):
			}
		}
		b, err := getOnce(ctx, client, url, max)
		if err == nil {
			return b, nil
		}
		last = err
		var he *HTTPError
		if errors.As(err, &he) && he.Permanent() {
			return nil, err
		}
	}
	return nil, last
}

func getOnce(ctx context.Context, client *http.Client, url string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &HTTPError{URL: url, Status: 400, Text: err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{URL: url, Status: resp.StatusCode, Text: http.StatusText(resp.StatusCode)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, max)
	}
	return b, nil
}

// Verify hashes an existing file and compares it with wantSHA (hex).
func Verify(path, wantSHA string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, _ := newSHA256()
	if c, ok := h.(io.Closer); ok {
		defer c.Close()
	}
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, wantSHA) {
		return &ChecksumError{URL: path, Got: got, Want: strings.ToLower(wantSHA)}
	}
	return nil
}
