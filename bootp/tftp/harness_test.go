package tftp

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestServeHarness is a helper, not a check: when TFTP_HARNESS_ROOT and TFTP_HARNESS_LISTEN are
// set, the test binary serves that directory until SIGTERM. TestNetnsAtftp runs it inside a
// network namespace (transfer sockets are opened in the namespace of the serving process), and
// bench/tftp.sh --harness measures this Server without the rest of the registry.
func TestServeHarness(t *testing.T) {
	root, listen := os.Getenv("TFTP_HARNESS_ROOT"), os.Getenv("TFTP_HARNESS_LISTEN")
	if root == "" || listen == "" {
		t.Skip("helper for TestNetnsAtftp and bench/tftp.sh; serves only with TFTP_HARNESS_ROOT and TFTP_HARNESS_LISTEN set")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pc, err := ListenPacket(ctx, "udp4", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := &Server{Handler: Dir(root), Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := s.Serve(ctx, pc); err != nil {
		t.Fatal(err)
	}
}
