package dhcp

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// counter reads one series from reg; -1 if it is not there.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := newEnv(t, nil)
	env.h.Metrics = NewMetrics(reg)
	env.h.Reply(mustPacket(t, msgType(dhcpv4.MessageTypeDiscover)))
	env.h.Reply(mustPacket(t, msgType(dhcpv4.MessageTypeDiscover)))
	env.h.Reply(mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC)))
	env.h.handle([]byte("not dhcp"), serverAddrPort, false)

	const requests = "livebootp_dhcp_requests_total"
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{requests, map[string]string{"type": "DISCOVER", "result": resultOffer}, 2},
		{requests, map[string]string{"type": "DISCOVER", "result": resultUnknownMAC}, 1},
		{"livebootp_dhcp_errors_total", map[string]string{"op": "decode"}, 1},
	} {
		if got := counter(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// A handler rebuilt on reload registers again with the same registry
	// and keeps counting in the same series.
	env.h.Metrics = NewMetrics(reg)
	env.h.Reply(mustPacket(t, msgType(dhcpv4.MessageTypeDiscover)))
	if got := counter(t, reg, requests, map[string]string{"type": "DISCOVER", "result": resultOffer}); got != 3 {
		t.Errorf("after re-registering: %v offers, want 3", got)
	}
}
