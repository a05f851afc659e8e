package httpd

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzImagesPath feeds request targets to the handler as the server would
// parse them: nothing outside the served roots may ever come back, and
// whatever comes back with 200/206 must be (part of) a file inside them.
func FuzzImagesPath(f *testing.F) {
	for _, s := range []string{
		"/images/nginx-web-server/test/vmlinuz",
		"/images/nginx-web-server/latest/initrd.img",
		"/images/../secret.txt",
		"/images/nginx-web-server/test/..%2f..%2f..%2fsecret.txt",
		"/images/%2e%2e/%2e%2e/secret.txt",
		"/images/outside/x/secret.txt",
		"/images/nginx-web-server/test/escape",
		"/ssh-authorized-keys/escape",
		"/loaders/..%2fsecret.txt",
		"http://registry/images/./../secret.txt",
		"/images/nginx-web-server/test/..\\secret.txt",
	} {
		f.Add(s)
	}
	fx := newFixture(f, 4096)
	f.Fuzz(func(t *testing.T, target string) {
		if strings.ContainsAny(target, " \r\n") {
			return // not one request line
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: registry\r\n\r\n")))
		if err != nil {
			return // the server answers 400 before any handler runs
		}
		req.RemoteAddr = testAddr + ":1234"
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, req)
		body := w.Body.String()
		if strings.Contains(body, secret) {
			t.Fatalf("GET %q served the file outside the root", target)
		}
		if (w.Code == 200 || w.Code == 206) && req.URL.Path != "/" && !strings.HasPrefix(req.URL.Path, "/api/") &&
			!strings.HasPrefix(req.URL.Path, "/boot/") && req.URL.Path != "/metrics" && !fx.servedFromRoot(body) {
			t.Fatalf("GET %q: %d with %d bytes that are no file of the served roots", target, w.Code, len(body))
		}
	})
}
