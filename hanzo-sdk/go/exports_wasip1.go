//go:build wasip1 && hanzo_exports

package hanzo

// The exports ABI's fixed exports (CONTRACTS.md §1b). They exist only with the hanzo_exports
// build tag: a WASI command that exported hanzo_alloc would be taken for an exports-ABI
// module by the node, which would then never call _start. Build reactors with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -tags hanzo_exports -o tool.wasm .

// hanzoAlloc returns the address of n writable bytes, kept alive until hanzo_free. It never
// returns 0; running out of memory traps.
//
//go:wasmexport hanzo_alloc
func hanzoAlloc(n int32) int32 {
	return int32(uint32(pins.alloc(int(n))))
}

// hanzoFree releases a buffer from hanzo_alloc, a tool function or hanzo_schema. The length
// is not needed: buffers are known by address. Unknown addresses are ignored.
//
//go:wasmexport hanzo_free
func hanzoFree(ptr, n int32) {
	pins.free(wasmAddr(ptr))
}

// hanzoSchema returns the packed address of SchemaDocument(Registered()).
//
//go:wasmexport hanzo_schema
func hanzoSchema() int64 {
	return packOutput(SchemaDocument(Registered()))
}
