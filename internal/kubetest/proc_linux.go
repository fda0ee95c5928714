package kubetest

import "syscall"

// sysProcAttr makes the kernel kill etcd and kube-apiserver if the test
// binary dies without running its cleanups (a go test timeout, a kill), so
// they never outlive it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
