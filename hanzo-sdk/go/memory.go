package hanzo

import (
	"fmt"
	"sort"
	"sync"
	"unsafe"
)

// pinTable keeps the byte buffers shared with a wasm host alive. The host only holds their
// addresses, which the garbage collector does not see; Go's collector does not move objects,
// so a reference held here is enough for the memory to stay where the host expects it.
// Buffers leave the table when the host calls hanzo_free. The code is platform-independent
// (addresses are uintptr) so it is tested natively; call_wasip1.go narrows addresses to
// the 32-bit wasm ones.
type pinTable struct {
	mu   sync.Mutex
	bufs map[uintptr][]byte
}

var pins = pinTable{bufs: map[uintptr][]byte{}}

func addressOf(buf []byte) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
}

// alloc returns the address of n fresh writable bytes (at least one byte is allocated, so
// every address is distinct and non-zero).
func (p *pinTable) alloc(n int) uintptr {
	if n < 0 {
		panic(fmt.Sprintf("hanzo_alloc: negative length %d", n))
	}
	return p.pin(make([]byte, max(n, 1)))
}

// pin keeps buf alive until free and returns its address.
func (p *pinTable) pin(buf []byte) uintptr {
	if len(buf) == 0 {
		buf = make([]byte, 1)
	}
	addr := addressOf(buf)
	p.mu.Lock()
	p.bufs[addr] = buf
	p.mu.Unlock()
	return addr
}

// free releases the buffer at addr; unknown addresses are ignored (freeing twice is harmless).
func (p *pinTable) free(addr uintptr) {
	p.mu.Lock()
	delete(p.bufs, addr)
	p.mu.Unlock()
}

// bytes returns the n bytes at addr, which must lie inside one pinned buffer: the host
// writes the params into memory hanzo_alloc gave it, at its start or anywhere inside.
func (p *pinTable) bytes(addr uintptr, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("invalid params: negative length %d", n)
	}
	if n == 0 {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if buf, ok := p.bufs[addr]; ok && n <= len(buf) {
		return buf[:n:n], nil
	}
	for base, buf := range p.bufs {
		if addr >= base && addr-base <= uintptr(len(buf)) && uintptr(n) <= uintptr(len(buf))-(addr-base) {
			off := int(addr - base)
			return buf[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("invalid params: [%#x, %#x) is not inside a buffer from hanzo_alloc", addr, addr+uintptr(n))
}

// live lists the pinned addresses (for tests).
func (p *pinTable) live() []uintptr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]uintptr, 0, len(p.bufs))
	for a := range p.bufs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
