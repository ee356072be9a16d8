package main

import (
	"testing"

	hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"
)

func TestEcho(t *testing.T) {
	if got := string(hanzo.Envelope(echo, []byte(`{"b":[1,"<x>"],"a":null}`))); got != `{"ok":{"a":null,"b":[1,"<x>"]}}` {
		t.Fatalf("echo: %s", got)
	}
	if got := string(hanzo.Envelope(fail, []byte(`{}`))); got != `{"error":"requested failure"}` {
		t.Fatalf("fail: %s", got)
	}
}
