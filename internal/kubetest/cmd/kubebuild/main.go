// Command kubebuild builds the etcd and kube-apiserver binaries that
// internal/kubetest runs, so CI can pay for the cold build (about 11 minutes)
// before the tests start rather than inside a test's timeout.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podid/podid/internal/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	etcd, apiserver, err := kubetest.Build(ctx, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("etcd: %s\nkube-apiserver: %s\n", etcd, apiserver)
}
