package hanzo

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// SchemaOf derives a minimal JSON Schema for the JSON encoding of T, following the rules of
// encoding/json:
//
//   - bool → boolean; signed and unsigned integers → integer; floats and json.Number →
//     number; string → string; []byte → string with contentEncoding base64;
//     time.Time → string with format date-time; other encoding.TextMarshaler types → string;
//     other json.Marshaler types, interfaces, json.RawMessage → {} (any value).
//   - slices → array with items; arrays → the same with minItems = maxItems = length.
//   - maps → object with additionalProperties (omitted when the values may be anything).
//   - structs → object with properties and required. Field names and the `-`, omitempty,
//     omitzero and string options come from `json` tags; embedded structs are inlined; a
//     `description:"..."` tag becomes the property's description. A field is required
//     unless it is omitempty or omitzero, has a pointer or interface type, or comes from an
//     embedded struct pointer.
//   - pointers → their element's schema; a recursive type is {} where it recurs; channels,
//     functions and complex numbers (which encoding/json cannot encode) → {}.
//
// The result is a fresh map the caller may change.
func SchemaOf[T any]() map[string]any {
	return SchemaFor(reflect.TypeOf((*T)(nil)).Elem())
}

// SchemaFor is SchemaOf for a reflect.Type. A nil type yields {}.
func SchemaFor(t reflect.Type) map[string]any {
	if t == nil {
		return map[string]any{}
	}
	return schemaFor(t, map[reflect.Type]bool{})
}

var (
	timeType          = reflect.TypeOf(time.Time{})
	numberType        = reflect.TypeOf(json.Number(""))
	rawMessageType    = reflect.TypeOf(json.RawMessage(nil))
	jsonMarshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

func schemaFor(t reflect.Type, inProgress map[reflect.Type]bool) map[string]any {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case numberType:
		return map[string]any{"type": "number"}
	case rawMessageType:
		return map[string]any{}
	}
	if t.Kind() == reflect.Pointer {
		return schemaFor(t.Elem(), inProgress)
	}
	if implements(t, jsonMarshalerType) {
		return map[string]any{}
	}
	if implements(t, textMarshalerType) {
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), jsonMarshalerType) &&
			!implements(t.Elem(), textMarshalerType) {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaFor(t.Elem(), inProgress)}
	case reflect.Array:
		return map[string]any{
			"type":     "array",
			"items":    schemaFor(t.Elem(), inProgress),
			"minItems": t.Len(),
			"maxItems": t.Len(),
		}
	case reflect.Map:
		s := map[string]any{"type": "object"}
		if values := schemaFor(t.Elem(), inProgress); len(values) > 0 {
			s["additionalProperties"] = values
		}
		return s
	case reflect.Struct:
		if inProgress[t] {
			return map[string]any{}
		}
		inProgress[t] = true
		defer delete(inProgress, t)
		return structSchema(t, inProgress)
	}
	// Interfaces are any value; channels, functions and complex numbers cannot be encoded.
	return map[string]any{}
}

// field is one JSON object member of a struct, with what encoding/json needs to pick among
// members of the same name.
type field struct {
	name     string
	depth    int // embedding depth
	tagged   bool
	schema   map[string]any
	required bool
}

func structSchema(t reflect.Type, inProgress map[reflect.Type]bool) map[string]any {
	var fields []field
	collectFields(t, 0, false, inProgress, &fields, map[reflect.Type]bool{})

	// encoding/json's dominance rule: of the fields with one name, the shallowest wins; among
	// those, the only tagged one; otherwise the name is ambiguous and left out.
	byName := map[string][]field{}
	var order []string
	for _, f := range fields {
		if _, seen := byName[f.name]; !seen {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	props := map[string]any{}
	required := []string{}
	for _, name := range order {
		f, ok := dominant(byName[name])
		if !ok {
			continue
		}
		props[name] = f.schema
		if f.required {
			required = append(required, name)
		}
	}
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func dominant(fs []field) (field, bool) {
	minDepth := fs[0].depth
	for _, f := range fs {
		minDepth = min(minDepth, f.depth)
	}
	var top []field
	for _, f := range fs {
		if f.depth == minDepth {
			top = append(top, f)
		}
	}
	if len(top) == 1 {
		return top[0], true
	}
	var tagged []field
	for _, f := range top {
		if f.tagged {
			tagged = append(tagged, f)
		}
	}
	if len(tagged) == 1 {
		return tagged[0], true
	}
	return field{}, false
}

func collectFields(t reflect.Type, depth int, viaPointer bool, inProgress map[reflect.Type]bool, out *[]field, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous {
			base := ft
			if base.Kind() == reflect.Pointer {
				base = base.Elem()
			}
			if !sf.IsExported() && base.Kind() != reflect.Struct {
				continue
			}
			if name == "" && base.Kind() == reflect.Struct {
				// A nil embedded pointer contributes no fields: they are optional.
				collectFields(base, depth+1, viaPointer || ft.Kind() == reflect.Pointer, inProgress, out, visiting)
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		tagged := name != ""
		if !tagged {
			name = sf.Name
		}
		var schema map[string]any
		if hasOption(opts, "string") && isStringable(ft) {
			schema = map[string]any{"type": "string"}
		} else {
			schema = schemaFor(ft, inProgress)
		}
		if d := sf.Tag.Get("description"); d != "" {
			schema["description"] = d
		}
		optional := viaPointer || hasOption(opts, "omitempty") || hasOption(opts, "omitzero") ||
			ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Interface
		*out = append(*out, field{
			name:     name,
			depth:    depth,
			tagged:   tagged,
			schema:   schema,
			required: !optional,
		})
	}
}

func hasOption(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// isStringable: the `string` tag option applies to these kinds only.
func isStringable(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	}
	return false
}

// cloneSchema deep-copies a schema so callers may change what they are given.
func cloneSchema(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneSchema(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneValue(x)
		}
		return out
	case []string:
		return append([]string(nil), v...)
	}
	return v
}
