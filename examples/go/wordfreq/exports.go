//go:build wasip1 && hanzo_exports

// The exports-ABI build, a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -tags hanzo_exports -o wordfreq.wasm .
//
// The SDK exports hanzo_alloc, hanzo_free and hanzo_schema; this file exports the tool.

package main

import hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"

// A reactor never runs main: register the tools for hanzo_schema at initialisation.
func init() { hanzo.Register(wordFreq) }

//go:wasmexport word_freq
func wordFreqExport(ptr, n int32) int64 { return hanzo.Call(wordFreq, ptr, n) }

// run is the node's default function name; exporting it too makes `--function` optional
// and matches the command build, where HANZO_FUNCTION=run selects the first tool.
//
//go:wasmexport run
func runExport(ptr, n int32) int64 { return hanzo.Call(wordFreq, ptr, n) }
