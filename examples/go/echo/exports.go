//go:build wasip1 && hanzo_exports

// The exports-ABI build (a WASI reactor):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -tags hanzo_exports -o echo.wasm .

package main

import hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"

func init() { hanzo.Register(echo, fail) }

//go:wasmexport run
func runExport(ptr, n int32) int64 { return hanzo.Call(echo, ptr, n) }

//go:wasmexport fail
func failExport(ptr, n int32) int64 { return hanzo.Call(fail, ptr, n) }
