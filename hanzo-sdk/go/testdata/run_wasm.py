"""Runs a Go SDK tool module on wasmtime (the Python package), the way hanzo-node does.

    python3 run_wasm.py command MODULE FUNCTION PARAMS_JSON
        WASI command: params on stdin, HANZO_FUNCTION=FUNCTION; prints
        {"exit": code, "stdout": ..., "stderr": ...}
    python3 run_wasm.py reactor MODULE FUNCTION PARAMS_JSON
        exports ABI: _initialize, hanzo_alloc, FUNCTION(ptr, len), read the envelope,
        hanzo_free both buffers, hanzo_schema; prints
        {"envelope": ..., "schema": ..., "stderr": ...}

Used by the optional TestWasmEndToEnd (skipped when `import wasmtime` fails).
"""

import json
import os
import sys
import tempfile

import wasmtime


def wasi(tmp, stdin, function):
    cfg = wasmtime.WasiConfig()
    path = os.path.join(tmp, "stdin")
    with open(path, "wb") as f:
        f.write(stdin)
    cfg.stdin_file = path
    cfg.stdout_file = os.path.join(tmp, "stdout")
    cfg.stderr_file = os.path.join(tmp, "stderr")
    cfg.env = [("HANZO_FUNCTION", function), ("HANZO_JOB_ID", "test")]
    cfg.argv = ["tool"]
    return cfg


def read(path):
    with open(path, "rb") as f:
        return f.read().decode()


def instantiate(module_path, cfg):
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, module_path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(cfg)
    return store, linker.instantiate(store, module)


def command(module_path, function, params):
    with tempfile.TemporaryDirectory() as tmp:
        store, inst = instantiate(module_path, wasi(tmp, params.encode(), function))
        code = 0
        try:
            inst.exports(store)["_start"](store)
        except wasmtime.ExitTrap as e:
            code = e.code
        return {"exit": code, "stdout": read(os.path.join(tmp, "stdout")),
                "stderr": read(os.path.join(tmp, "stderr"))}


def unpack(packed):
    packed &= (1 << 64) - 1
    return packed >> 32, packed & 0xFFFFFFFF


def reactor(module_path, function, params):
    with tempfile.TemporaryDirectory() as tmp:
        store, inst = instantiate(module_path, wasi(tmp, b"", ""))
        ex = inst.exports(store)
        ex["_initialize"](store)
        mem = ex["memory"]
        data = params.encode()
        ptr = ex["hanzo_alloc"](store, len(data))
        mem.write(store, data, ptr)
        out_ptr, out_len = unpack(ex[function](store, ptr, len(data)))
        envelope = json.loads(mem.read(store, out_ptr, out_ptr + out_len))
        ex["hanzo_free"](store, ptr, len(data))
        ex["hanzo_free"](store, out_ptr, out_len)
        s_ptr, s_len = unpack(ex["hanzo_schema"](store))
        schema = json.loads(mem.read(store, s_ptr, s_ptr + s_len))
        ex["hanzo_free"](store, s_ptr, s_len)
        return {"envelope": envelope, "schema": schema,
                "stderr": read(os.path.join(tmp, "stderr"))}


if __name__ == "__main__":
    mode, module_path, function, params = sys.argv[1:5]
    result = {"command": command, "reactor": reactor}[mode](module_path, function, params)
    print(json.dumps(result))
