# hanzo-node's Python runner (CONTRACTS 1c): placed in the job's work directory next to
# a copy of the tool and run as `python -I [-S] -B .hanzo_runner.py TOOL.py`.
#
# It reads the params (JSON) from stdin, loads the tool from the work-directory copy,
# calls the function named by HANZO_FUNCTION (default `run`; awaiting it when it is a
# coroutine), and writes the result as one JSON document to the real stdout, exit 0.
# Any failure writes {"error": "<Type>: message"} to stdout and the traceback to
# stderr, exit 1; an unknown function exits 2 (the node reports it as bad input).
#
# While the tool loads and runs, file descriptor 1 and sys.stdout both point at stderr,
# so print(), os.write(1, ...) and child processes all land in the job's logs and can
# never corrupt the output. The real stdout is kept on a private, non-inheritable
# descriptor that only this runner writes to.
# Only what every run needs is imported up front (asyncio alone costs ~25 ms).
import importlib.util
import json
import os
import sys
import types

EXIT_FAILED = 1
EXIT_UNKNOWN_FUNCTION = 2


def main():
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def finish(code, payload):
        try:
            out.write(payload)
            out.write("\n")
            out.flush()
        finally:
            sys.stderr.flush()
            # os._exit: a thread the tool left running must not hold the job open, and
            # the tool's atexit handlers must not write after the result.
            os._exit(code)

    def fail(message, code=EXIT_FAILED):
        print(message, file=sys.stderr)
        finish(code, json.dumps({"error": message}, ensure_ascii=False))

    def fail_exc(prefix, e):
        import traceback

        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        fail(prefix + msg)

    path = sys.argv[1]
    name = os.environ.get("HANZO_FUNCTION") or "run"
    try:
        params = json.loads(sys.stdin.buffer.read() or b"{}")
    except BaseException as e:  # noqa: BLE001
        fail_exc("cannot read the params: ", e)

    stem = os.path.splitext(os.path.basename(path))[0]
    # The tool's own name, unless that would shadow a module (a tool called json.py
    # must still be able to `import json`).
    taken = stem in sys.modules or stem in getattr(sys, "stdlib_module_names", ())
    modname = stem if stem.isidentifier() and not taken else "hanzo_tool"
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001
        fail_exc("", e)

    callables = sorted(
        n
        for n, f in vars(module).items()
        if isinstance(f, types.FunctionType) and f.__module__ == modname and not n.startswith("_")
    )
    fn = vars(module).get(name)
    if name not in callables or not callable(fn):
        listed = ", ".join(callables) if callables else "none"
        fail(
            f"unknown function '{name}' (callable functions: {listed})",
            EXIT_UNKNOWN_FUNCTION,
        )

    try:
        result = fn(params)
        if hasattr(type(result), "__await__"):
            import asyncio

            async def wait(a):
                return await a

            result = asyncio.run(wait(result))
    except BaseException as e:  # noqa: BLE001
        fail_exc("", e)

    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except BaseException as e:  # noqa: BLE001
        fail(f"the result of {name}() is not JSON-serialisable: {type(e).__name__}: {e}")
    finish(0, text)


main()
