package registry_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
)

// needRoot skips t unless it runs as root with tools on PATH. CI installs
// every tool (make deps), so there a missing one fails the test instead of
// hiding it behind a skip.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	if miss := testbed.Missing(tools...); len(miss) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing %v (make deps)", miss)
		}
		t.Skipf("needs %v (make deps)", miss)
	}
}

// registryBinary is $LIVEBOOTP_BINARY when set (the bench scripts measure
// the binary they were given), else one built from this tree.
func registryBinary(t *testing.T) (repo, bin string) {
	t.Helper()
	wd, _ := os.Getwd()
	repo, err := testbed.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if b := os.Getenv("LIVEBOOTP_BINARY"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return repo, abs
	}
	return repo, buildBinary(t, repo)
}

// fleet is a registry serving n generated hosts from a namespace of its own:
// what the storm, memory, reload and traversal tests share. Host i has MAC
// fleetMAC(i), address f.addr(i) and boots the image fleetImage, whose
// files the caller puts under Dir/images/fleetImage.
type fleet struct {
	*testbed.Scenario
	n int
}

const fleetImage = "storm/1"

func fleetMAC(i int) string {
	return fmt.Sprintf("02:4c:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}

// addr is host i's fixed address: from the 10th address of the server's
// network on, clear of the server itself.
func (f *fleet) addr(i int) netip.Addr {
	a := f.Server.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(10 + i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// newFleet sets up a fleet of n hosts under a fresh temp dir: the
// namespace, the directories and the config, which testbed writes with
// host 0 and to which the others are added; start runs the registry.
func newFleet(t *testing.T, bin, tag string, server netip.Prefix, n int) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{Scenario: &testbed.Scenario{Dir: dir, Binary: bin, NetName: testbed.Uniq(tag), Server: server,
		ImagesDir: filepath.Join(dir, "images"), Image: fleetImage, HostName: fleetName(0), MAC: fleetMAC(0)}, n: n}
	f.HostIP = f.addr(0)
	if err := os.MkdirAll(filepath.Join(f.ImagesDir, fleetImage), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	if err := f.Setup(); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.OpenFile(f.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(cfg)
	for i := 1; i < n; i++ {
		// As testbed writes host 0, cmdline-append included, so that an
		// edit can change every host alike.
		fmt.Fprintf(w, "  %s:\n    hardware-ethernet: \"%s\"\n    fixed-address: \"%s\"\n    image-name: %s\n    ssh-authorized-keys: default\n    cmdline-append: \"\"\n",
			fleetName(i), fleetMAC(i), f.addr(i), fleetImage)
	}
	if err := errors.Join(w.Flush(), cfg.Close()); err != nil {
		t.Fatal(err)
	}
	return f
}

func fleetName(i int) string { return fmt.Sprintf("h%06d", i) }

func (f *fleet) start(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := f.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
}

// pid is the registry's own PID: the one process in the fleet's namespace
// running the binary (nginx may share the namespace in the storm).
func (f *fleet) pid(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", f.Net.Name).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", f.Net.Name, err)
	}
	for _, field := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(field)
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == f.Binary {
			return pid
		}
	}
	t.Fatalf("no process runs %s in namespace %s (pids %q)", f.Binary, f.Net.Name, out)
	return 0
}

// memory is a process's resident set now and at its peak, in bytes, from
// /proc/PID/status (VmRSS, VmHWM).
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, l, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// TestRegistryRSS loads 10k and 100k hosts into the real binary and reads
// its resident memory once it serves, idle. The ceilings are generous: they
// catch a regression (a per-host copy of something large), not noise.
func TestRegistryRSS(t *testing.T) {
	needRoot(t, "ip")
	_, bin := registryBinary(t)
	for _, c := range []struct {
		hosts   int
		ceiling int64
	}{{10_000, 100 << 20}, {100_000, 300 << 20}} {
		t.Run(strconv.Itoa(c.hosts), func(t *testing.T) {
			f := newFleet(t, bin, "rss", netip.MustParsePrefix("10.88.0.1/14"), c.hosts)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			f.start(t, ctx)
			st, err := f.Client().Status()
			if err != nil || st.Hosts != c.hosts {
				t.Fatalf("status: %d hosts, %v; want %d", st.Hosts, err, c.hosts)
			}
			time.Sleep(time.Second) // idle, as it would sit between boots
			rss, hwm, err := memory(f.pid(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rss: %d hosts idle: VmRSS %.1f MiB, VmHWM %.1f MiB", c.hosts, mib(rss), mib(hwm))
			if hwm > c.ceiling {
				t.Errorf("%d hosts: peak resident memory %.1f MiB, ceiling %.0f MiB", c.hosts, mib(hwm), mib(c.ceiling))
			}
		})
	}
}

// stormFiles are what every client fetches: the loader over TFTP, the
// image's files over HTTP. Sizes follow a small real image.
var stormFiles = []struct {
	name string
	size int
}{
	{"undionly.kpxe", 100 << 10},
	{"vmlinuz", 8 << 20},
	{"initrd.img", 16 << 20},
	{"filesystem.squashfs", 64 << 20},
}

// writeStormFiles writes pseudo-random content (fixed seed) for each of
// stormFiles and returns their sha256 by name.
func writeStormFiles(t *testing.T, f *fleet) map[string]string {
	t.Helper()
	sums := map[string]string{}
	rng := rand.NewChaCha8([32]byte{'s', 't', 'o', 'r', 'm'})
	for _, sf := range stormFiles {
		data := make([]byte, sf.size)
		rng.Read(data)
		dir := filepath.Join(f.Dir, "images", fleetImage)
		if sf.name == "undionly.kpxe" {
			dir = filepath.Join(f.Dir, "tftpboot")
		}
		if err := os.WriteFile(filepath.Join(dir, sf.name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		sums[sf.name] = hex.EncodeToString(sum[:])
	}
	return sums
}

// stormStep is one line of storm-client.sh: a step that worked, with when.
type stormStep struct {
	name       string
	start, end time.Time
	detail     string
}

// clientResult is what one client did, or why it failed.
type clientResult struct {
	steps []stormStep
	err   error
}

func parseClient(out []byte) clientResult {
	var r clientResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "FAIL":
			r.err = fmt.Errorf("%s", strings.Join(f[1:], " "))
		case len(f) == 5 && f[0] == "OK":
			us0, err0 := strconv.ParseInt(f[2], 10, 64)
			us1, err1 := strconv.ParseInt(f[3], 10, 64)
			if err0 != nil || err1 != nil {
				r.err = fmt.Errorf("bad line %q", sc.Text())
				continue
			}
			r.steps = append(r.steps, stormStep{f[1], time.UnixMicro(us0), time.UnixMicro(us1), f[4]})
		}
	}
	return r
}

// storm runs storm-client.sh in every client namespace at once and returns
// each one's result. Each client is bounded by ctx and by the script's own
// per-step time-outs.
func storm(ctx context.Context, script string, clients []*testbed.Net, dirs []string, mode, base string, server netip.Addr) []clientResult {
	res := make([]clientResult, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := c.Command(ctx, "bash", script, mode, server.String(), base, fleetImage, dirs[i])
			// On a time-out the whole client goes, curl and udhcpc too:
			// the script is a process group of its own (ip netns exec
			// execs bash, so the group is bash's PID).
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			res[i] = parseClient(out)
			if err != nil && res[i].err == nil {
				res[i].err = fmt.Errorf("%v: %s", err, testbed.Tail(string(out), 3))
			}
		}()
	}
	wg.Wait()
	return res
}

// check compares each client's steps with what it must have got; it
// returns the number of failed clients and logs the first few.
func check(t *testing.T, f *fleet, res []clientResult, want []string, sums map[string]string) int {
	t.Helper()
	failed := 0
	for i, r := range res {
		err := r.err
		if err == nil {
			var got []string
			for _, s := range r.steps {
				got = append(got, s.name)
				exp := sums[s.name]
				if s.name == "dhcp" {
					exp = f.addr(i).String()
				} else if s.name == "tftp" {
					exp = sums["undionly.kpxe"]
				}
				if s.detail != exp && err == nil {
					err = fmt.Errorf("%s: got %s, want %s", s.name, s.detail, exp)
				}
			}
			if err == nil && !slices.Equal(got, want) {
				err = fmt.Errorf("steps %v, want %v", got, want)
			}
		}
		if err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("client %d (%s): %v; what the registry logged of it:\n%s", i, fleetMAC(i), err, grepLines(f.RegistryLogText(), 8, fleetMAC(i), f.addr(i).String()+":"))
			}
		}
	}
	return failed
}

// grepLines is the last n lines of text that hold any of the words.
func grepLines(text string, n int, words ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return testbed.Tail(strings.Join(out, "\n"), n)
}

// span is the time from the first start to the last end of the named
// steps (all steps when names is empty) over every client.
func span(res []clientResult, names ...string) (first, last time.Time) {
	for _, r := range res {
		for _, s := range r.steps {
			if len(names) > 0 && !slices.Contains(names, s.name) {
				continue
			}
			if first.IsZero() || s.start.Before(first) {
				first = s.start
			}
			if s.end.After(last) {
				last = s.end
			}
		}
	}
	return first, last
}

// durations of the named step over every client, sorted.
func durations(res []clientResult, name string) []time.Duration {
	var d []time.Duration
	for _, r := range res {
		for _, s := range r.steps {
			if s.name == name {
				d = append(d, s.end.Sub(s.start))
			}
		}
	}
	slices.Sort(d)
	return d
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

var httpSteps = []string{"vmlinuz", "initrd.img", "filesystem.squashfs"}

// imageBytes is what one client fetches over HTTP.
func imageBytes() int64 {
	var n int64
	for _, sf := range stormFiles[1:] {
		n += int64(sf.size)
	}
	return n
}

// httpRate is the aggregate HTTP throughput in MiB/s: every byte the
// clients fetched over the time from the first request to the last byte.
func httpRate(res []clientResult) (float64, time.Duration) {
	first, last := span(res, httpSteps...)
	d := last.Sub(first)
	return mib(imageBytes()*int64(len(res))) / d.Seconds(), d
}

// backlogDrops is how many packets the kernel dropped because a CPU's
// input backlog was full (net.core.netdev_max_backlog), summed over CPUs
// (/proc/net/softnet_stat, second column): veth delivers through that
// backlog, so a flood on one pair can drop packets on another.
func backlogDrops() int64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			v, _ := strconv.ParseInt(f[1], 16, 64)
			n += v
		}
	}
	return n
}

// memWatch samples the registry's resident memory until stop is closed and
// returns the largest VmRSS seen.
func memWatch(pid int, stop <-chan struct{}) <-chan int64 {
	peak := make(chan int64, 1)
	go func() {
		var top int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, _, err := memory(pid); err == nil && rss > top {
				top = rss
			}
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
			}
		}
	}()
	return peak
}

// addClients creates n client namespaces on the fleet's bridge, client i
// with MAC fleetMAC(i), several at a time (each takes a handful of `ip`
// calls); they are deleted when the test ends.
func addClients(t *testing.T, f *fleet, tag string, n int) []*testbed.Net {
	t.Helper()
	clients := make([]*testbed.Net, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], errs[i] = f.Net.AddPeer(testbed.Uniq(tag)+"c"+strconv.Itoa(i), fleetMAC(i))
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c == nil {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); c.Close() }()
		}
		wg.Wait()
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	return clients
}

// TestBootStorm boots 100 simulated machines at once from the real binary:
// each in a namespace of its own on the registry's bridge, with its own MAC
// in the config, gets its lease (udhcpc), its loader over TFTP (atftp) and
// kernel, initrd and a 64 MiB squashfs over HTTP (curl). Every client must
// get its own address and every file intact; the registry's memory stays
// under a ceiling. It logs the set-up time, the storm's wall time, the
// aggregate HTTP throughput and the registry's peak memory.
//
// Long (a minute or so), so behind LIVEBOOTP_STORM=1, which CI sets.
// LIVEBOOTP_STORM_NGINX=N (bench/storm.sh) then has the same clients fetch
// the same files N times from the registry's HTTP server alone and from
// nginx alone, alternating, for the ratio. LIVEBOOTP_STORM_CLIENTS
// changes the number of clients.
func TestBootStorm(t *testing.T) {
	if os.Getenv("LIVEBOOTP_STORM") != "1" {
		t.Skip("boot storm: set LIVEBOOTP_STORM=1 (CI does; so does bench/storm.sh)")
	}
	needRoot(t, "ip", "busybox", "atftp", "curl", "sha256sum", "timeout")
	n := 100
	if v := os.Getenv("LIVEBOOTP_STORM_CLIENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 240 {
			t.Fatalf("LIVEBOOTP_STORM_CLIENTS=%q: want 1 to 240", v)
		}
	}
	repo, bin := registryBinary(t)
	script := filepath.Join(repo, "bootp", "registry", "testdata", "storm-client.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	f := newFleet(t, bin, "st", netip.MustParsePrefix("10.86.0.1/24"), n)
	sums := writeStormFiles(t, f)
	f.start(t, ctx)
	t0 := time.Now()
	clients := addClients(t, f, "st", n)
	setup := time.Since(t0)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(f.Dir, "clients", strconv.Itoa(i))
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}

	pid := f.pid(t)
	stop := make(chan struct{})
	peak := memWatch(pid, stop)
	server := f.Server.Addr()
	base := "http://" + server.String() + ":8080"
	drops := backlogDrops()
	res := storm(ctx, script, clients, dirs, "boot", base, server)
	drops = backlogDrops() - drops
	close(stop)
	peakRSS := <-peak
	_, hwm, err := memory(pid)
	if err != nil {
		t.Fatal(err)
	}

	failed := check(t, f, res, append([]string{"dhcp", "tftp"}, httpSteps...), sums)
	first, last := span(res)
	rate, httpWall := httpRate(res)
	dhcp, tftp := durations(res, "dhcp"), durations(res, "tftp")
	t.Logf("storm: %d clients, %d failed; namespaces set up in %.1f s", n, failed, setup.Seconds())
	ms := func(d []time.Duration, q float64) time.Duration { return quantile(d, q).Round(time.Millisecond) }
	t.Logf("storm: wall %.1f s (first DHCP discover to last byte); DHCP p50 %v p90 %v max %v; TFTP loader p50 %v p90 %v max %v",
		last.Sub(first).Seconds(), ms(dhcp, .5), ms(dhcp, .9), ms(dhcp, 1), ms(tftp, .5), ms(tftp, .9), ms(tftp, 1))
	t.Logf("storm: HTTP %.0f MiB/s aggregate (%d x %.0f MiB in %.1f s)", rate, n, mib(imageBytes()), httpWall.Seconds())
	t.Logf("storm: registry memory: peak VmRSS sampled %.1f MiB, VmHWM %.1f MiB", mib(peakRSS), mib(hwm))
	t.Logf("storm: packets the kernel dropped meanwhile, input backlog full (machine-wide): %d", drops)
	if failed > 0 {
		t.Fatalf("%d of %d clients failed; registry log:\n%s", failed, n, f.RegistryLogTail(30))
	}
	if hwm > 300<<20 {
		t.Errorf("registry peak memory %.1f MiB during the storm, ceiling 300 MiB", mib(hwm))
	}

	if runs, _ := strconv.Atoi(os.Getenv("LIVEBOOTP_STORM_NGINX")); runs > 0 {
		compareNginx(t, ctx, f, script, clients, dirs, sums, runs)
	}
}

// compareNginx has the clients fetch the image's files from the registry
// alone and from nginx alone (same files, same namespace, sendfile on),
// runs times each, alternating so that other load on the machine falls on
// both, and logs the median aggregate throughput of each and their ratio.
func compareNginx(t *testing.T, ctx context.Context, f *fleet, script string, clients []*testbed.Net, dirs []string, sums map[string]string, runs int) {
	t.Helper()
	needRoot(t, "nginx")
	nginxDir := filepath.Join(f.Dir, "nginx")
	if err := os.MkdirAll(nginxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	server := f.Server.Addr()
	conf := fmt.Sprintf(`# written by storm_test.go: nginx serving the registry's images directory
daemon off;
user root; # t.TempDir is 0700
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path %[1]s/tmp-body;
	proxy_temp_path %[1]s/tmp-proxy;
	fastcgi_temp_path %[1]s/tmp-fastcgi;
	uwsgi_temp_path %[1]s/tmp-uwsgi;
	scgi_temp_path %[1]s/tmp-scgi;
	server { listen %[2]s:8081; root %[3]s; }
}
`, nginxDir, server, f.Dir)
	if err := os.WriteFile(filepath.Join(nginxDir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := f.Net.Command(context.Background(), "nginx", "-p", nginxDir, "-c", filepath.Join(nginxDir, "nginx.conf"), "-e", filepath.Join(nginxDir, "error.log"))
	var nlog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &nlog, &nlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		// SIGTERM: nginx's master stops its workers; a SIGKILL would leave
		// them running in the namespace.
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("nginx (pid %d) did not stop in 10 s", cmd.Process.Pid)
		}
	}()
	nginxBase := "http://" + server.String() + ":8081"
	for i := 0; ; i++ {
		if exec.CommandContext(ctx, "ip", "netns", "exec", clients[0].Name, "curl", "-sf", "-o", "/dev/null", "-r", "0-0", nginxBase+"/images/"+fleetImage+"/vmlinuz").Run() == nil {
			break
		}
		if i == 50 {
			t.Fatalf("nginx does not answer at %s; its log:\n%s", nginxBase, nlog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	bases := map[string]string{"livebootp": "http://" + server.String() + ":8080", "nginx": nginxBase}
	rates := map[string][]float64{}
	for range runs {
		for _, name := range []string{"livebootp", "nginx"} {
			res := storm(ctx, script, clients, dirs, "http", bases[name], server)
			if failed := check(t, f, res, httpSteps, sums); failed > 0 {
				t.Fatalf("%s: %d clients failed", name, failed)
			}
			rate, _ := httpRate(res)
			rates[name] = append(rates[name], rate)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[(len(s)-1)/2] }
	for _, name := range []string{"livebootp", "nginx"} {
		t.Logf("storm-http: %-9s %d clients x %.0f MiB at once: median %.0f MiB/s (runs %.0f)", name, len(clients), mib(imageBytes()), med(rates[name]), rates[name])
	}
	t.Logf("storm-http: ratio livebootp/nginx %.2f", med(rates["livebootp"])/med(rates["nginx"]))
}
