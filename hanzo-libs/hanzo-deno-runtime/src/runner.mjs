// hanzo-node's runner for Deno tools (CONTRACTS §1c). The node writes this file next to
// the tool in the job's work directory and runs it; the tool author never sees it.
//
// It runs before any of the tool's code (the tool is imported dynamically, below), so it
// can keep the real stdout for itself: stdout carries exactly one JSON document, the
// result. Everything the tool prints through console.* or Deno.stdout goes to stderr,
// the job's log stream. (Node compat's process.stdout is not redirected: loading
// node:process costs ~20 ms on every run; tools should log with console.)
//
// __HANZO_TOOL__ is replaced by the node with the tool's path, as a string literal: an
// analysable import needs no read permission, so the tool gets none it was not granted.

const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const outWrite = Deno.stdout.writeSync.bind(Deno.stdout);
const errWrite = Deno.stderr.writeSync.bind(Deno.stderr);
const stringify = JSON.stringify;
const parse = JSON.parse;
const inspect = Deno.inspect;
const exit = Deno.exit;
const now = performance.now.bind(performance);

function writeAll(write, text) {
  const bytes = encode(text);
  let off = 0;
  while (off < bytes.length) off += write(bytes.subarray(off));
}

// ---- stdout is the result's: console output goes to stderr ------------------------
const error = console.error.bind(console);
let indent = "";
const logToStderr = (...args) => {
  if (indent === "") return error(...args);
  const text = args.map((a) => (typeof a === "string" ? a : inspect(a, { colors: false }))).join(" ");
  error(text.split("\n").map((l) => indent + l).join("\n"));
};
const counts = new Map();
const timers = new Map();
Object.assign(console, {
  log: logToStderr,
  info: logToStderr,
  debug: logToStderr,
  dir: (obj, options) => logToStderr(inspect(obj, { colors: false, ...options })),
  dirxml: logToStderr,
  table: (data) => logToStderr(inspect(data, { colors: false })),
  count: (label = "default") => {
    const n = (counts.get(label) ?? 0) + 1;
    counts.set(label, n);
    logToStderr(`${label}: ${n}`);
  },
  countReset: (label = "default") => counts.delete(label),
  time: (label = "default") => timers.set(label, now()),
  timeLog: (label = "default", ...rest) => {
    const t = timers.get(label);
    if (t !== undefined) logToStderr(`${label}: ${(now() - t).toFixed(3)}ms`, ...rest);
  },
  timeEnd: (label = "default") => {
    const t = timers.get(label);
    timers.delete(label);
    if (t !== undefined) logToStderr(`${label}: ${(now() - t).toFixed(3)}ms`);
  },
  group: (...label) => {
    if (label.length) logToStderr(...label);
    indent += "  ";
  },
  groupCollapsed: (...label) => {
    if (label.length) logToStderr(...label);
    indent += "  ";
  },
  groupEnd: () => {
    indent = indent.slice(2);
  },
});
try {
  Object.defineProperty(Deno, "stdout", { value: Deno.stderr, configurable: true, enumerable: true, writable: true });
} catch {
  // A future Deno may freeze its namespace; console output is still redirected.
}

// ---- the contract --------------------------------------------------------------------
function message(e) {
  if (e instanceof Error) return e.message || e.name || "Error";
  try {
    return typeof e === "string" ? e : stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

/// Ends the run as the tool's failure: the stack on stderr (logs), the message on
/// stdout as `{"error": ...}` (hanzo_compute::stdio::failure reads it), exit 1 — or
/// `code`: EXIT_UNKNOWN_FUNCTION (2), which the node reports as bad input.
function fail(text, e, code = 1) {
  if (e instanceof Error && e.stack) writeAll(errWrite, e.stack + "\n");
  writeAll(errWrite, text + "\n");
  writeAll(outWrite, stringify({ error: text }) + "\n");
  exit(code);
}
const EXIT_UNKNOWN_FUNCTION = 2;

const raw = await new Response(Deno.stdin.readable).text();
let params;
try {
  params = parse(raw);
} catch (e) {
  fail(`params are not JSON: ${message(e)}`, e);
}
const name = Deno.env.get("HANZO_FUNCTION") || "run";

let tool;
try {
  tool = await import(__HANZO_TOOL__);
} catch (e) {
  fail(`the tool failed to load: ${message(e)}`, e);
}

const fn = tool[name];
if (typeof fn !== "function") {
  const names = Object.keys(tool).filter((k) => typeof tool[k] === "function").sort();
  fail(
    `unknown function '${name}': the tool exports ${names.length ? names.map((n) => `'${n}'`).join(", ") : "no functions"}`,
    undefined,
    EXIT_UNKNOWN_FUNCTION,
  );
}

let result;
try {
  result = await fn(params);
} catch (e) {
  fail(message(e), e);
}
let text;
try {
  text = stringify(result === undefined ? null : result);
} catch (e) {
  fail(`the result cannot be written as JSON: ${message(e)}`, e);
}
if (text === undefined) fail(`the result (a ${typeof result}) cannot be written as JSON`);
writeAll(outWrite, text + "\n");
// Exit now: timers, servers or promises the tool left behind must not hold the job open.
exit(0);
