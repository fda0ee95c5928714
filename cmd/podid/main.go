// Command podid is EKS Pod Identity and IRSA for any Kubernetes cluster:
// the identity server, the node agent, the admission webhook and the admin
// CLI in one binary.
package main

import (
	"os"

	"github.com/podid/podid/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
