// Package sdnotify speaks systemd's notify protocol (sd_notify(3)): one datagram per
// state change on the unix socket named by $NOTIFY_SOCKET. A unit of Type=notify is
// started once READY=1 arrives, and with WatchdogSec= is restarted when WATCHDOG=1
// stops arriving.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends state ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=...") to the
// service manager. Outside systemd ($NOTIFY_SOCKET unset) it does nothing and returns
// false.
func Notify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return true, nil
}

// WatchdogInterval is how often to send WATCHDOG=1: half of WatchdogSec=, as
// sd_watchdog_enabled(3) advises; zero when no watchdog is asked of this process.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0 // meant for another process of the unit
	}
	return time.Duration(usec) * time.Microsecond / 2
}
