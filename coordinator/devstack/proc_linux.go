package devstack

import "syscall"

// childSysProcAttr makes the kernel kill the S3 child if the parent dies without closing the
// child's stdin (SIGKILL of the parent, a crash).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
