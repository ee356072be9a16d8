package hanzo

import (
	"runtime"
	"strings"
	"testing"
)

func TestPinTable(t *testing.T) {
	p := pinTable{bufs: map[uintptr][]byte{}}
	a := p.alloc(16)
	z := p.alloc(0)
	if a == 0 || z == 0 || a == z {
		t.Fatalf("alloc returned %#x and %#x", a, z)
	}
	buf, err := p.bytes(a, 16)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "0123456789abcdef")
	runtime.GC() // pinned memory survives a collection untouched
	if got, _ := p.bytes(a, 16); string(got) != "0123456789abcdef" {
		t.Fatalf("after GC: %q", got)
	}
	// Anywhere inside a buffer is fine; past its end is not.
	if got, err := p.bytes(a+4, 6); err != nil || string(got) != "456789" {
		t.Fatalf("interior: %q, %v", got, err)
	}
	if _, err := p.bytes(a+10, 7); err == nil || !strings.Contains(err.Error(), "not inside a buffer from hanzo_alloc") {
		t.Fatalf("overrun: %v", err)
	}
	if _, err := p.bytes(a, 17); err == nil {
		t.Fatal("overrun from the start accepted")
	}
	if got, err := p.bytes(12345, 0); err != nil || got != nil {
		t.Fatalf("zero length: %q, %v", got, err)
	}
	if _, err := p.bytes(a, -1); err == nil {
		t.Fatal("negative length accepted")
	}
	if n := len(p.live()); n != 2 {
		t.Fatalf("%d live buffers, want 2", n)
	}
	p.free(a)
	p.free(a) // twice: harmless
	p.free(999)
	if live := p.live(); len(live) != 1 || live[0] != z {
		t.Fatalf("live after free: %v", live)
	}
	if _, err := p.bytes(a, 1); err == nil {
		t.Fatal("freed buffer still readable")
	}
	out := p.pin([]byte(`{"ok":1}`))
	if got, _ := p.bytes(out, 8); string(got) != `{"ok":1}` {
		t.Fatalf("pinned output: %q", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("alloc(-1) did not panic")
		}
	}()
	p.alloc(-1)
}
