package httpd

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's own Prometheus collectors. Labels are the route
// pattern, never the raw path, so a scan of random URLs cannot grow them.
type metrics struct {
	requests  *prometheus.CounterVec   // route, code
	bytes     *prometheus.CounterVec   // route
	duration  *prometheus.HistogramVec // route
	fileBytes *prometheus.CounterVec   // phase: loader, kernel, initrd, image
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	return &metrics{
		requests: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livebootp_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"})),
		bytes: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livebootp_http_response_bytes_total",
			Help: "HTTP response body bytes by route pattern.",
		}, []string{"route"})),
		duration: register(reg, log, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "livebootp_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60, 300},
		}, []string{"route"})),
		fileBytes: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livebootp_http_boot_file_bytes_total",
			Help: "Bytes of boot files served over HTTP, by boot phase (loader, kernel, initrd, image).",
		}, []string{"phase"})),
	}
}

// register adds c to reg, or returns the collector already there: a second
// Handler on the same registry (a restart in tests) shares the counters.
// Any other conflict leaves c working but unexported, and says so.
func register[C prometheus.Collector](reg prometheus.Registerer, log *slog.Logger, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		log.Warn("http: metric not exported: another collector of that name is registered", "err", err)
	}
	return c
}

func (m *metrics) observe(route string, code int, bytes int64, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.bytes.WithLabelValues(route).Add(float64(bytes))
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
