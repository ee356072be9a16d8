module github.com/hanzoai/hanzo-node/hanzo-sdk/go

// 1.24 is the first release with //go:wasmexport, which the exports ABI needs.
go 1.24
