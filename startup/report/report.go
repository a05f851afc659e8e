// Package report sends the init helper's boot report (wire.Report: steps,
// timings, warnings, host key fingerprints, uptime) to the registry, which
// shows it per host.
//
// It must never delay the boot for long: one POST with a short timeout and
// one retry; a registry that does not answer costs a warning, not a boot
// (livebootp-init then has a child process send it again after
// switch_root).
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/wire"
)

// URL is where the report for mac goes: {registry}/api/v1/report/<mac>, the
// MAC lower case and colon separated.
func URL(registry, mac string) string {
	return strings.TrimRight(registry, "/") + wire.PathReport + strings.ToLower(mac)
}

// Send POSTs r as JSON. It tries twice, each attempt bounded by 5 s.
func Send(ctx context.Context, client *http.Client, registry, mac string, r wire.Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("boot report: %w", err)
	}
	url := URL(registry, mac)
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		if last = post(ctx, client, url, body); last == nil {
			return nil
		}
	}
	return last
}

func post(ctx context.Context, client *http.Client, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("boot report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("boot report to %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("boot report to %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Uptime is the time since the kernel started (CLOCK_BOOTTIME), what the
// report's Uptime carries; it needs no /proc.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
