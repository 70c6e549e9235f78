// Command flux-cel-check evaluates a Kustomization's healthCheckExprs the way Flux's kustomize-controller does,
// with cel-go and the environment Flux builds (github.com/fluxcd/pkg/runtime/cel: optional types, the strings,
// sets and encoders extensions, cross-type numeric comparisons, UTC as the default time zone).
//
// Input on stdin: {"exprs": {"inProgress", "failed", "current"}, "objects": [...]}.  Output on stdout: a JSON
// array, one {"status", "message"} per object, in order.  The rules are Flux's (RFC 0009): an observedGeneration
// that differs from metadata.generation is InProgress; then inProgress, failed and current are evaluated in
// that order, the first true one wins, none true is InProgress.  An expression that fails to evaluate is
// reported as status "Error" with the error: Flux does not conclude anything from it.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func program(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	// Parsed, not compiled: Flux cannot declare the fields of every custom resource's top level.
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("parse %q: %s", expr, issues.String())
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
}

func nestedInt(object map[string]interface{}, outer, field string) (int64, bool) {
	parent, ok := object[outer].(map[string]interface{})
	if !ok {
		return 0, false
	}
	value, ok := parent[field].(int64)
	return value, ok
}

func evaluate(programs []cel.Program, names []string, object map[string]interface{}) verdict {
	if observed, ok := nestedInt(object, "status", "observedGeneration"); ok {
		if generation, ok := nestedInt(object, "metadata", "generation"); ok && generation != observed {
			return verdict{Status: "InProgress", Message: "observedGeneration differs from generation"}
		}
	}
	for i, prog := range programs {
		if prog == nil {
			continue
		}
		value, _, err := prog.Eval(object)
		if err != nil {
			return verdict{Status: "Error", Message: err.Error()}
		}
		result, ok := value.(types.Bool)
		if !ok {
			return verdict{Status: "Error", Message: fmt.Sprintf("expression %s is not a boolean", names[i])}
		}
		if bool(result) {
			return verdict{Status: map[string]string{
				"inProgress": "InProgress", "failed": "Failed", "current": "Current"}[names[i]]}
		}
	}
	return verdict{Status: "InProgress", Message: "no expression is true"}
}

// numbers makes whole JSON numbers int64 and the others float64, as an unstructured object from the API server
// holds them (Flux evaluates those).
func numbers(value interface{}) interface{} {
	switch v := value.(type) {
	case map[string]interface{}:
		for key, item := range v {
			v[key] = numbers(item)
		}
	case []interface{}:
		for i, item := range v {
			v[i] = numbers(item)
		}
	case json.Number:
		if whole, err := v.Int64(); err == nil {
			return whole
		}
		float, _ := v.Float64()
		return float
	}
	return value
}

func main() {
	var in map[string]interface{}
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		decoder := json.NewDecoder(bytes.NewReader(data))
		decoder.UseNumber()
		var raw interface{}
		if err = decoder.Decode(&raw); err == nil {
			in, _ = numbers(raw).(map[string]interface{})
		}
	}
	exprs, okExprs := in["exprs"].(map[string]interface{})
	objects, okObjects := in["objects"].([]interface{})
	if err == nil && (!okExprs || !okObjects) {
		err = fmt.Errorf("missing exprs or objects")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "flux-cel-check: stdin is not {\"exprs\", \"objects\"}: %v\n", err)
		os.Exit(2)
	}
	names := []string{"inProgress", "failed", "current"}
	programs := make([]cel.Program, len(names))
	for i, name := range names {
		expr, _ := exprs[name].(string)
		if expr == "" {
			continue
		}
		if programs[i], err = program(expr); err != nil {
			fmt.Fprintf(os.Stderr, "flux-cel-check: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	out := make([]verdict, 0, len(objects))
	for i, item := range objects {
		object, ok := item.(map[string]interface{})
		if !ok {
			fmt.Fprintf(os.Stderr, "flux-cel-check: object %d is not a JSON object\n", i)
			os.Exit(2)
		}
		out = append(out, evaluate(programs, names, object))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "flux-cel-check: %v\n", err)
		os.Exit(1)
	}
}
