//go:build !linux

package udprelay

import "time"

func lockThreadPrecise() (unlock func()) { return func() {} }

func preciseSleep(d time.Duration) { time.Sleep(d) }
