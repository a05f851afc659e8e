package report

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/wire"
)

func TestSend(t *testing.T) {
	var got wire.Report
	var path, ctype string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ctype = r.URL.Path, r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &got); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ts.Close()
	want := wire.Report{
		Hostname: "web1", Image: "nginx/1", Kernel: "6.1.0-56-amd64",
		Steps:    []wire.Step{{Name: "network", Duration: 1500 * time.Millisecond}, {Name: "scripts", Duration: time.Millisecond, Error: "10-x: exit status 1"}},
		Warnings: []string{"scripts: 10-x: exit status 1"}, HostKeys: []string{"ED25519 SHA256:abc"},
		Persistent: "/dev/vdb (ext4, livebootp-data)", SquashfsCached: true, Uptime: 4 * time.Second,
	}
	if err := Send(context.Background(), ts.Client(), ts.URL+"/", "52:54:00:AB:CD:EF", want); err != nil {
		t.Fatal(err)
	}
	if path != "/api/v1/report/52:54:00:ab:cd:ef" || ctype != "application/json" {
		t.Errorf("POST %s (%s)", path, ctype)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("registry got %+v\nwant %+v", got, want)
	}
}

func TestSendErrorNamesTheRegistry(t *testing.T) {
	var n int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		http.Error(w, "unknown host", http.StatusNotFound)
	}))
	defer ts.Close()
	err := Send(context.Background(), ts.Client(), ts.URL, "52:54:00:00:00:01", wire.Report{})
	if err == nil || !strings.Contains(err.Error(), ts.URL+"/api/v1/report/52:54:00:00:00:01: 404") || !strings.Contains(err.Error(), "unknown host") || n != 2 {
		t.Errorf("err = %v after %d attempts", err, n)
	}
}

func TestUptime(t *testing.T) {
	if u := Uptime(); u <= 0 {
		t.Errorf("Uptime = %v", u)
	}
}
