//go:build wasip1

package hanzo

// Call is the body of an exports-ABI tool function. Export each tool from your main package
// with a wrapper, in a file built only for the exports build:
//
//	//go:build wasip1 && hanzo_exports
//
//	package main
//
//	import "github.com/hanzoai/hanzo-node/hanzo-sdk/go"
//
//	func init() { hanzo.Register(wordFreq) }
//
//	//go:wasmexport word_freq
//	func wordFreqExport(ptr, n int32) int64 { return hanzo.Call(wordFreq, ptr, n) }
//
// Call reads the params' UTF-8 JSON at [ptr, ptr+n) (memory from hanzo_alloc), runs tool and
// returns (out_ptr << 32) | out_len pointing at {"ok": <output>} or {"error": "<message>"}.
// The result buffer stays allocated until the host passes it to hanzo_free; the params
// buffer too (Call never frees it). Errors, including panics in the tool, come back in the
// envelope: Call itself does not trap.
func Call(tool Tool, ptr, n int32) int64 {
	in, err := pins.bytes(wasmAddr(ptr), int(n))
	if err != nil {
		return packOutput(errorDocument(err))
	}
	return packOutput(Envelope(tool, in))
}

// wasmAddr widens a wasm32 address (an i32 the host passes) to a Go pointer-sized one.
func wasmAddr(p int32) uintptr { return uintptr(uint32(p)) }

// packOutput pins buf and returns (address << 32) | length.
func packOutput(buf []byte) int64 {
	addr := pins.pin(buf)
	return int64(uint64(uint32(addr))<<32 | uint64(uint32(len(buf))))
}
