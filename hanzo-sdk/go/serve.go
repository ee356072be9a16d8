package hanzo

import (
	"fmt"
	"io"
	"os"
)

// Serve performs the stdio contract for tools and exits; call it from main. It is what a
// native executable and a WASI command (GOOS=wasip1 GOARCH=wasm go build) do:
//
//   - it reads all of stdin as the params (empty input means {});
//   - it runs the tool [Select] picks for $HANZO_FUNCTION (unset or empty means run: the
//     tool named run, else the first tool);
//   - on success it writes the output as one line of compact JSON to stdout and exits 0;
//   - on failure (unknown function, invalid params, the tool's error, a panic, output
//     encoding/json cannot encode) it writes {"error": message} to stdout, the message on
//     one line as the last line of stderr, and exits 1.
//
// Run with the single argument --schema, it prints [SchemaDocument] instead and exits 0.
// Tools log by writing to stderr (os.Stderr, the log package); they must never write to
// stdout, which holds the output.
func Serve(tools ...Tool) {
	os.Exit(serve(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv("HANZO_FUNCTION"), tools))
}

// serve is Serve without the process: it returns the exit code.
func serve(args []string, stdin io.Reader, stdout, stderr io.Writer, function string, tools []Tool) int {
	if len(args) == 1 && args[0] == "--schema" {
		return emit(stdout, stderr, SchemaDocument(tools), nil)
	}
	// Read the params first, even when the function turns out to be unknown, so the host
	// writing them never meets a closed pipe.
	params, err := io.ReadAll(stdin)
	if err != nil {
		return emit(stdout, stderr, nil, fmt.Errorf("cannot read params from stdin: %v", err))
	}
	tool, err := Select(tools, function)
	if err != nil {
		return emit(stdout, stderr, nil, err)
	}
	doc, err := runTool(tool, params)
	return emit(stdout, stderr, doc, err)
}

// emit writes the outcome and returns the exit code.
func emit(stdout, stderr io.Writer, doc []byte, err error) int {
	code := 0
	if err != nil {
		doc, code = errorDocument(err), 1
	}
	if _, werr := stdout.Write(append(doc, '\n')); werr != nil {
		// The output is lost (closed pipe, full disk): success can no longer be claimed.
		fmt.Fprintf(stderr, "cannot write output to stdout: %v\n", oneLine(werr.Error()))
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, oneLine(errorMessage(err)))
	}
	return code
}
