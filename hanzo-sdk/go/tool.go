// Package hanzo is the Go SDK for hanzo-node tools.
//
// A tool takes one JSON value (params, an object) and returns one JSON value. Write it as a
// [Tool], or as a plain typed function wrapped by [Func], then build it into any of the
// shapes the node runs (see the README):
//
//   - natively or as a WASI command (GOOS=wasip1 GOARCH=wasm): main calls [Serve], which
//     follows the stdio contract (params on stdin, one JSON document on stdout);
//   - as a WASI reactor (-buildmode=c-shared -tags hanzo_exports): the exports ABI, with
//     hanzo_alloc, hanzo_free and hanzo_schema exported by this package and one
//     //go:wasmexport wrapper per tool calling [Call].
//
// The package uses the standard library only.
package hanzo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Tool is one callable tool function.
type Tool interface {
	// Run computes the output for params, the JSON object the caller sent (numbers are
	// float64, as encoding/json decodes them into interface values). The output must be
	// encodable by encoding/json. A returned error is a tool failure with its message.
	Run(params map[string]any) (any, error)
	// Schema describes the tool. Its Name is the function name callers select it by.
	Schema() ToolSchema
}

// ToolSchema describes a tool: it encodes as {"name", "description", "input", "output"},
// where input and output are JSON Schemas. A nil Input or Output encodes as {}, the schema
// every value satisfies.
type ToolSchema struct {
	Name        string
	Description string
	Input       map[string]any
	Output      map[string]any
}

// MarshalJSON encodes the schema document {"name", "description", "input", "output"}.
func (s ToolSchema) MarshalJSON() ([]byte, error) {
	orEmpty := func(m map[string]any) map[string]any {
		if m == nil {
			return map[string]any{}
		}
		return m
	}
	return json.Marshal(struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Input       map[string]any `json:"input"`
		Output      map[string]any `json:"output"`
	}{s.Name, s.Description, orEmpty(s.Input), orEmpty(s.Output)})
}

// UnmarshalJSON decodes the document MarshalJSON writes.
func (s *ToolSchema) UnmarshalJSON(data []byte) error {
	var doc struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Input       map[string]any `json:"input"`
		Output      map[string]any `json:"output"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	*s = ToolSchema{doc.Name, doc.Description, doc.Input, doc.Output}
	return nil
}

// rawTool is implemented by tools that decode the params' JSON themselves ([Func]'s tools),
// so integers beyond 2^53 and the exact shape of the input survive the trip.
type rawTool interface {
	runJSON(params []byte) (any, error)
}

// Func makes a Tool of a typed function.
//
// Params are decoded into I with encoding/json, from the raw JSON (no float64 round trip).
// Decoding rules:
//   - Unknown fields are allowed and ignored, so callers and the node may add fields without
//     breaking old tools. Implement [Tool] yourself (with json.Decoder.DisallowUnknownFields)
//     if a tool must reject them.
//   - Every field the derived input schema lists as required (see [SchemaOf]) must be present
//     and not null, at any depth; otherwise the call fails with
//     `invalid params: missing required field "a.b"`.
//   - Type mismatches fail with `invalid params: <encoding/json message>`.
//   - Empty input (no bytes, or only whitespace) and null are read as {}.
//
// The input and output schemas are derived from I and O by [SchemaOf]. I should be a struct,
// a map with string keys, or any.
func Func[I any, O any](name, description string, f func(I) (O, error)) Tool {
	return &funcTool[I, O]{
		name:        name,
		description: description,
		f:           f,
		input:       SchemaOf[I](),
		output:      SchemaOf[O](),
	}
}

type funcTool[I any, O any] struct {
	name, description string
	f                 func(I) (O, error)
	input, output     map[string]any
}

func (t *funcTool[I, O]) Schema() ToolSchema {
	return ToolSchema{
		Name:        t.name,
		Description: t.description,
		Input:       cloneSchema(t.input),
		Output:      cloneSchema(t.output),
	}
}

func (t *funcTool[I, O]) Run(params map[string]any) (any, error) {
	if params == nil {
		params = map[string]any{}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("invalid params: %v", err)
	}
	return t.runJSON(raw)
}

func (t *funcTool[I, O]) runJSON(raw []byte) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("invalid params: %v", err)
	}
	if dec.More() {
		return nil, errors.New("invalid params: more than one JSON value")
	}
	if generic == nil { // null params are no params, as for plain tools
		raw, generic = []byte("{}"), map[string]any{}
	}
	if err := checkRequired(generic, t.input, ""); err != nil {
		return nil, err
	}
	var in I
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("invalid params: %v", err)
	}
	return t.f(in)
}

// checkRequired walks a decoded value along schema and reports the first required object
// field that is missing or null.
func checkRequired(v any, schema map[string]any, path string) error {
	switch v := v.(type) {
	case map[string]any:
		if req, ok := schema["required"].([]string); ok {
			for _, name := range req {
				if field, ok := v[name]; !ok || field == nil {
					return fmt.Errorf("invalid params: missing required field %q", join(path, name))
				}
			}
		}
		if props, ok := schema["properties"].(map[string]any); ok {
			for name, sub := range props {
				sub, _ := sub.(map[string]any)
				if field, ok := v[name]; ok && sub != nil {
					if err := checkRequired(field, sub, join(path, name)); err != nil {
						return err
					}
				}
			}
		}
		if extra, ok := schema["additionalProperties"].(map[string]any); ok {
			for name, field := range v {
				if err := checkRequired(field, extra, join(path, name)); err != nil {
					return err
				}
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, item := range v {
				if err := checkRequired(item, items, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// invoke runs tool on the params' JSON: empty input means {}; a non-object input is an
// error for tools that only take maps; a panic is reported as an error.
func invoke(tool Tool, raw []byte) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("tool panicked: %s", oneLine(fmt.Sprint(r)))
		}
	}()
	if rt, ok := tool.(rawTool); ok {
		return rt.runJSON(raw)
	}
	params, err := decodeParams(raw)
	if err != nil {
		return nil, err
	}
	return tool.Run(params)
}

// decodeParams decodes the params object of a plain Tool.
func decodeParams(raw []byte) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return map[string]any{}, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid params: %v", err)
	}
	if dec.More() {
		return nil, errors.New("invalid params: more than one JSON value")
	}
	switch v := v.(type) {
	case map[string]any:
		return v, nil
	case nil:
		return map[string]any{}, nil
	default:
		return nil, fmt.Errorf("invalid params: expected a JSON object, got %s", jsonKind(v))
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// encodeJSON encodes v compactly, without HTML escaping and without a trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// runTool runs tool on raw and encodes its output: the output document, or an error.
func runTool(tool Tool, raw []byte) ([]byte, error) {
	out, err := invoke(tool, raw)
	if err != nil {
		return nil, err
	}
	doc, err := encodeJSON(out)
	if err != nil {
		return nil, fmt.Errorf("invalid output: %v", err)
	}
	return doc, nil
}

// Envelope runs tool on the params' JSON and returns what the exports ABI hands back:
// {"ok": <output>} or {"error": "<message>"}. [Call] is Envelope plus the wasm memory
// plumbing; Envelope is here so tools can be tested natively.
func Envelope(tool Tool, params []byte) []byte {
	doc, err := runTool(tool, params)
	if err != nil {
		return errorDocument(err)
	}
	out := make([]byte, 0, len(doc)+7)
	out = append(out, `{"ok":`...)
	out = append(out, doc...)
	return append(out, '}')
}

// errorDocument is {"error": "<message>"}.
func errorDocument(err error) []byte {
	doc, encErr := encodeJSON(map[string]string{"error": errorMessage(err)})
	if encErr != nil { // a string map always encodes; keep a valid document regardless
		return []byte(`{"error":"unencodable error message"}`)
	}
	return doc
}

func errorMessage(err error) string {
	if msg := err.Error(); msg != "" {
		return msg
	}
	return "the tool failed without a message"
}

// oneLine joins the lines of s with spaces: hosts take the last stderr line as the error
// message, so a multi-line message would be cut to its tail.
func oneLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	return strings.Join(lines, " ")
}

// Select picks the tool for a function name, as the node names functions: "" means "run";
// "run" is the tool named run or, when there is none, the first tool. Any other name must
// be a tool's name; otherwise the error lists the available names.
func Select(tools []Tool, function string) (Tool, error) {
	name := strings.TrimSpace(function)
	if name == "" {
		name = "run"
	}
	names := make([]string, len(tools))
	for i, t := range tools {
		names[i] = t.Schema().Name
		if names[i] == name {
			return t, nil
		}
	}
	if name == "run" {
		if len(tools) == 0 {
			return nil, errors.New("this module exports no tools")
		}
		return tools[0], nil
	}
	return nil, fmt.Errorf("unknown function `%s`; available: %s", name, strings.Join(names, ", "))
}

// SchemaDocument is what hanzo_schema returns (and `--schema` prints) for tools: the first
// (default) tool's document at the top level plus "functions", every tool's document. A host
// that only knows the single-tool shape still reads it. (The Rust SDK writes the same shape.)
func SchemaDocument(tools []Tool) []byte {
	doc := map[string]any{}
	functions := make([]ToolSchema, len(tools))
	for i, t := range tools {
		functions[i] = t.Schema()
	}
	if len(functions) > 0 {
		first := functions[0]
		doc["name"] = first.Name
		doc["description"] = first.Description
		doc["input"] = orEmpty(first.Input)
		doc["output"] = orEmpty(first.Output)
	}
	doc["functions"] = functions
	out, err := encodeJSON(doc)
	if err != nil {
		return errorDocument(fmt.Errorf("schema cannot be encoded: %v", err))
	}
	return out
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

var (
	registryMu sync.Mutex
	registry   []Tool
)

// Register records the tools whose schemas hanzo_schema returns in an exports-ABI module.
// Call it from an init function (or a package-level variable's initialiser): a reactor
// never runs main, and the host may ask for the schema before calling any tool. The first
// tool registered is the default one. Registering a nil tool panics.
func Register(tools ...Tool) {
	for _, t := range tools {
		if t == nil {
			panic("hanzo.Register: nil tool")
		}
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	registry = append(registry, tools...)
}

// Registered returns the tools Register recorded, in order.
func Registered() []Tool {
	registryMu.Lock()
	defer registryMu.Unlock()
	return append([]Tool(nil), registry...)
}
