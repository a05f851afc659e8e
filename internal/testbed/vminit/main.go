// Command vminit is the /init of the test initrd that VM tests and the demo
// boot when they only need to prove the boot chain up to the kernel running
// our code: it prints a marker line and the kernel command line on the
// console, then powers the VM off so qemu exits.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// Marker is the line tests wait for on the serial console.
const Marker = "LIVEBOOTP-VMINIT: init reached"

func main() {
	_ = os.MkdirAll("/proc", 0o755)
	_ = syscall.Mount("proc", "/proc", "proc", 0, "")
	cmdline, _ := os.ReadFile("/proc/cmdline")
	uptime, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("\n%s\nLIVEBOOTP-VMINIT: cmdline: %s\nLIVEBOOTP-VMINIT: uptime: %s\n", Marker,
		strings.TrimSpace(string(cmdline)), strings.Fields(string(uptime) + " ?")[0])
	if strings.Contains(string(cmdline), "vminit.hold") {
		time.Sleep(time.Hour)
	}
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	time.Sleep(time.Minute)
}
