package main

import (
	"net"
	"os"
)

// sdNotify sends a state ("READY=1", "STOPPING=1", "STATUS=...") to
// systemd through $NOTIFY_SOCKET, as sd_notify(3) does, for a unit with
// Type=notify. Without NOTIFY_SOCKET (not started by systemd) it does
// nothing. An abstract socket is written "@name"; Go's net package maps the
// leading '@' to the NUL byte on Linux. Errors are returned for logging:
// systemd then times the start out, which is what it should do.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
