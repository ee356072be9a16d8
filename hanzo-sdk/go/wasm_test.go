package hanzo

// These tests build the examples in examples/go (natively, as WASI commands and as exports-ABI
// reactors) with the go command running them, and check what the modules export by parsing
// their export sections. Nothing is downloaded: GOPROXY=off, and the examples reach the SDK
// through a replace directive.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
)

// ---- a minimal reader for the sections of a wasm module that name its exports ----

type wasmModule struct {
	exports     map[string]string // name → "func (i32,i32)->i64", "memory", ...
	memoryPages uint64            // the initial size of memory 0, in 64 KiB pages
}

type wasmReader struct {
	b   []byte
	err error
}

func (r *wasmReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end of data")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wasmReader) uleb() uint64 {
	v, n := binary.Uvarint(r.b) // LEB128 unsigned is the same encoding as Uvarint
	if n <= 0 {
		r.fail("bad LEB128")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wasmReader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail("unexpected end of data")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *wasmReader) name() string { return string(r.bytes(r.uleb())) }

func (r *wasmReader) limits() (min uint64) {
	flags := r.byte()
	min = r.uleb()
	if flags&1 != 0 {
		r.uleb()
	}
	return min
}

func valType(b byte) string {
	switch b {
	case 0x7f:
		return "i32"
	case 0x7e:
		return "i64"
	case 0x7d:
		return "f32"
	case 0x7c:
		return "f64"
	case 0x7b:
		return "v128"
	}
	return fmt.Sprintf("0x%02x", b)
}

func parseWasm(data []byte) (*wasmModule, error) {
	if len(data) < 8 || !bytes.Equal(data[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module")
	}
	r := &wasmReader{b: data[8:]}
	var types []string // "(params)->results"
	var funcTypes []uint64
	type export struct {
		name  string
		kind  byte
		index uint64
	}
	var exports []export
	mod := &wasmModule{exports: map[string]string{}}
	for len(r.b) > 0 && r.err == nil {
		id := r.byte()
		sec := &wasmReader{b: r.bytes(r.uleb())}
		switch id {
		case 1: // types
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				if sec.byte() != 0x60 {
					return nil, errors.New("unsupported type form")
				}
				var ps, rs []string
				for k := sec.uleb(); k > 0 && sec.err == nil; k-- {
					ps = append(ps, valType(sec.byte()))
				}
				for k := sec.uleb(); k > 0 && sec.err == nil; k-- {
					rs = append(rs, valType(sec.byte()))
				}
				types = append(types, "("+strings.Join(ps, ",")+")->"+strings.Join(rs, ","))
			}
		case 2: // imports: imported functions come first in the function index space
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				sec.name()
				sec.name()
				switch kind := sec.byte(); kind {
				case 0:
					funcTypes = append(funcTypes, sec.uleb())
				case 1:
					sec.byte()
					sec.limits()
				case 2:
					sec.limits()
				case 3:
					sec.byte()
					sec.byte()
				default:
					return nil, fmt.Errorf("unsupported import kind %d", kind)
				}
			}
		case 3: // functions
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				funcTypes = append(funcTypes, sec.uleb())
			}
		case 5: // memories
			if sec.uleb() > 0 {
				mod.memoryPages = sec.limits()
			}
		case 7: // exports
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				exports = append(exports, export{sec.name(), sec.byte(), sec.uleb()})
			}
		}
		if sec.err != nil {
			return nil, fmt.Errorf("section %d: %v", id, sec.err)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	for _, e := range exports {
		switch e.kind {
		case 0:
			if e.index >= uint64(len(funcTypes)) || funcTypes[e.index] >= uint64(len(types)) {
				return nil, fmt.Errorf("export %q: bad function index", e.name)
			}
			mod.exports[e.name] = "func " + types[funcTypes[e.index]]
		case 1:
			mod.exports[e.name] = "table"
		case 2:
			mod.exports[e.name] = "memory"
		case 3:
			mod.exports[e.name] = "global"
		default:
			mod.exports[e.name] = fmt.Sprintf("kind %d", e.kind)
		}
	}
	return mod, nil
}

func (m *wasmModule) names() []string {
	var out []string
	for n := range m.exports {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ---- building the examples ----

var (
	buildDirOnce sync.Once
	buildDir     string
	buildDirErr  error
)

// artifacts is a directory shared by the tests in this file, removed by TestMain.
func artifacts(t *testing.T) string {
	t.Helper()
	buildDirOnce.Do(func() { buildDir, buildDirErr = os.MkdirTemp("", "hanzo-go-sdk-test-") })
	if buildDirErr != nil {
		t.Fatal(buildDirErr)
	}
	return buildDir
}

func removeArtifacts() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

func goCommand(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	return path
}

func exampleDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "go", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	return dir
}

var buildMu sync.Mutex

// build runs `go build` in an example's directory; kind is native, command, reactor or
// reactor-untagged. Builds are memoised per example and kind.
func build(t *testing.T, example, kind string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(artifacts(t), example+"."+kind)
	if kind != "native" {
		out += ".wasm"
	}
	if _, err := os.Stat(out); err == nil {
		return out
	}
	env := append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0")
	args := []string{"build", "-o", out}
	switch kind {
	case "native":
	case "command":
		env = append(env, "GOOS=wasip1", "GOARCH=wasm")
	case "reactor":
		env = append(env, "GOOS=wasip1", "GOARCH=wasm")
		args = append(args, "-buildmode=c-shared", "-tags=hanzo_exports")
	case "reactor-untagged":
		env = append(env, "GOOS=wasip1", "GOARCH=wasm")
		args = append(args, "-buildmode=c-shared")
	default:
		t.Fatalf("unknown build kind %q", kind)
	}
	cmd := exec.Command(goCommand(t), append(args, ".")...)
	cmd.Dir = exampleDir(t, example)
	cmd.Env = env
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), cmd.Dir, err, msg)
	}
	return out
}

func readModule(t *testing.T, path string) *wasmModule {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := parseWasm(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("%s: %d bytes, %d initial memory pages, exports %v", filepath.Base(path), len(data), mod.memoryPages, mod.names())
	return mod
}

func TestParseWasmRejectsGarbage(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x01\x00\x00\x00\x07\x05\x01"), []byte("hello world")} {
		if _, err := parseWasm(data); err == nil {
			t.Errorf("parseWasm(%q) succeeded", data)
		}
	}
}

func TestExamplesNative(t *testing.T) {
	cases := []struct {
		example, function, stdin, stdout string
		code                             int
	}{
		{"wordfreq", "", `{"text":"the cat and the hat","top":2}`,
			`{"total_words":5,"unique_words":4,"top":[{"word":"the","count":2},{"word":"and","count":1}]}`, 0},
		{"wordfreq", "word_freq", `{"top":2}`, `{"error":"invalid params: missing required field \"text\""}`, 1},
		{"echo", "", `{"hello":"world"}`, `{"hello":"world"}`, 0},
		{"echo", "fail", `{}`, `{"error":"requested failure"}`, 1},
	}
	for _, c := range cases {
		bin := build(t, c.example, "native")
		cmd := exec.Command(bin)
		cmd.Env = []string{"HANZO_FUNCTION=" + c.function}
		cmd.Stdin = strings.NewReader(c.stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || strings.TrimSpace(stdout.String()) != c.stdout {
			t.Errorf("%s %q: exit %d stdout %s, want exit %d stdout %s (stderr %q)",
				c.example, c.function, code, stdout.String(), c.code, c.stdout, stderr.String())
		}
	}
}

func TestExamplesWasm(t *testing.T) {
	abi := map[string]string{
		"memory":       "memory",
		"hanzo_alloc":  "func (i32)->i32",
		"hanzo_free":   "func (i32,i32)->",
		"hanzo_schema": "func ()->i64",
		"_initialize":  "func ()->",
	}
	tool := "func (i32,i32)->i64"
	for example, tools := range map[string][]string{"wordfreq": {"word_freq", "run"}, "echo": {"run", "fail"}} {
		t.Run(example+"/command", func(t *testing.T) {
			mod := readModule(t, build(t, example, "command"))
			want := map[string]string{"_start": "func ()->", "memory": "memory"}
			if !reflect.DeepEqual(mod.exports, want) {
				t.Errorf("exports %v, want %v", mod.exports, want)
			}
		})
		t.Run(example+"/reactor", func(t *testing.T) {
			mod := readModule(t, build(t, example, "reactor"))
			want := map[string]string{}
			for k, v := range abi {
				want[k] = v
			}
			for _, name := range tools {
				want[name] = tool
			}
			if !reflect.DeepEqual(mod.exports, want) {
				t.Errorf("exports %v, want %v", mod.exports, want)
			}
		})
	}
	// Without the tag a c-shared build has neither the ABI nor the tools: the node rejects
	// it ("exports neither hanzo_alloc nor _start") instead of misrunning it.
	t.Run("echo/reactor-untagged", func(t *testing.T) {
		mod := readModule(t, build(t, "echo", "reactor-untagged"))
		want := map[string]string{"_initialize": "func ()->", "memory": "memory"}
		if !reflect.DeepEqual(mod.exports, want) {
			t.Errorf("exports %v, want %v", mod.exports, want)
		}
	})
}

// TestWasmEndToEnd runs the wasm builds on wasmtime through testdata/run_wasm.py. It needs
// python3 with the wasmtime package (pip install wasmtime) and is skipped without them.
func TestWasmEndToEnd(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import wasmtime").Run()
	}
	if err != nil {
		t.Skip("python3 with the wasmtime package is not available")
	}
	run := func(mode, example, function, params string) map[string]any {
		t.Helper()
		kind := map[string]string{"command": "command", "reactor": "reactor"}[mode]
		out, err := exec.Command(python, filepath.Join("testdata", "run_wasm.py"), mode,
			build(t, example, kind), function, params).CombinedOutput()
		if err != nil {
			t.Fatalf("run_wasm.py %s %s %s: %v\n%s", mode, example, function, err, out)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return v
	}
	wordfreqOut := `{"total_words":3,"unique_words":2,"top":[{"word":"b","count":2}]}`

	// WASI commands: proc_exit(0) on success, proc_exit(1) on failure.
	r := run("command", "wordfreq", "", `{"text":"b a B","top":1}`)
	if r["exit"] != 0.0 || strings.TrimSpace(r["stdout"].(string)) != wordfreqOut {
		t.Errorf("wordfreq command: %v", r)
	}
	r = run("command", "echo", "fail", `{}`)
	if r["exit"] != 1.0 || strings.TrimSpace(r["stdout"].(string)) != `{"error":"requested failure"}` ||
		lastLine(r["stderr"].(string)) != "requested failure" {
		t.Errorf("echo fail command: %v", r)
	}

	// Reactors: _initialize, hanzo_alloc, the tool, hanzo_free, hanzo_schema.
	r = run("reactor", "wordfreq", "word_freq", `{"text":"b a B","top":1}`)
	if !sameJSON(r["envelope"], `{"ok":`+wordfreqOut+`}`) {
		t.Errorf("wordfreq reactor envelope: %v", r["envelope"])
	}
	if schema, _ := r["schema"].(map[string]any); schema["name"] != "word_freq" {
		t.Errorf("wordfreq reactor schema: %v", r["schema"])
	}
	r = run("reactor", "echo", "fail", `{}`)
	if !sameJSON(r["envelope"], `{"error":"requested failure"}`) {
		t.Errorf("echo fail reactor envelope: %v", r["envelope"])
	}
	if !strings.Contains(r["stderr"].(string), "echo: failing on request") {
		t.Errorf("echo fail reactor stderr: %q", r["stderr"])
	}
	r = run("reactor", "echo", "run", `{"k":[1,"<b>"]}`)
	if !sameJSON(r["envelope"], `{"ok":{"k":[1,"<b>"]}}`) {
		t.Errorf("echo run reactor envelope: %v", r["envelope"])
	}
}

// sameJSON reports whether the decoded value v equals the JSON document want.
func sameJSON(v any, want string) bool {
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(err)
	}
	return reflect.DeepEqual(v, w)
}
