package main

import hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"

// main is the stdio build: a native executable, or a WASI command with GOOS=wasip1
// GOARCH=wasm. The exports build (exports.go) never runs main.
func main() {
	hanzo.Serve(wordFreq)
}
