package httpd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

func TestBootScript(t *testing.T) {
	f := newFixture(t, 1024)
	want := boot.IPXEScript(f.cfg, f.cfg.Hosts[0])
	for _, mac := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "52:54:00:12:34:56"} {
		resp := f.do(t, "GET", "/boot/"+mac+".ipxe", nil, nil)
		body := readBody(t, resp)
		if resp.StatusCode != 200 || body != want {
			t.Errorf("GET /boot/%s.ipxe: %d %q, want 200 %q", mac, resp.StatusCode, body, want)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want text/plain", ct)
		}
	}
	if h := f.host(t, testMAC); h.Phase != state.PhaseScript || h.LastSeen.IsZero() {
		t.Errorf("after the script: phase %q last seen %v, want %q and a time", h.Phase, h.LastSeen, state.PhaseScript)
	}
}

func TestBootScriptUnknownMAC(t *testing.T) {
	f := newFixture(t, 1024)
	resp := f.do(t, "GET", "/boot/02-00-00-aa-bb-cc.ipxe", nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown MAC: status %d, want 404", resp.StatusCode)
	}
	if !strings.HasPrefix(body, "#!ipxe\necho ") || !strings.Contains(body, "02:00:00:aa:bb:cc is not in the registry's config file") {
		t.Errorf("unknown MAC: body %q, want an iPXE echo naming the MAC and the config file", body)
	}
	if strings.Count(body, "\n") != 2 {
		t.Errorf("unknown MAC: body %q must be exactly two iPXE lines", body)
	}
	h := f.host(t, "02:00:00:aa:bb:cc")
	if !h.Unknown || h.Phase != state.PhaseScript {
		t.Errorf("unknown MAC tracked as %+v, want unknown in phase script", h)
	}

	for target, code := range map[string]int{
		"/boot/not-a-mac.ipxe":      http.StatusBadRequest,
		"/boot/52:54:00:12:34:56":   http.StatusNotFound, // no .ipxe
		"/boot/52:54:00:12:34.ipxe": http.StatusBadRequest,
	} {
		resp := f.do(t, "GET", target, nil, nil)
		body := readBody(t, resp)
		if resp.StatusCode != code || !strings.HasPrefix(body, "#!ipxe\necho livebootp: ") {
			t.Errorf("GET %s: %d %q, want %d and an iPXE echo", target, resp.StatusCode, body, code)
		}
	}
}

func TestImageFile(t *testing.T) {
	f := newFixture(t, 100000)
	path := "/images/" + testImg + "/filesystem.squashfs"
	data := f.files[path]

	resp := f.do(t, "GET", path, nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != 200 || body != string(data) {
		t.Fatalf("GET %s: status %d, %d bytes, want 200 and %d bytes", path, resp.StatusCode, len(body), len(data))
	}
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lastMod == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("missing validators: ETag %q Last-Modified %q Accept-Ranges %q", etag, lastMod, resp.Header.Get("Accept-Ranges"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q, want application/octet-stream", ct)
	}

	tests := []struct {
		name     string
		hdr      map[string]string
		method   string
		code     int
		body     string
		crange   string
		noLength bool
	}{
		{name: "range", hdr: map[string]string{"Range": "bytes=10-19"}, code: 206, body: string(data[10:20]), crange: "bytes 10-19/100000"},
		{name: "suffix range", hdr: map[string]string{"Range": "bytes=-5"}, code: 206, body: string(data[len(data)-5:]), crange: "bytes 99995-99999/100000"},
		{name: "open range", hdr: map[string]string{"Range": "bytes=99990-"}, code: 206, body: string(data[99990:])},
		{name: "unsatisfiable", hdr: map[string]string{"Range": "bytes=200000-"}, code: 416},
		{name: "if-none-match", hdr: map[string]string{"If-None-Match": etag}, code: 304},
		{name: "if-none-match other", hdr: map[string]string{"If-None-Match": `"other"`}, code: 200, body: string(data)},
		{name: "if-modified-since", hdr: map[string]string{"If-Modified-Since": lastMod}, code: 304},
		{name: "if-modified-since old", hdr: map[string]string{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"}, code: 200, body: string(data)},
		{name: "if-range current", hdr: map[string]string{"Range": "bytes=0-3", "If-Range": etag}, code: 206, body: string(data[:4])},
		{name: "if-range stale", hdr: map[string]string{"Range": "bytes=0-3", "If-Range": `"stale"`}, code: 200, body: string(data)},
		{name: "head", method: "HEAD", code: 200, body: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.method
			if m == "" {
				m = "GET"
			}
			resp := f.do(t, m, path, tc.hdr, nil)
			body := readBody(t, resp)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if (tc.code == 200 || tc.code == 206) && body != tc.body {
				t.Errorf("body: %d bytes, want %d", len(body), len(tc.body))
			}
			if tc.crange != "" && resp.Header.Get("Content-Range") != tc.crange {
				t.Errorf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), tc.crange)
			}
			if m == "HEAD" && resp.Header.Get("Content-Length") != "100000" {
				t.Errorf("HEAD Content-Length %q, want 100000", resp.Header.Get("Content-Length"))
			}
		})
	}

	// The ETag follows the file: a rebuilt image must not match the old one.
	p := filepath.Join(f.dir, "images", testImg, "filesystem.squashfs")
	if err := os.WriteFile(p, []byte("rebuilt"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp = f.do(t, "GET", path, map[string]string{"If-None-Match": etag}, nil)
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "rebuilt" {
		t.Errorf("after a rebuild, If-None-Match with the old ETag: %d %q, want 200 and the new content", resp.StatusCode, body)
	}
}

func TestImageTracking(t *testing.T) {
	f := newFixture(t, 5000)
	img := "/images/" + testImg + "/"
	for _, tc := range []struct {
		path, rng string
		phase     string
		bytes     int64
	}{
		{img + "vmlinuz", "", state.PhaseKernel, 0},
		{img + "initrd.img", "", state.PhaseInitrd, 0},
		{img + "filesystem.squashfs", "bytes=0-999", state.PhaseImage, 1000},
		{img + "filesystem.squashfs", "bytes=1000-", state.PhaseImage, 5000},
	} {
		hdr := map[string]string{}
		if tc.rng != "" {
			hdr["Range"] = tc.rng
		}
		resp := f.do(t, "GET", tc.path, hdr, nil)
		readBody(t, resp)
		h := f.host(t, testMAC)
		if h.Phase != tc.phase || h.ImageBytes != tc.bytes {
			t.Errorf("after GET %s %s: phase %q, image bytes %d; want %q, %d", tc.path, tc.rng, h.Phase, h.ImageBytes, tc.phase, tc.bytes)
		}
	}
	h := f.host(t, testMAC)
	if h.Kernel.IsZero() || h.Initrd.IsZero() {
		t.Errorf("kernel %v initrd %v: both fetch times must be set", h.Kernel, h.Initrd)
	}
	// A HEAD, a 304 and a client that is not a configured host change nothing.
	f.do(t, "HEAD", img+"filesystem.squashfs", nil, nil)
	f.do(t, "GET", img+"filesystem.squashfs", map[string]string{"RemoteAddr": "198.51.100.7:4000"}, nil)
	if h2 := f.host(t, testMAC); h2.ImageBytes != 5000 {
		t.Errorf("image bytes %d after HEAD and a foreign client, want still 5000", h2.ImageBytes)
	}
	if h2 := f.host(t, "52:54:00:00:00:02"); h2.Phase != state.PhaseUnseen {
		t.Errorf("other host phase %q, want unseen", h2.Phase)
	}
}

func TestKeysAndLoaders(t *testing.T) {
	f := newFixture(t, 10)
	for _, path := range []string{"/ssh-authorized-keys/default", "/loaders/ipxe.efi"} {
		resp := f.do(t, "GET", path, nil, nil)
		if body := readBody(t, resp); resp.StatusCode != 200 || body != string(f.files[path]) {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, body, f.files[path])
		}
	}
	if h := f.host(t, testMAC); h.Phase != state.PhaseLoader {
		t.Errorf("after /loaders/ipxe.efi phase %q, want loader", h.Phase)
	}
	for _, path := range []string{"/ssh-authorized-keys/missing", "/ssh-authorized-keys/escape", "/loaders/missing.efi", "/loaders/images", "/ssh-authorized-keys/"} {
		resp := f.do(t, "GET", path, nil, nil)
		if body := readBody(t, resp); resp.StatusCode != 404 || strings.Contains(body, secret) {
			t.Errorf("GET %s: %d %q, want 404", path, resp.StatusCode, body)
		}
	}
}

// TestTraversal sends each target byte for byte to a real server, so neither
// a client library nor httptest.NewRequest cleans it first.
func TestTraversal(t *testing.T) {
	f := newFixture(t, 10)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	img := "/images/" + testImg
	corpus := []string{
		"/images/../secret.txt",
		"/images/../../secret.txt",
		img + "/../../../secret.txt",
		img + "/../../../../../../../../etc/passwd",
		"/images/%2e%2e/%2e%2e/secret.txt",
		"/images/%2E%2E/x/secret.txt",
		img + "/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
		img + "/..%2f..%2f..%2fsecret.txt",
		img + "/..%2F..%2F..%2Fsecret.txt",
		"/images/nginx-web-server%2ftest/vmlinuz/x",
		img + "/%2fetc%2fpasswd",
		img + "/..%5c..%5c..%5csecret.txt",
		img + "/..\\..\\..\\secret.txt",
		img + "/vmlinuz%00",
		img + "/escape",                 // symlink out of the root
		"/images/outside/x/secret.txt",  // directory symlink out of the root
		"/images/outside/../secret.txt", // both at once
		"//secret.txt",
		"/images//etc/passwd/x",
		"/images/nginx-web-server/test/", // a directory, not a file
		"/images/nginx-web-server/test/.",
		"/ssh-authorized-keys/..%2fsecret.txt",
		"/ssh-authorized-keys/%2e%2e",
		"/ssh-authorized-keys/escape",
		"/ssh-authorized-keys/%2fetc%2fpasswd",
		"/loaders/..%2fsecret.txt",
		"/loaders/%2e%2e/secret.txt",
		"/loaders/images", // a directory symlink inside the TFTP root
		"/boot/..%2f..%2fsecret.txt.ipxe",
		"http://registry/images/../secret.txt", // absolute-form request target
		"http://registry/images/%2e%2e/secret.txt",
		"/images/" + f.dir + "/secret.txt",
		"/images/" + strings.ReplaceAll(f.dir, "/", "%2f") + "%2fsecret.txt/x/y",
		"/etc/passwd",
	}
	for _, target := range corpus {
		for _, method := range []string{"GET", "HEAD"} {
			code, body := rawRequest(t, addr, method, target)
			if code != http.StatusBadRequest && code != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 400 or 404", method, target, code)
			}
			if strings.Contains(body, secret) || strings.Contains(body, "root:") {
				t.Errorf("%s %s: served a file outside the root: %q", method, target, body)
			}
		}
	}
	// A symlink that stays inside the root is followed.
	if code, body := rawRequest(t, addr, "GET", "/images/nginx-web-server/latest/vmlinuz"); code != 200 || body != "kernel image bytes\n" {
		t.Errorf("symlink inside the root: %d %q, want 200 and the kernel", code, body)
	}
}

func TestHostsAndEvents(t *testing.T) {
	f := newFixture(t, 10)
	readBody(t, f.do(t, "GET", "/boot/"+testMAC+".ipxe", nil, nil))
	resp := f.do(t, "GET", wire.PathHosts, nil, nil)
	var hosts []wire.HostStatus
	if err := json.NewDecoder(resp.Body).Decode(&hosts); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("hosts: %v, Content-Type %q", err, resp.Header.Get("Content-Type"))
	}
	if len(hosts) != 2 || hosts[0].Name != "my-nginx-web-server" || hosts[0].Phase != state.PhaseScript {
		t.Errorf("hosts = %+v, want my-nginx-web-server in phase script first of 2", hosts)
	}
	resp = f.do(t, "GET", "/api/v1/events", nil, nil)
	var events []wire.Event
	if err := json.NewDecoder(resp.Body).Decode(&events); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Kind != "http" || events[0].Host != "my-nginx-web-server" {
		t.Errorf("events = %+v, want one http event of my-nginx-web-server", events)
	}
}

func TestReport(t *testing.T) {
	f := newFixture(t, 10)
	rep := wire.Report{
		Hostname: "my-nginx-web-server", Image: testImg,
		Steps:    []wire.Step{{Name: "network", Duration: 1200 * time.Millisecond}, {Name: "squashfs", Duration: 3 * time.Second}},
		Warnings: []string{"no persistent storage: host keys are new each boot"},
		Uptime:   9 * time.Second,
	}
	good, _ := json.Marshal(rep)
	post := func(mac, from string, body []byte) (int, string) {
		resp := f.do(t, "POST", wire.PathReport+mac, map[string]string{"RemoteAddr": from + ":3333", "Content-Type": "application/json"}, bytes.NewReader(body))
		return resp.StatusCode, readBody(t, resp)
	}

	for _, tc := range []struct {
		name, mac, from string
		body            []byte
		code            int
		msg             string
	}{
		{"bad JSON", testMAC, testAddr, []byte(`{"hostname": "x",`), 400, "bad JSON"},
		{"wrong type", testMAC, testAddr, []byte(`{"steps": "many"}`), 400, "bad JSON"},
		{"two values", testMAC, testAddr, append(good, good...), 400, "more than one JSON value"},
		{"too big", testMAC, testAddr, bytes.Repeat([]byte(" "), MaxReportBytes+10), 413, "larger than"},
		{"unknown MAC", "02:00:00:00:00:09", testAddr, good, 404, "not in the registry's config file"},
		{"bad MAC", "zz", testAddr, good, 400, "not an Ethernet MAC"},
		{"other address", testMAC, "192.0.2.2", good, 403, "must come from its fixed address 192.0.2.1"},
	} {
		code, msg := post(tc.mac, tc.from, tc.body)
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %d %q, want %d and %q", tc.name, code, msg, tc.code, tc.msg)
		}
	}
	if h := f.host(t, testMAC); h.LastReport != nil {
		t.Fatalf("a refused report reached the tracker: %+v", h.LastReport)
	}

	if code, msg := post("52-54-00-12-34-56", testAddr, good); code != http.StatusNoContent {
		t.Fatalf("good report: %d %q, want 204", code, msg)
	}
	h := f.host(t, testMAC)
	if h.Phase != state.PhaseReported || h.LastReport == nil || len(h.LastReport.Steps) != 2 || h.LastReport.Warnings[0] != rep.Warnings[0] {
		t.Errorf("tracker after report: %+v", h)
	}
}

func TestReportProxyDHCPAnyAddress(t *testing.T) {
	f := newFixture(t, 10)
	reg := f.cfg.Registry
	reg.ProxyDHCP = true
	f.cfg.Registry = reg // the fixture's config is private to this test
	resp := f.do(t, "POST", wire.PathReport+testMAC, map[string]string{"RemoteAddr": "10.9.9.9:1000"}, strings.NewReader(`{"hostname":"my-nginx-web-server"}`))
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("proxy-dhcp report from another address: %d %q, want 204", resp.StatusCode, readBody(t, resp))
	}
}

func TestStatusNegotiation(t *testing.T) {
	f := newFixture(t, 10)
	readBody(t, f.do(t, "GET", "/boot/"+testMAC+".ipxe", nil, nil))
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		target, accept string
		json           bool
	}{
		{"/", browser, false},
		{"/", "*/*", false}, // curl
		{"/", "", false},
		{"/", "application/json", true},
		{"/", "application/json, text/plain, */*", true},
		{"/", "text/html;q=0.5, application/json", true},
		{"/", "application/json;q=0.1, text/html", false},
		{"/?format=json", browser, true},
		{"/?format=html", "application/json", false},
	} {
		resp := f.do(t, "GET", tc.target, map[string]string{"Accept": tc.accept}, nil)
		body := readBody(t, resp)
		ct := resp.Header.Get("Content-Type")
		if resp.StatusCode != 200 || resp.Header.Get("Vary") != "Accept" {
			t.Errorf("GET %s Accept %q: %d, Vary %q", tc.target, tc.accept, resp.StatusCode, resp.Header.Get("Vary"))
		}
		if tc.json {
			var st Status
			if err := json.Unmarshal([]byte(body), &st); err != nil || ct != "application/json" {
				t.Errorf("GET %s Accept %q: want JSON, got %s: %v", tc.target, tc.accept, ct, err)
				continue
			}
			if len(st.Hosts) != 2 || st.Config.Hosts != 2 || st.Config.BaseURL != "http://192.0.2.254:8080" || len(st.Events) != 1 {
				t.Errorf("status JSON: %+v", st)
			}
			continue
		}
		if !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s Accept %q: Content-Type %q, want HTML", tc.target, tc.accept, ct)
		}
		for _, want := range []string{"<table", "my-nginx-web-server", "52:54:00:12:34:56", "pill p-script", `http-equiv="refresh"`, "192.0.2.0/24"} {
			if !strings.Contains(body, want) {
				t.Errorf("status page lacks %q", want)
			}
		}
	}
	// Only / is the status page.
	if resp := f.do(t, "GET", "/nothing-here", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET /nothing-here: %d, want 404", resp.StatusCode)
	}
}

func TestStatusPageReport(t *testing.T) {
	f := newFixture(t, 10)
	f.tracker.Report(mustMAC(t, testMAC), &wire.Report{
		Steps:    []wire.Step{{Name: "fetch squashfs", Duration: 2 * time.Second}, {Name: "overlay", Duration: 300 * time.Millisecond, Error: "oops <b>"}},
		Warnings: []string{"disk <sda> not blank"},
	})
	body := readBody(t, f.do(t, "GET", "/", nil, nil))
	for _, want := range []string{"2 steps in 2.3s", "disk &lt;sda&gt; not blank", "oops &lt;b&gt;", "pill p-reported"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<sda>") {
		t.Error("status page does not escape report text")
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, 3000)
	readBody(t, f.do(t, "GET", "/images/"+testImg+"/filesystem.squashfs", nil, nil))
	readBody(t, f.do(t, "GET", "/images/%2e%2e/x/y", nil, nil))
	body := readBody(t, f.do(t, "GET", "/metrics", nil, nil))
	for _, want := range []string{
		`livebootp_http_requests_total{code="200",route="GET /images/{name}/{version}/{file}"} 1`,
		`livebootp_http_requests_total{code="400",route="refused"} 1`,
		`livebootp_http_boot_file_bytes_total{phase="image"} 3000`,
		`livebootp_http_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// fakeSocketWriter stands in for net/http's response, whose ReadFrom hands
// an *io.LimitedReader of an *os.File to sendfile.
type fakeSocketWriter struct {
	httptest.ResponseRecorder
	srcs []io.Reader
}

func (w *fakeSocketWriter) ReadFrom(src io.Reader) (int64, error) {
	w.srcs = append(w.srcs, src)
	return io.Copy(&w.ResponseRecorder, src)
}

// TestRecorderKeepsSendfile checks the property that keeps sendfile: the
// file reaches the real writer's ReadFrom as a LimitedReader of the *os.File
// itself, in chunks that add up to the whole range.
func TestRecorderKeepsSendfile(t *testing.T) {
	f := newFixture(t, 2*stallChunk+100)
	for _, stall := range []time.Duration{0, time.Minute} {
		f.h.StallTimeout = stall
		w := &fakeSocketWriter{ResponseRecorder: *httptest.NewRecorder()}
		r := httptest.NewRequest("GET", "/images/"+testImg+"/filesystem.squashfs", nil)
		r.Header.Set("Range", "bytes=5-")
		f.h.ServeHTTP(w, r)
		want := f.files[r.URL.Path][5:]
		if w.Code != 206 || !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("stall %v: status %d, %d bytes, want 206 and %d bytes", stall, w.Code, w.Body.Len(), len(want))
		}
		if len(w.srcs) == 0 {
			t.Fatalf("stall %v: the file never reached ReadFrom: sendfile is off", stall)
		}
		for _, src := range w.srcs {
			lr, ok := src.(*io.LimitedReader)
			if !ok {
				t.Fatalf("stall %v: ReadFrom got %T, want *io.LimitedReader", stall, src)
			}
			if _, ok := lr.R.(*os.File); !ok {
				t.Fatalf("stall %v: ReadFrom got a LimitedReader of %T, want of *os.File", stall, lr.R)
			}
		}
		if stall > 0 && len(w.srcs) < 3 {
			t.Errorf("stall %v: %d ReadFrom calls for %d bytes, want chunks of %d", stall, len(w.srcs), len(want), stallChunk)
		}
	}
}
