package udprelay

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// lockThreadPrecise pins the goroutine to a thread with a 1 ns timer slack (the default 50 µs
// slack would add up to half the delay we want).
func lockThreadPrecise() (unlock func()) {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		return runtime.UnlockOSThread
	}
	// The thread keeps its slack: let it die with the goroutine instead of returning to the pool.
	return func() {}
}

func preciseSleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
