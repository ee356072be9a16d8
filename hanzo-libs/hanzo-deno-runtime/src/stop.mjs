// hanzo-node: imported first by hanzo_compile.mjs (see prepare.mjs); nothing after it runs.
throw new Error("hanzo: compiled, not run");
