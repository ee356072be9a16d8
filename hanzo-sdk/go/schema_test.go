package hanzo

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// schemaJSON is the canonical JSON of a schema (encoding/json sorts map keys).
func schemaJSON(t *testing.T, s map[string]any) string {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

type Base struct {
	ID      string `json:"id" description:"The identifier."`
	Created time.Time
	shadow  int // unexported: not in the schema
}

type node struct {
	Value    int     `json:"value"`
	Children []*node `json:"children,omitempty"`
}

type everything struct {
	Base
	Name      string            `json:"name"`
	Age       int               `json:"age,omitempty"`
	Score     float64           `json:"score,omitzero"`
	Ratio     float32           `json:"ratio"`
	OK        bool              `json:"ok"`
	Count     uint8             `json:"count"`
	Big       int64             `json:"big,string"`
	Tags      []string          `json:"tags"`
	Pair      [2]int            `json:"pair"`
	Blob      []byte            `json:"blob"`
	Labels    map[string]string `json:"labels,omitempty"`
	Anything  any               `json:"anything"`
	Raw       json.RawMessage   `json:"raw,omitempty"`
	Num       json.Number       `json:"num"`
	Addr      netip.Addr        `json:"addr"`
	Optional  *string           `json:"optional"`
	Tree      node              `json:"tree"`
	Skipped   string            `json:"-"`
	Dash      string            `json:"-,"`
	NoTag     int
	private   int
	Callback  func()         `json:"-"`
	Free      map[string]any `json:"free"`
	IntKeyMap map[int]bool   `json:"int_key_map"`
}

func TestSchemaOfScalars(t *testing.T) {
	cases := map[string]string{
		schemaJSON(t, SchemaOf[string]()):         `{"type":"string"}`,
		schemaJSON(t, SchemaOf[int]()):            `{"type":"integer"}`,
		schemaJSON(t, SchemaOf[uint64]()):         `{"type":"integer"}`,
		schemaJSON(t, SchemaOf[float64]()):        `{"type":"number"}`,
		schemaJSON(t, SchemaOf[bool]()):           `{"type":"boolean"}`,
		schemaJSON(t, SchemaOf[any]()):            `{}`,
		schemaJSON(t, SchemaOf[*int]()):           `{"type":"integer"}`,
		schemaJSON(t, SchemaOf[[]float64]()):      `{"items":{"type":"number"},"type":"array"}`,
		schemaJSON(t, SchemaOf[map[string]any]()): `{"type":"object"}`,
		schemaJSON(t, SchemaOf[map[string]int]()): `{"additionalProperties":{"type":"integer"},"type":"object"}`,
		schemaJSON(t, SchemaOf[time.Time]()):      `{"format":"date-time","type":"string"}`,
		schemaJSON(t, SchemaOf[chan int]()):       `{}`,
		schemaJSON(t, SchemaFor(nil)):             `{}`,
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestSchemaOfStruct(t *testing.T) {
	s := SchemaOf[everything]()
	if s["type"] != "object" {
		t.Fatalf("type = %v", s["type"])
	}
	props := s["properties"].(map[string]any)
	want := map[string]string{
		"id":          `{"description":"The identifier.","type":"string"}`,
		"Created":     `{"format":"date-time","type":"string"}`,
		"name":        `{"type":"string"}`,
		"age":         `{"type":"integer"}`,
		"score":       `{"type":"number"}`,
		"ratio":       `{"type":"number"}`,
		"ok":          `{"type":"boolean"}`,
		"count":       `{"type":"integer"}`,
		"big":         `{"type":"string"}`,
		"tags":        `{"items":{"type":"string"},"type":"array"}`,
		"pair":        `{"items":{"type":"integer"},"maxItems":2,"minItems":2,"type":"array"}`,
		"blob":        `{"contentEncoding":"base64","type":"string"}`,
		"labels":      `{"additionalProperties":{"type":"string"},"type":"object"}`,
		"anything":    `{}`,
		"raw":         `{}`,
		"num":         `{"type":"number"}`,
		"addr":        `{"type":"string"}`,
		"optional":    `{"type":"string"}`,
		"tree":        `{"properties":{"children":{"items":{},"type":"array"},"value":{"type":"integer"}},"required":["value"],"type":"object"}`,
		"-":           `{"type":"string"}`,
		"NoTag":       `{"type":"integer"}`,
		"free":        `{"type":"object"}`,
		"int_key_map": `{"additionalProperties":{"type":"boolean"},"type":"object"}`,
	}
	for name, w := range want {
		p, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("property %q missing", name)
			continue
		}
		if got := schemaJSON(t, p); got != w {
			t.Errorf("property %q: got %s, want %s", name, got, w)
		}
	}
	for name := range props {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected property %q", name)
		}
	}
	required, _ := s["required"].([]string)
	wantRequired := []string{"id", "Created", "name", "ratio", "ok", "count", "big", "tags", "pair", "blob",
		"num", "addr", "tree", "-", "NoTag", "free", "int_key_map"}
	if len(required) != len(wantRequired) {
		t.Fatalf("required = %q, want %q", required, wantRequired)
	}
	for i := range required {
		if required[i] != wantRequired[i] {
			t.Fatalf("required = %q, want %q", required, wantRequired)
		}
	}
}

type inner1 struct {
	Shared string // also in inner2, at the same depth, untagged: ambiguous
	One    int    `json:"one"`
	Pick   string `json:"Picked"` // tagged: wins over inner2's untagged Picked
}

type inner2 struct {
	Shared string
	Two    int `json:"two"`
	Picked int
}

type inner3 struct {
	Three string `json:"three"` // under an embedded pointer: optional
}

type embedding struct {
	inner1
	inner2
	*inner3
	Two string `json:"two"` // shallower than inner2.Two: wins
}

func TestSchemaOfEmbeddedFollowsEncodingJSON(t *testing.T) {
	s := SchemaOf[embedding]()
	got := schemaJSON(t, s)
	want := `{"properties":{"Picked":{"type":"string"},"one":{"type":"integer"},"three":{"type":"string"},"two":{"type":"string"}},"required":["one","Picked","two"],"type":"object"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Cross-check the names against encoding/json itself.
	raw, err := json.Marshal(embedding{inner1: inner1{"a", 1, "p"}, inner2: inner2{"b", 2, 3}, inner3: &inner3{"c"}, Two: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	props := s["properties"].(map[string]any)
	if len(m) != len(props) {
		t.Errorf("encoding/json writes %s; schema properties %v", raw, props)
	}
	for k := range m {
		if _, ok := props[k]; !ok {
			t.Errorf("encoding/json writes %q, the schema lacks it", k)
		}
	}
}

func TestSchemaOfRecursiveType(t *testing.T) {
	got := schemaJSON(t, SchemaOf[node]())
	want := `{"properties":{"children":{"items":{},"type":"array"},"value":{"type":"integer"}},"required":["value"],"type":"object"}`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestSchemaOfIsFresh(t *testing.T) {
	a := SchemaOf[greetIn]()
	a["properties"].(map[string]any)["name"].(map[string]any)["type"] = "changed"
	if b := SchemaOf[greetIn](); b["properties"].(map[string]any)["name"].(map[string]any)["type"] != "string" {
		t.Error("schemas share maps")
	}
}

func TestFuncSchema(t *testing.T) {
	s := greet.Schema()
	if got := schemaJSON(t, s.Input); got != `{"properties":{"loud":{"type":"boolean"},"name":{"type":"string"},"times":{"type":"integer"}},"required":["name"],"type":"object"}` {
		t.Errorf("input %s", got)
	}
	if got := schemaJSON(t, s.Output); got != `{"properties":{"message":{"type":"string"}},"required":["message"],"type":"object"}` {
		t.Errorf("output %s", got)
	}
}
