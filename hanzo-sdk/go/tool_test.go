package hanzo

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
)

type greetIn struct {
	Name  string `json:"name"`
	Loud  bool   `json:"loud,omitempty"`
	Times *int   `json:"times"`
}

type greetOut struct {
	Message string `json:"message"`
}

var greet = Func("greet", "Greets someone.", func(in greetIn) (greetOut, error) {
	if strings.TrimSpace(in.Name) == "" {
		return greetOut{}, errors.New("name must not be empty")
	}
	msg := "Hello, " + in.Name + "!"
	if in.Loud {
		msg = strings.ToUpper(msg)
	}
	if in.Times != nil {
		msg = strings.Repeat(msg, *in.Times)
	}
	return greetOut{msg}, nil
})

// mapTool is a plain Tool: it returns its params with an extra key.
type mapTool struct{ name string }

func (m mapTool) Run(params map[string]any) (any, error) {
	params["seen_by"] = m.name
	return params, nil
}

func (m mapTool) Schema() ToolSchema { return ToolSchema{Name: m.name} }

type panicTool struct{}

func (panicTool) Run(map[string]any) (any, error) { panic("boom\nsecond line") }
func (panicTool) Schema() ToolSchema              { return ToolSchema{Name: "panic"} }

type badOutputTool struct{}

func (badOutputTool) Run(map[string]any) (any, error) { return math.NaN(), nil }
func (badOutputTool) Schema() ToolSchema              { return ToolSchema{Name: "bad_output"} }

func envelope(t *testing.T, tool Tool, params string) string {
	t.Helper()
	out := Envelope(tool, []byte(params))
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		t.Fatalf("envelope %s is not {\"ok\"} or {\"error\"}: %v", out, err)
	}
	return string(out)
}

func TestFuncDecodesParams(t *testing.T) {
	cases := []struct{ params, want string }{
		{`{"name":"Ada"}`, `{"ok":{"message":"Hello, Ada!"}}`},
		{`{"name":"Ada","loud":true}`, `{"ok":{"message":"HELLO, ADA!"}}`},
		{`{"name":"Ada","times":2}`, `{"ok":{"message":"Hello, Ada!Hello, Ada!"}}`},
		// Unknown fields are allowed and ignored.
		{`{"name":"Ada","nickname":"Countess"}`, `{"ok":{"message":"Hello, Ada!"}}`},
		// The tool's own error.
		{`{"name":"  "}`, `{"error":"name must not be empty"}`},
		// Required fields: missing, null; empty input and null input are {}.
		{`{"loud":true}`, `{"error":"invalid params: missing required field \"name\""}`},
		{`{"name":null}`, `{"error":"invalid params: missing required field \"name\""}`},
		{``, `{"error":"invalid params: missing required field \"name\""}`},
		{" \n ", `{"error":"invalid params: missing required field \"name\""}`},
		{`null`, `{"error":"invalid params: missing required field \"name\""}`},
		// Type errors and malformed JSON.
		{`{"name":42}`, `{"error":"invalid params: json: cannot unmarshal number into Go struct field greetIn.name of type string"}`},
		{`{"name":`, `{"error":"invalid params: unexpected EOF"}`},
		{`{"name":"a"} {"name":"b"}`, `{"error":"invalid params: more than one JSON value"}`},
		{`[1,2]`, `{"error":"invalid params: json: cannot unmarshal array into Go value of type hanzo.greetIn"}`},
	}
	for _, c := range cases {
		if got := envelope(t, greet, c.params); got != c.want {
			t.Errorf("params %q:\n got %s\nwant %s", c.params, got, c.want)
		}
	}
}

func TestFuncRunTakesAMap(t *testing.T) {
	out, err := greet.Run(map[string]any{"name": "Bob"})
	if err != nil || out != (greetOut{"Hello, Bob!"}) {
		t.Fatalf("Run = %v, %v", out, err)
	}
	if _, err := greet.Run(nil); err == nil || err.Error() != `invalid params: missing required field "name"` {
		t.Fatalf("Run(nil) error = %v", err)
	}
}

func TestFuncKeepsLargeIntegers(t *testing.T) {
	type in struct {
		N int64 `json:"n"`
	}
	tool := Func("id", "", func(i in) (int64, error) { return i.N, nil })
	if got := envelope(t, tool, `{"n": 1152921504606846977}`); got != `{"ok":1152921504606846977}` {
		t.Fatalf("got %s", got)
	}
}

func TestFuncNestedRequired(t *testing.T) {
	type item struct {
		ID   string `json:"id"`
		Note string `json:"note,omitempty"`
	}
	type in struct {
		Items []item          `json:"items"`
		ByKey map[string]item `json:"by_key,omitempty"`
	}
	tool := Func("nested", "", func(i in) (int, error) { return len(i.Items), nil })
	cases := map[string]string{
		`{"items":[{"id":"a"},{"id":"b","note":"x"}]}`:   `{"ok":2}`,
		`{"items":[{"id":"a"},{"note":"x"}]}`:            `{"error":"invalid params: missing required field \"items[1].id\""}`,
		`{"items":[],"by_key":{"k":{"note":"no id"}}}`:   `{"error":"invalid params: missing required field \"by_key.k.id\""}`,
		`{"items":[{"id":"a","unknown":{"deep":true}}]}`: `{"ok":1}`,
	}
	for params, want := range cases {
		if got := envelope(t, tool, params); got != want {
			t.Errorf("params %s:\n got %s\nwant %s", params, got, want)
		}
	}
}

func TestPlainToolParams(t *testing.T) {
	tool := mapTool{"m"}
	cases := map[string]string{
		`{"a":1.5,"b":"<&>"}`: `{"ok":{"a":1.5,"b":"<&>","seen_by":"m"}}`,
		``:                    `{"ok":{"seen_by":"m"}}`,
		`null`:                `{"ok":{"seen_by":"m"}}`,
		`[1]`:                 `{"error":"invalid params: expected a JSON object, got an array"}`,
		`"s"`:                 `{"error":"invalid params: expected a JSON object, got a string"}`,
		`3`:                   `{"error":"invalid params: expected a JSON object, got a number"}`,
		`{`:                   `{"error":"invalid params: unexpected EOF"}`,
	}
	for params, want := range cases {
		if got := envelope(t, tool, params); got != want {
			t.Errorf("params %q:\n got %s\nwant %s", params, got, want)
		}
	}
}

func TestPanicsAndBadOutputAreErrors(t *testing.T) {
	if got := envelope(t, panicTool{}, `{}`); got != `{"error":"tool panicked: boom second line"}` {
		t.Errorf("panic: %s", got)
	}
	got := envelope(t, badOutputTool{}, `{}`)
	if !strings.HasPrefix(got, `{"error":"invalid output: json: unsupported value: NaN`) {
		t.Errorf("bad output: %s", got)
	}
	if got := envelope(t, nil, `{}`); !strings.HasPrefix(got, `{"error":"tool panicked: `) {
		t.Errorf("nil tool: %s", got)
	}
}

type errTool struct{ err error }

func (e errTool) Run(map[string]any) (any, error) { return nil, e.err }
func (e errTool) Schema() ToolSchema              { return ToolSchema{Name: "err"} }

func TestErrorEnvelope(t *testing.T) {
	if got := envelope(t, errTool{errors.New(`quote " and <tag> and é`)}, `{}`); got != `{"error":"quote \" and <tag> and é"}` {
		t.Errorf("got %s", got)
	}
	if got := envelope(t, errTool{errors.New("")}, `{}`); got != `{"error":"the tool failed without a message"}` {
		t.Errorf("got %s", got)
	}
}

func TestSelect(t *testing.T) {
	a, b, run := mapTool{"a"}, mapTool{"b"}, mapTool{"run"}
	cases := []struct {
		tools    []Tool
		function string
		want     string // the tool's name, or the error
	}{
		{[]Tool{a, b}, "", "a"},
		{[]Tool{a, b}, "run", "a"},
		{[]Tool{a, b}, " b ", "b"},
		{[]Tool{a, run, b}, "", "run"},
		{[]Tool{a, run, b}, "run", "run"},
		{[]Tool{a, run, b}, "a", "a"},
		{[]Tool{a, b}, "c", "unknown function `c`; available: a, b"},
		{nil, "", "this module exports no tools"},
		{nil, "x", "unknown function `x`; available: "},
	}
	for _, c := range cases {
		tool, err := Select(c.tools, c.function)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = tool.Schema().Name
		}
		if got != c.want {
			t.Errorf("Select(%d tools, %q) = %q, want %q", len(c.tools), c.function, got, c.want)
		}
	}
}

func TestToolSchemaJSON(t *testing.T) {
	s := greet.Schema()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "description", "input", "output"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("schema document %s has no %q", raw, k)
		}
	}
	if len(doc) != 4 || doc["name"] != "greet" || doc["description"] != "Greets someone." {
		t.Errorf("schema document %s", raw)
	}
	var back ToolSchema
	if err := json.Unmarshal(raw, &back); err != nil || back.Name != "greet" || back.Input["type"] != "object" {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	// nil schemas encode as {}.
	raw, _ = json.Marshal(ToolSchema{Name: "x"})
	if string(raw) != `{"name":"x","description":"","input":{},"output":{}}` {
		t.Errorf("nil schemas: %s", raw)
	}
	// Schema() hands out copies.
	s.Input["type"] = "changed"
	if greet.Schema().Input["type"] != "object" {
		t.Error("changing a returned schema changed the tool's")
	}
}

func TestSchemaDocument(t *testing.T) {
	raw := SchemaDocument([]Tool{greet, mapTool{"m"}})
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "description,functions,input,name,output" {
		t.Errorf("schema document keys %v", keys)
	}
	var functions []ToolSchema
	if err := json.Unmarshal(top["functions"], &functions); err != nil {
		t.Fatal(err)
	}
	if string(top["name"]) != `"greet"` || len(functions) != 2 || functions[0].Name != "greet" || functions[1].Name != "m" {
		t.Errorf("schema document %s", raw)
	}
	if got := string(SchemaDocument(nil)); got != `{"functions":[]}` {
		t.Errorf("no tools: %s", got)
	}
}

func TestRegister(t *testing.T) {
	defer func(saved []Tool) { registry = saved }(registry)
	registry = nil
	Register(greet)
	Register(mapTool{"m"})
	got := Registered()
	if len(got) != 2 || got[0].Schema().Name != "greet" || got[1].Schema().Name != "m" {
		t.Fatalf("Registered() = %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Register(nil) did not panic")
		}
	}()
	Register(nil)
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb\r\nc\n"); got != "a b c" {
		t.Errorf("oneLine = %q", got)
	}
	if !reflect.DeepEqual(oneLine("plain"), "plain") {
		t.Error("plain")
	}
}
