package scripts

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/startup/cmdline"
	"github.com/livebootp/livebootp/startup/persist"
)

func script(t *testing.T, root, name, body string, mode os.FileMode) {
	t.Helper()
	d := filepath.Join(root, Dir)
	os.MkdirAll(d, 0o755)
	if err := os.WriteFile(filepath.Join(d, name), []byte("#!/bin/sh\n"+body), mode); err != nil {
		t.Fatal(err)
	}
}

func TestRunOrderEnvironmentAndFailures(t *testing.T) {
	root := t.TempDir()
	if err := InstallLibrary(root); err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(root, "trace")
	body := `. "$LIVEBOOTP_FUNCTIONS"; echo "$(basename "$0") $LIVEBOOTP_HOSTNAME" >> ` + trace + "\n"
	script(t, root, "20-second", body, 0o755)
	script(t, root, "10-first", body+"info hello from first\n", 0o755)
	script(t, root, "15-fails", body+"die broken config\n", 0o755)
	script(t, root, "30-disabled", body, 0o644)
	script(t, root, ".hidden", body, 0o755)
	script(t, root, "40-last~", body, 0o755)
	os.Mkdir(filepath.Join(root, Dir, "50-dir"), 0o755)
	script(t, root, "A-upper", body, 0o755) // byte order: upper case before digits? no: '1' < 'A'

	var out bytes.Buffer
	r := Runner{Root: root, Output: &out, Env: []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LIVEBOOTP_HOSTNAME=web1",
		"LIVEBOOTP_FUNCTIONS=" + filepath.Join(root, LibraryPath)}}
	run, skipped, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(run, " "); got != "10-first 15-fails 20-second A-upper" {
		t.Errorf("List = %q", got)
	}
	if got := strings.Join(skipped, "\n"); !strings.Contains(got, "30-disabled: not executable") || !strings.Contains(got, "50-dir: not a regular file") {
		t.Errorf("skipped = %q", got)
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || res[0].Err != nil || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "exit status 1") || res[2].Err != nil {
		t.Errorf("results %+v", res)
	}
	b, _ := os.ReadFile(trace)
	if string(b) != "10-first web1\n15-fails web1\n20-second web1\nA-upper web1\n" {
		t.Errorf("trace:\n%s", b)
	}
	if !strings.Contains(out.String(), "livebootp: INFO: hello from first\n") || !strings.Contains(out.String(), "livebootp: ERROR: broken config\n") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestRunKillsAScriptThatHangs(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, "after")
	script(t, root, "10-hang", "sleep 60 & sleep 60\n", 0o755)
	script(t, root, "20-after", "touch "+marker+"\n", 0o755)
	r := Runner{Root: root, Timeout: 300 * time.Millisecond, Env: []string{"PATH=/usr/bin:/bin"}}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "killed after") || res[1].Err != nil {
		t.Errorf("results %+v", res)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the script after a hung one did not run")
	}
}

// shells are the /bin/sh flavours images come with: dash (Debian) and
// busybox ash.
func shells(t *testing.T) map[string][]string {
	m := map[string][]string{}
	if p, err := exec.LookPath("dash"); err == nil {
		m["dash"] = []string{p}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		m["ash"] = []string{p, "sh"}
	}
	if p, err := exec.LookPath("bash"); err == nil {
		m["bash"] = []string{p, "--posix"}
	}
	if len(m) == 0 {
		t.Skip("needs dash, busybox or bash")
	}
	return m
}

// lib runs body after sourcing the library in each shell and returns the
// output per shell.
func lib(t *testing.T, env []string, body string) map[string]string {
	t.Helper()
	libPath := filepath.Join(t.TempDir(), "functions.sh")
	os.WriteFile(libPath, Library(), 0o644)
	out := map[string]string{}
	for name, sh := range shells(t) {
		cmd := exec.Command(sh[0], append(sh[1:], "-c", `. "$1"; `+body, "sh", libPath)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		b, _ := cmd.CombinedOutput()
		out[name] = string(b)
	}
	return out
}

func TestLibraryCmdlineParam(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cmdline")
	params := cmdline.Split(`debug livebootp.hostname=web1 custom.motd="hello world *" x=1 x=2`)
	if err := WriteCmdline(f, params); err != nil {
		t.Fatal(err)
	}
	for sh, got := range lib(t, []string{"LIVEBOOTP_CMDLINE=" + f}, `
		get_cmdline_param custom.motd; get_cmdline_param x; cmdline_param livebootp.hostname
		get_cmdline_param debug && echo "debug present"
		get_cmdline_param missing || echo "missing absent"`) {
		if want := "hello world *\n2\nweb1\n\ndebug present\nmissing absent\n"; got != want {
			t.Errorf("%s: got %q want %q", sh, got, want)
		}
	}
}

func TestLibraryHelpers(t *testing.T) {
	dir := t.TempDir()
	mounts := filepath.Join(dir, "mounts")
	os.WriteFile(mounts, []byte("proc /proc proc rw 0 0\n/dev/vdb /var/lib/my\\040data ext4 rw 0 0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a"), []byte("same"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("same"), 0o644)
	os.WriteFile(filepath.Join(dir, "c"), []byte("diff"), 0o644)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/keys" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ssh-ed25519 AAAA k\n"))
	}))
	defer ts.Close()
	body := `cd "` + dir + `"
		is_mounted /proc && echo m1; is_mounted /proc/ && echo m2; is_mounted "/var/lib/my data" && echo m3; is_mounted /var || echo m4
		same_content a b && echo s1; same_content a c || echo s2; same_content a nofile || echo s3
		fetch ` + ts.URL + `/keys got && cat got
		echo old > kept; fetch ` + ts.URL + `/nothere kept 2>/dev/null || echo f2; cat kept
		note careful; (die gone; echo not reached); echo "die status $?"`
	for sh, got := range lib(t, []string{"LIVEBOOTP_MOUNTS=" + mounts}, body) {
		want := "m1\nm2\nm3\nm4\ns1\ns2\ns3\nssh-ed25519 AAAA k\nf2\nold\nlivebootp: NOTE: careful\nlivebootp: ERROR: gone\ndie status 1\n"
		if got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", sh, got, want)
		}
	}
}

// The shell library and the init must agree on where a volume lives.
func TestLibraryEscapeMatchesGo(t *testing.T) {
	paths := []string{"/var/www", "/etc/nginx/", "//srv//data", "/a%b/c", "/opt/my-app/data_1"}
	var body strings.Builder
	for _, p := range paths {
		body.WriteString(`_livebootp_escape '` + p + "'; echo\n")
	}
	var want strings.Builder
	for _, p := range paths {
		want.WriteString(persist.Escape(p) + "\n")
	}
	for sh, got := range lib(t, nil, body.String()) {
		if got != want.String() {
			t.Errorf("%s: got %q want %q", sh, got, want.String())
		}
	}
}

// TestLibraryAddPersistentStorage mounts for real: the shell function
// fills the volume by copy the first time and finds it again the next,
// and both spellings work.
func TestLibraryAddPersistentStorage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: bind and overlay mounts")
	}
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			img, data := t.TempDir(), t.TempDir()
			www, conf := filepath.Join(img, "www"), filepath.Join(img, "conf")
			os.MkdirAll(www, 0o755)
			os.WriteFile(filepath.Join(www, "index.html"), []byte("image"), 0o644)
			os.MkdirAll(conf, 0o755)
			os.WriteFile(filepath.Join(conf, "base.conf"), []byte("base"), 0o644)
			libPath := filepath.Join(t.TempDir(), "functions.sh")
			os.WriteFile(libPath, Library(), 0o644)
			run := func(body string) string {
				cmd := exec.Command(sh[0], append(sh[1:], "-c", `. "$1"; `+body, "sh", libPath)...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LIVEBOOTP_PERSISTENT=" + data}
				b, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", body, err, b)
				}
				return string(b)
			}
			umount := func() {
				for _, d := range []string{www, conf} {
					exec.Command("umount", d).Run()
				}
			}
			t.Cleanup(umount)
			run(`add_pertistant_storage "` + www + `" bind copy && add_persistent_storage "` + conf + `" unionfs && is_mounted "` + www + `"`)
			os.WriteFile(filepath.Join(www, "index.html"), []byte("changed"), 0o644)
			os.WriteFile(filepath.Join(conf, "site.conf"), []byte("site"), 0o644)
			if out := run(`add_persistent_storage "` + www + `"`); !strings.Contains(out, "already persistent") {
				t.Errorf("second call while mounted: %q", out)
			}
			umount()
			if b, _ := os.ReadFile(filepath.Join(www, "index.html")); string(b) != "image" {
				t.Errorf("image content under the mount changed: %q", b)
			}
			run(`add_persistent_storage "` + www + `" && add_persistent_storage "` + conf + `" unionfs`)
			if b, _ := os.ReadFile(filepath.Join(www, "index.html")); string(b) != "changed" {
				t.Errorf("bind volume after remount: %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(conf, "site.conf")); string(b) != "site" {
				t.Errorf("unionfs volume after remount: %q", b)
			}
			if _, err := os.Stat(filepath.Join(data, persist.DirVolumes, persist.Escape(www), "index.html")); err != nil {
				t.Errorf("volume not where the init would look: %v", err)
			}
		})
	}
}

func TestLibraryWithoutPersistentStorage(t *testing.T) {
	for sh, got := range lib(t, nil, `add_persistent_storage /var/www; echo "status $?"`) {
		if !strings.Contains(got, "no persistent storage on this boot") || !strings.HasSuffix(got, "status 1\n") {
			t.Errorf("%s: %q", sh, got)
		}
	}
}
