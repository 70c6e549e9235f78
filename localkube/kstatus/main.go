// Command kstatus-check prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the library Flux's
// kustomize-controller waits with, concludes about each Kubernetes object it reads.
//
// Input on stdin: a JSON array of objects.  Output on stdout: a JSON array, one {"status", "message"} per
// object, in order.  Fledge's tests run it against Canaries taken from the local control plane, so what
// Flux concludes mid-release and after a rollback is checked with the real library, not a copy of its rules.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	var objects []map[string]interface{}
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		// apimachinery's decoder keeps whole numbers int64, as the API server's objects hold them.
		err = utiljson.Unmarshal(data, &objects)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-check: stdin is not a JSON array of objects: %v\n", err)
		os.Exit(2)
	}
	out := make([]verdict, 0, len(objects))
	for i, object := range objects {
		result, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-check: object %d: %v\n", i, err)
			os.Exit(1)
		}
		out = append(out, verdict{Status: result.Status.String(), Message: result.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-check: %v\n", err)
		os.Exit(1)
	}
}
