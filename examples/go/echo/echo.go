// Command echo is the smallest hanzo-node tool pair, written against the plain hanzo.Tool
// interface: run returns its params unchanged, fail always fails. Both log to stderr.
//
//	echo '{"hello": "world"}' | go run .                      # {"hello":"world"}
//	echo '{}' | HANZO_FUNCTION=fail go run .                  # {"error":"requested failure"}, exit 1
package main

import (
	"errors"
	"fmt"
	"os"

	hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"
)

type echoTool struct{}

func (echoTool) Schema() hanzo.ToolSchema {
	return hanzo.ToolSchema{
		Name:        "run",
		Description: "Returns its params unchanged.",
		Input:       map[string]any{"type": "object"},
		Output:      map[string]any{"type": "object"},
	}
}

func (echoTool) Run(params map[string]any) (any, error) {
	fmt.Fprintf(os.Stderr, "echo: %d top-level keys\n", len(params))
	return params, nil
}

type failTool struct{}

func (failTool) Schema() hanzo.ToolSchema {
	return hanzo.ToolSchema{
		Name:        "fail",
		Description: "Always fails with \"requested failure\".",
		Input:       map[string]any{"type": "object"},
	}
}

func (failTool) Run(map[string]any) (any, error) {
	fmt.Fprintln(os.Stderr, "echo: failing on request")
	return nil, errors.New("requested failure")
}

var (
	echo = echoTool{}
	fail = failTool{}
)

func main() {
	hanzo.Serve(echo, fail)
}
