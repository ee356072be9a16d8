package hanzo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// loggingFail logs two lines to stderr, then fails with a two-line message.
type loggingFail struct{}

func (loggingFail) Run(map[string]any) (any, error) {
	fmt.Fprintln(os.Stderr, "log: starting")
	fmt.Fprintln(os.Stderr, "log: about to fail")
	return nil, errors.New("it broke\nbadly")
}
func (loggingFail) Schema() ToolSchema { return ToolSchema{Name: "fail"} }

// serveTools are the tools the re-executed test binary serves.
var serveTools = []Tool{greet, mapTool{"echo"}, loggingFail{}, panicTool{}}

// TestMain turns the test binary into a tool when HANZO_SDK_TEST_SERVE=1, so the tests can
// run Serve as a real process: real stdin, stdout, stderr and exit code.
func TestMain(m *testing.M) {
	if os.Getenv("HANZO_SDK_TEST_SERVE") == "1" {
		Serve(serveTools...)
		panic("Serve returned")
	}
	code := m.Run()
	removeArtifacts()
	os.Exit(code)
}

type processResult struct {
	stdout, stderr string
	code           int
}

func runServe(t *testing.T, function, stdin string, args ...string) processResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HANZO_SDK_TEST_SERVE=1", "HANZO_FUNCTION="+function)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return processResult{stdout.String(), stderr.String(), code}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestServeProcess(t *testing.T) {
	cases := []struct {
		name, function, stdin string
		stdout                string // exact, without the trailing newline
		code                  int
		stderrLast            string // the last stderr line; "" means stderr must be empty
	}{
		{"default is the first tool", "", `{"name":"Ada"}`, `{"message":"Hello, Ada!"}`, 0, ""},
		{"run is the first tool", "run", `{"name":"Ada"}`, `{"message":"Hello, Ada!"}`, 0, ""},
		{"by name", "echo", `{"x":[1,2,{"y":null}]}`, `{"seen_by":"echo","x":[1,2,{"y":null}]}`, 0, ""},
		{"empty stdin", "echo", ``, `{"seen_by":"echo"}`, 0, ""},
		{"tool error", "greet", `{"name":""}`, `{"error":"name must not be empty"}`, 1, "name must not be empty"},
		{"invalid params", "greet", `{"name":`, `{"error":"invalid params: unexpected EOF"}`, 1, "invalid params: unexpected EOF"},
		{"missing field", "", `{}`, `{"error":"invalid params: missing required field \"name\""}`, 1, `invalid params: missing required field "name"`},
		{"unknown function", "nope", `{}`, "{\"error\":\"unknown function `nope`; available: greet, echo, fail, panic\"}", 1,
			"unknown function `nope`; available: greet, echo, fail, panic"},
		{"logs then fails", "fail", `{}`, `{"error":"it broke\nbadly"}`, 1, "it broke badly"},
		{"panic", "panic", `{}`, `{"error":"tool panicked: boom second line"}`, 1, "tool panicked: boom second line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runServe(t, c.function, c.stdin)
			if r.code != c.code {
				t.Errorf("exit code %d, want %d (stderr %q)", r.code, c.code, r.stderr)
			}
			if !strings.HasSuffix(r.stdout, "\n") || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("stdout %q is not exactly one line", r.stdout)
			}
			if got := strings.TrimSuffix(r.stdout, "\n"); got != c.stdout {
				t.Errorf("stdout\n got %s\nwant %s", got, c.stdout)
			}
			if c.stderrLast == "" && r.stderr != "" {
				t.Errorf("stderr %q, want none", r.stderr)
			}
			if c.stderrLast != "" && lastLine(r.stderr) != c.stderrLast {
				t.Errorf("last stderr line %q, want %q (stderr %q)", lastLine(r.stderr), c.stderrLast, r.stderr)
			}
		})
	}
}

func TestServeProcessKeepsToolLogs(t *testing.T) {
	r := runServe(t, "fail", `{}`)
	if r.stderr != "log: starting\nlog: about to fail\nit broke badly\n" {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestServeProcessSchema(t *testing.T) {
	r := runServe(t, "", "", "--schema")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var doc struct {
		Name      string       `json:"name"`
		Functions []ToolSchema `json:"functions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if doc.Name != "greet" || len(doc.Functions) != len(serveTools) {
		t.Errorf("schema %s", r.stdout)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestServeInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := serve(nil, strings.NewReader(`{"name":"Ada"}`), &stdout, &stderr, "greet", serveTools)
	if code != 0 || stdout.String() != "{\"message\":\"Hello, Ada!\"}\n" || stderr.Len() != 0 {
		t.Errorf("code %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}

	stderr.Reset()
	code = serve(nil, strings.NewReader(`{"name":"Ada"}`), failingWriter{}, &stderr, "greet", serveTools)
	if code != 1 || stderr.String() != "cannot write output to stdout: broken pipe\n" {
		t.Errorf("lost output: code %d stderr %q", code, stderr.String())
	}

	stdout.Reset()
	stderr.Reset()
	code = serve(nil, strings.NewReader(`{}`), &stdout, &stderr, "", nil)
	if code != 1 || stdout.String() != "{\"error\":\"this module exports no tools\"}\n" {
		t.Errorf("no tools: code %d stdout %q", code, stdout.String())
	}
}
