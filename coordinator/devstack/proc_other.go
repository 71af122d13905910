//go:build !linux

package devstack

import "syscall"

// childSysProcAttr has no parent-death signal outside Linux; the child still exits when its
// stdin reaches EOF, which also happens when the parent dies.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
