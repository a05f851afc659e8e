package config

import (
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestApplianceValues(t *testing.T) {
	const file = "testdata/good/appliance.yml"
	c, err := Load(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := Appliance{
		Hostname:        "pxe-box",
		ConsolePassword: "$2a$04$nXNiYnbDeRUf6RQSjIAxnuKKcoGV0zYPzc19CL9EAsk8mTV5bCIcu",
		Interfaces: []ApplianceInterface{
			{Name: "eth0", Address: netip.MustParsePrefix("10.0.0.1/24"), Gateway: netip.MustParseAddr("10.0.0.254"), Line: 13},
			{Name: "eth1", DHCP: true, Line: 14},
			{Name: "enp1s0", Address: netip.MustParsePrefix("192.168.1.9/31"), Line: 15},
		},
		Line: 9,
	}
	if !reflect.DeepEqual(c.Appliance, want) {
		t.Errorf("appliance\n got %+v\nwant %+v", c.Appliance, want)
	}
	// The flow mappings the section is usually written with take the
	// fast path too.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fastParse(data); !ok {
		t.Errorf("%s does not take the fast path", file)
	}

	// The same hash with the other version letters Go's bcrypt reads.
	for _, v := range []string{"2a", "2b", "2y"} {
		a := Appliance{ConsolePassword: "$" + v + want.ConsolePassword[3:]}
		if !a.CheckPassword("livebootp") || a.CheckPassword("livebootP") || a.CheckPassword("") {
			t.Errorf("CheckPassword with $%s$ is wrong", v)
		}
		if why := passwordHashProblem(a.ConsolePassword); why != "" {
			t.Errorf("$%s$ hash refused: %s", v, why)
		}
	}
	if !(Appliance{}).CheckPassword("anything") {
		t.Error("without a console-password, CheckPassword refused")
	}
}

// The hash `livebootp appliance passwd` prints (bcrypt.GenerateFromPassword)
// is what the loader accepts, at every cost it may be asked for.
func TestPasswordHashProblem(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 5} {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		if why := passwordHashProblem(string(h)); why != "" {
			t.Errorf("%s: %s", h, why)
		}
	}
	good := "$2a$04$nXNiYnbDeRUf6RQSjIAxnuKKcoGV0zYPzc19CL9EAsk8mTV5bCIcu"
	for _, bad := range []string{
		"hunter2",
		"$2x$04$nXNiYnbDeRUf6RQSjIAxnuKKcoGV0zYPzc19CL9EAsk8mTV5bCIcu",
		"$2a$99$nXNiYnbDeRUf6RQSjIAxnuKKcoGV0zYPzc19CL9EAsk8mTV5bCIcu",
		good[:59],
		good + "x",
		good[:40] + "!" + good[41:],
		"$1$abc$def",
	} {
		if passwordHashProblem(bad) == "" {
			t.Errorf("%q accepted as a bcrypt hash", bad)
		}
	}
}

// A problem with the password never prints the value: it may be the
// password itself, written in clear by mistake.
func TestPasswordNeverPrinted(t *testing.T) {
	yml := "bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\nappliance:\n  console-password: Tr0ub4dor&3\n"
	_, err := Parse("c.yml", []byte(yml), Options{})
	if err == nil || strings.Contains(err.Error(), "Tr0ub4dor") || !strings.Contains(err.Error(), "livebootp appliance passwd") {
		t.Errorf("problem: %v", err)
	}
}

func TestNoApplianceSection(t *testing.T) {
	c, err := Parse("c.yml", []byte("bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\nappliance:\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Appliance, Appliance{Line: 4}) {
		t.Errorf("empty appliance: %+v", c.Appliance)
	}
}

// config-default.yml documents every appliance key with its default, and
// its example interfaces load.
func TestApplianceDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../configs/config-default.yml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("config-default.yml", doc, Options{Detector: &fakeDetector{}, SkipFileChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Appliance; a.Hostname != "livebootp" || a.ConsolePassword != "" || len(a.Interfaces) != 0 || a.Line == 0 {
		t.Errorf("config-default.yml's appliance: %+v", a)
	}
	for _, k := range applianceKeys {
		if !regexp.MustCompile(`(?m)^  ` + k + `:`).Match(doc) {
			t.Errorf("config-default.yml does not document appliance key %q", k)
		}
	}
	var example []string
	for _, m := range regexp.MustCompile(`(?m)^  #   (\S+: \{.*\})$`).FindAllSubmatch(doc, -1) {
		example = append(example, "    "+string(m[1]))
	}
	for _, k := range ifaceKeys {
		if !strings.Contains(strings.Join(example, "\n"), k+": ") {
			t.Errorf("config-default.yml's example interfaces do not show %q", k)
		}
	}
	yml := "bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\nappliance:\n  interfaces:\n" + strings.Join(example, "\n") + "\n"
	if c, err := Parse("example.yml", []byte(yml), Options{}); err != nil || len(c.Appliance.Interfaces) != len(example) {
		t.Errorf("the example interfaces do not load: %v\n%s", err, yml)
	}
}
