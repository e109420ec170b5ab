package reap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func pidfdOpen(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	return fd, nil
}

func pidfdKill(fd int) error {
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	return nil
}

func closeFD(fd int) {
	_ = unix.Close(fd) // a pidfd of our own; closing it cannot lose anything
}
