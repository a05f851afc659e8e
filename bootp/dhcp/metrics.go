package dhcp

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts requests by kind and result, and I/O errors. A nil
// *Metrics counts nothing.
type Metrics struct {
	packets *prometheus.CounterVec
	errors  *prometheus.CounterVec
}

// NewMetrics creates the DHCP counters and registers them with reg (nil:
// not registered). Registering twice with the same registry reuses the
// counters already there instead of failing, so a handler can be rebuilt.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "livebootp", Subsystem: "dhcp", Name: "requests_total",
			Help: "DHCP and BOOTP requests by kind (DISCOVER, REQUEST, ..., BOOTP) and result (offer, ack, nak, bootreply, unknown-mac, ...).",
		}, []string{"type", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "livebootp", Subsystem: "dhcp", Name: "errors_total",
			Help: "DHCP socket and decoding errors by operation (read, decode, write).",
		}, []string{"op"}),
	}
	if reg != nil {
		m.packets = register(reg, m.packets)
		m.errors = register(reg, m.errors)
	}
	return m
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

func (m *Metrics) count(kind, result string) {
	if m != nil {
		m.packets.WithLabelValues(kind, result).Inc()
	}
}

func (m *Metrics) fail(op string) {
	if m != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}
