package registry_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
)

// addClient joins a client namespace with host i's MAC to the fleet's
// bridge and gives it host i's address, as if it had its lease.
func addClient(t *testing.T, f *fleet, tag string, i int) *testbed.Net {
	t.Helper()
	c, err := f.Net.AddPeer(testbed.Uniq(tag), fleetMAC(i))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	bits := f.Server.Bits()
	if out, err := c.Command(context.Background(), "ip", "addr", "add", fmt.Sprintf("%s/%d", f.addr(i), bits), "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add in %s: %v: %s", c.Name, err, out)
	}
	return c
}

// writeAtomic replaces a file the way editors do: write aside, rename.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// perfdhcpStats is what perfdhcp counted for one exchange kind
// ("DISCOVER-OFFER" or "REQUEST-ACK").
type perfdhcpStats struct{ sent, received, drops, orphans int }

var perfdhcpSection = regexp.MustCompile(`^\*\*\*Statistics for: ([A-Z-]+)`)

func parsePerfdhcp(out string) map[string]perfdhcpStats {
	stats := map[string]perfdhcpStats{}
	var kind string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if m := perfdhcpSection.FindStringSubmatch(l); m != nil {
			kind = m[1]
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || kind == "" {
			continue
		}
		n, err := strconv.Atoi(strings.Fields(v + " x")[0])
		if err != nil {
			continue
		}
		s := stats[kind]
		switch k {
		case "sent packets":
			s.sent = n
		case "received packets":
			s.received = n
		case "drops":
			s.drops = n
		case "orphans":
			s.orphans = n // replies that came after perfdhcp gave up on them
		}
		stats[kind] = s
	}
	return stats
}

// TestReloadUnderDHCPLoad edits the configuration of a registry that
// answers a steady 1000 DORA/s from perfdhcp (a relay agent, as in
// bench/dhcp.sh), 1000 hosts: first a broken file, which `livebootp reload`
// refuses with every problem and `livebootp status` reports while the old
// configuration keeps serving, then a good one, picked up from SIGHUP and
// served. No request may be lost: the registry answers every one perfdhcp
// sent. The rate is a tenth of what the registry answers without loss on a
// quiet machine (bench/dhcp.sh), so that the tests go test runs beside this
// one, in parallel, do not make it flaky.
func TestReloadUnderDHCPLoad(t *testing.T) {
	needRoot(t, "ip", "perfdhcp", "curl")
	_, bin := registryBinary(t)
	const hosts, rate, seconds = 1000, 1000, 10
	f := newFleet(t, bin, "rl", netip.MustParsePrefix("10.87.0.1/16"), hosts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.start(t, ctx)
	relay := addClient(t, f, "rlc", hosts) // host index past the configured ones: the relay is no host
	var macs strings.Builder
	for i := range hosts {
		fmt.Fprintln(&macs, fleetMAC(i))
	}
	macFile := filepath.Join(f.Dir, "macs")
	if err := os.WriteFile(macFile, []byte(macs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	srvUDP0, cliUDP0 := udpCounters(t, f.Net), udpCounters(t, relay)
	// perfdhcp gets a head start on other work on the machine: a client
	// that does not read its socket in time loses replies (counted below).
	perf := relay.Command(ctx, "nice", "-n", "-5", "perfdhcp", "-4", "-l", f.addr(hosts).String(), "-r", strconv.Itoa(rate), "-p", strconv.Itoa(seconds),
		"-R", strconv.Itoa(hosts), "-M", macFile, "-d", "2", "-W", "2000000", f.Server.Addr().String())
	var perfOut strings.Builder
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	perf.WaitDelay = 5 * time.Second
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	perfDone := make(chan error, 1)
	go func() { perfDone <- perf.Wait() }()
	cli := func(args ...string) (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		defer ccancel()
		out, err := exec.CommandContext(cctx, bin, append(args, "-socket", f.Socket)...).CombinedOutput()
		return string(out), err
	}

	time.Sleep(3 * time.Second)
	good, err := os.ReadFile(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	// Two mistakes: a misspelt key and an address given twice.
	broken := strings.Replace(string(good), "    image-name: "+fleetImage+"\n", "    image-nmae: "+fleetImage+"\n", 1)
	broken = strings.Replace(broken, `fixed-address: "`+f.addr(1).String()+`"`, `fixed-address: "`+f.addr(0).String()+`"`, 1)
	writeAtomic(t, f.Config, []byte(broken))
	out, err := cli("reload")
	t.Logf("livebootp reload of a broken file under load:\n%s", out)
	if err == nil {
		t.Errorf("reload of a broken file succeeded:\n%s", out)
	}
	for _, want := range []string{f.Config + ":", "image-nmae", f.addr(0).String()} {
		if !strings.Contains(out, want) {
			t.Errorf("reload answer lacks %q", want)
		}
	}
	out, err = cli("status")
	if err != nil || !strings.Contains(out, "last reload FAILED (running configuration kept)") || !strings.Contains(out, fmt.Sprintf("%d hosts", hosts)) {
		t.Errorf("status after the broken reload: %v\n%s", err, out)
	}

	time.Sleep(2 * time.Second)
	st, err := f.Client().Status()
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, f.Config, []byte(strings.ReplaceAll(string(good), `cmdline-append: ""`, `cmdline-append: "reloaded=1"`)))
	if err := f.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		now, err := f.Client().Status()
		if err == nil && now.LastError == "" && now.Loads > st.Loads {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the good file was not loaded 5 s after SIGHUP: %+v %v", now, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := cli("reload"); err != nil || !strings.Contains(out, "reloaded:") {
		t.Errorf("reload of the good file: %v\n%s", err, out)
	}
	script, err := relay.Command(ctx, "curl", "-fsS", "--max-time", "10", fmt.Sprintf("http://%s:8080/boot/%s.ipxe", f.Server.Addr(), fleetMAC(5))).CombinedOutput()
	if err != nil || !strings.Contains(string(script), "reloaded=1") {
		t.Errorf("boot script after the reload: %v\n%s", err, script)
	}

	select {
	case err = <-perfDone:
	case <-ctx.Done():
		t.Fatalf("perfdhcp did not finish: %v", ctx.Err())
	}
	stats := parsePerfdhcp(perfOut.String())
	do, ra := stats["DISCOVER-OFFER"], stats["REQUEST-ACK"]
	t.Logf("perfdhcp at %d/s for %d s, reloads in the middle: DISCOVER %d sent, %d offers, %d drops; REQUEST %d sent, %d acks, %d drops (exit: %v)",
		rate, seconds, do.sent, do.received, do.drops, ra.sent, ra.received, ra.drops, err)
	// perfdhcp exits 3 when "one or more exchanges were unsuccessful";
	// its counts below say which. Anything else is perfdhcp failing.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) {
		t.Fatalf("perfdhcp: %v\n%s", err, perfOut.String())
	}
	if do.sent < rate*seconds*8/10 {
		t.Fatalf("perfdhcp sent %d DISCOVERs, want about %d; output:\n%s", do.sent, rate*seconds, perfOut.String())
	}

	// No request lost by the registry: it answered every DISCOVER and
	// REQUEST perfdhcp sent (its own counters), and its namespace dropped
	// no datagram before the registry read it. A reply perfdhcp reports
	// missing must then be one its own socket dropped (a busy machine
	// starving perfdhcp), which the client namespace counts, or one that
	// came later than perfdhcp's drop time (an orphan).
	metrics, err := relay.Command(ctx, "curl", "-fsS", "--max-time", "10", fmt.Sprintf("http://%s:8080/metrics", f.Server.Addr())).Output()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	offers, acks := metricValue(string(metrics), "DISCOVER", "offer"), metricValue(string(metrics), "REQUEST", "ack")
	srvUDP, cliUDP := udpCounters(t, f.Net), udpCounters(t, relay)
	srvLost := srvUDP["RcvbufErrors"] - srvUDP0["RcvbufErrors"] + srvUDP["InErrors"] - srvUDP0["InErrors"]
	cliLost := cliUDP["RcvbufErrors"] - cliUDP0["RcvbufErrors"]
	t.Logf("registry answered %d DISCOVERs and %d REQUESTs; datagrams dropped by the server's namespace: %d, by perfdhcp's socket: %d", offers, acks, srvLost, cliLost)
	if offers != do.sent || acks != ra.sent || srvLost != 0 {
		t.Errorf("the registry lost requests during the reloads: %d DISCOVERs and %d REQUESTs sent, %d offers and %d acks; %d datagrams dropped before it read them\nperfdhcp output:\n%s",
			do.sent, ra.sent, offers, acks, srvLost, perfOut.String())
	}
	lost, late := do.drops+ra.drops, do.orphans+ra.orphans
	if lost > cliLost+late {
		t.Errorf("perfdhcp reports %d exchanges lost; its socket dropped %d replies and %d came late: %d lost on the way\nperfdhcp output:\n%s",
			lost, cliLost, late, lost-cliLost-late, perfOut.String())
	} else if lost > 0 {
		t.Logf("perfdhcp's %d drops are replies its own socket dropped (%d) or that came late (%d): the machine is busy (load %s)", lost, cliLost, late, loadavg())
	}
}

// udpCounters reads the UDP counters of a namespace (/proc/net/snmp).
func udpCounters(t *testing.T, n *testbed.Net) map[string]int {
	t.Helper()
	out, err := n.Command(context.Background(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("/proc/net/snmp in %s: %v", n.Name, err)
	}
	var names []string
	c := map[string]int{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				c[names[i]], _ = strconv.Atoi(v)
			}
		}
	}
	return c
}

// metricValue is the DHCP request counter for kind and result in
// Prometheus text.
func metricValue(text, kind, result string) int {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "livebootp_dhcp_requests_total{") && strings.Contains(l, `type="`+kind+`"`) && strings.Contains(l, `result="`+result+`"`) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

// traversalEntry is one line of testdata/traversal.txt.
type traversalEntry struct {
	proto, path string
	line        int
}

func readTraversalCorpus(t *testing.T, dir string) []traversalEntry {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "traversal.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []traversalEntry
	for i, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		proto, p, ok := strings.Cut(l, " ")
		if !ok || (proto != "tftp" && proto != "http") {
			t.Fatalf("testdata/traversal.txt:%d: want PROTOCOL PATH, PROTOCOL tftp or http: %q", i+1, l)
		}
		if strings.HasPrefix(p, `"`) {
			if p, err = strconv.Unquote(p); err != nil {
				t.Fatalf("testdata/traversal.txt:%d: %v", i+1, err)
			}
		}
		out = append(out, traversalEntry{proto, strings.ReplaceAll(p, "{dir}", dir), i + 1})
	}
	return out
}

// TestTraversalCorpus asks the real registry for every path of
// testdata/traversal.txt (and a few long ones) from a client namespace,
// over TFTP with atftp and over HTTP with curl, with symlinks inside the
// roots that point out of them and a secret planted next to the roots: the
// secret, the config file and /etc/passwd must never come back. Files
// inside the roots are fetched too, so a client that received nothing at
// all fails the test. The tftp and httpd packages' own tests cover the same
// ground handler by handler; this is the whole binary, end to end.
func TestTraversalCorpus(t *testing.T) {
	needRoot(t, "ip", "atftp", "curl", "timeout")
	_, bin := registryBinary(t)
	f := newFleet(t, bin, "tr", netip.MustParsePrefix("10.89.0.1/24"), 1)
	img := filepath.Join(f.Dir, "images", fleetImage)
	files := map[string]string{
		filepath.Join(f.Dir, "tftpboot", "undionly.kpxe"): "loader inside the root\n",
		filepath.Join(img, "vmlinuz"):                     "kernel inside the root\n",
		filepath.Join(img, "initrd.img"):                  "initrd\n",
		filepath.Join(img, "filesystem.squashfs"):         "squashfs\n",
	}
	const secret = "LIVEBOOTP-TRAVERSAL-SECRET-7f3a91"
	files[filepath.Join(f.Dir, "secret.txt")] = secret + "\n"
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"tftpboot/escape":                  "../secret.txt",
		"tftpboot/abs-escape":              filepath.Join(f.Dir, "secret.txt"),
		"tftpboot/passwd":                  "/etc/passwd",
		"tftpboot/up":                      "..",
		"images/out":                       "..",
		"images/" + fleetImage + "/escape": "../../../secret.txt",
		"keys/escape":                      "../secret.txt",
	} {
		if err := os.Symlink(target, filepath.Join(f.Dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f.start(t, ctx)
	client := addClient(t, f, "trc", 0)
	server := f.Server.Addr().String()
	base := "http://" + server + ":8080"
	got := filepath.Join(t.TempDir(), "got")

	// fetch returns what the client received (nil if nothing) and a short
	// description of the outcome for the log.
	fetch := func(proto, p string) ([]byte, string) {
		os.Remove(got)
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		var cmd *exec.Cmd
		switch {
		case proto == "tftp":
			cmd = client.Command(cctx, "timeout", "15", "atftp", "--tftp-timeout", "1", "-g", "-r", p, "-l", got, server)
		case strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r >= 0x7f }) >= 0:
			// Bytes a URL cannot carry: written raw on a TCP connection
			// (bash's printf %b turns \xHH back into the byte). The
			// server may answer 400 and close after the request line,
			// before the rest is written: SIGPIPE is ignored to read it.
			var esc strings.Builder
			for _, b := range []byte(p) {
				switch {
				case b == '\\':
					esc.WriteString(`\\`)
				case b < 0x20 || b >= 0x7f || b == '%':
					fmt.Fprintf(&esc, `\x%02x`, b)
				default:
					esc.WriteByte(b)
				}
			}
			cmd = client.Command(cctx, "timeout", "15", "bash", "-c",
				`trap '' PIPE; exec 3<>"/dev/tcp/$1/8080" || exit; printf 'GET %b HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n' "$2" >&3 2>/dev/null; cat <&3 >"$3"`,
				"raw", server, esc.String(), got)
		case strings.HasPrefix(p, "http://"):
			cmd = client.Command(cctx, "curl", "-sS", "--max-time", "10", "--request-target", p, "-o", got, "-w", "%{http_code}", base+"/")
		default:
			cmd = client.Command(cctx, "curl", "-sS", "--max-time", "10", "--path-as-is", "-o", got, "-w", "%{http_code}", base+p)
		}
		out, err := cmd.CombinedOutput()
		body, _ := os.ReadFile(got)
		desc := strings.TrimSpace(string(out))
		if err != nil {
			desc += " (" + err.Error() + ")"
		}
		return body, desc
	}

	// The clients work: files inside the roots arrive whole.
	for _, c := range []struct{ proto, path, want string }{
		{"tftp", "undionly.kpxe", "loader inside the root\n"},
		{"tftp", "images/" + fleetImage + "/vmlinuz", "kernel inside the root\n"},
		{"http", "/images/" + fleetImage + "/vmlinuz", "kernel inside the root\n"},
		{"http", "/loaders/undionly.kpxe", "loader inside the root\n"},
		{"http", "/boot/" + fleetMAC(0) + ".keys", "ssh-ed25519 "},
	} {
		if body, desc := fetch(c.proto, c.path); !strings.HasPrefix(string(body), c.want) {
			t.Fatalf("%s %s: got %q (%s), want %q: the client cannot fetch at all", c.proto, c.path, body, desc, c.want)
		}
	}

	corpus := readTraversalCorpus(t, f.Dir)
	for _, long := range []traversalEntry{
		{"tftp", strings.Repeat("../", 150) + "secret.txt", 0},
		{"tftp", "images/" + strings.Repeat("x/../", 95) + "../secret.txt", 0},
		{"http", "/images/" + strings.Repeat("../", 2000) + "secret.txt", 0},
		{"http", "/images/" + strings.Repeat("%2e%2e%2f", 1000) + "secret.txt", 0},
		{"http", "/images/" + strings.Repeat("a", 70000), 0},
	} {
		corpus = append(corpus, long)
	}
	config, _ := os.ReadFile(f.Config)
	leaks := map[string]string{
		"the secret":    secret,
		"/etc/passwd":   "root:x:0:0:",
		"the config":    strings.SplitN(string(config), "\n", 2)[0],
		"a dir listing": "secret.txt</a>",
	}
	for _, e := range corpus {
		body, desc := fetch(e.proto, e.path)
		for what, marker := range leaks {
			if strings.Contains(string(body), marker) {
				t.Errorf("testdata/traversal.txt:%d: %s %q served %s (%s):\n%s", e.line, e.proto, e.path, what, desc, body)
			}
		}
		if testing.Verbose() {
			t.Logf("%s %.80q: %s, %d bytes", e.proto, e.path, desc, len(body))
		}
	}
	t.Logf("%d hostile paths fetched; none served anything outside the roots", len(corpus))
}
