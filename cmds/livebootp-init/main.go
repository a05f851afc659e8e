// Command livebootp-init is the /init of every livebootp target initrd (see
// package startup). It runs as PID 1 only.
package main

import (
	"fmt"
	"os"

	"github.com/livebootp/livebootp/startup"
)

func main() {
	if err := startup.Run(os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "livebootp-init:", err)
		os.Exit(1)
	}
}
