// hanzo-node's code-cache step for Deno tools (see codecache.rs), run once per tool by the
// node, in the sandbox, after `deno install` has fetched and transpiled the tool. Deno
// stores the V8 code of every module it compiles in DENO_DIR/v8_code_cache_v2, which is
// writable only to this step; jobs get that file read-only and skip compiling.
//
// None of the tool's code runs here, and neither does the runner's:
// 1. This module reads stdin the way the runner does, so that deno's lazily loaded
//    modules behind it (fetch's Response, web streams) are compiled and cached too.
// 2. hanzo_compile.mjs imports hanzo_stop.mjs, then the runner, then the tool. Importing
//    it loads, compiles and links the whole graph (deno caches each module's code as it
//    compiles it) and then evaluates the modules in import order: hanzo_stop.mjs first,
//    whose only statement throws, which ends the evaluation of the whole graph before any
//    other module in it has run (ECMAScript module evaluation stops at the first abrupt
//    completion; hanzo_stop.mjs is synchronous, so no sibling starts meanwhile).
// A graph that fails to link (a missing export) rejects the same way, before evaluation.
// Either way the import rejects, and this step ends normally for deno to finish writing.

await new Response(Deno.stdin.readable).text();
try {
  await import("./hanzo_compile.mjs");
} catch {
  // Expected: hanzo_stop.mjs threw (or the graph did not link; the job will say why).
}
