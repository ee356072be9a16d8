//! SDK for writing [hanzo-node](https://github.com/hanzoai/hanzo-node) tools in Rust.
//!
//! A tool is a function from one JSON value (`params`) to one JSON value. Mark plain functions
//! with [`#[tool]`](tool) and list them once with [`export!`]; the crate then builds, from the
//! same source, into both shapes the node runs:
//!
//! * a WASM core module following the **exports ABI** (`cargo build --target wasm32-wasip1`
//!   produces `<lib>.wasm` from the `cdylib`): every tool is an export `NAME(ptr, len) -> i64`
//!   answering with the envelope `{"ok": output}` or `{"error": message}`, next to
//!   `hanzo_alloc`, `hanzo_free`, `hanzo_schema` and `memory`;
//! * a **stdio command** (a `[[bin]]` whose `main` calls the generated `hanzo_main()`): params
//!   on stdin, output on stdout, the function chosen by `HANZO_FUNCTION`. Built for
//!   `wasm32-wasip1` it is a WASI command; built natively it is a `native` runtime tool;
//! * built natively, the `cdylib` is a **native shared library** (`lib<name>.so`) exporting the
//!   seed's `execute_tool(params_ptr: *const u8, params_len: usize) -> *mut c_char`, which
//!   answers the same envelope as a NUL-terminated string for the tool `HANZO_FUNCTION` names,
//!   and `hanzo_free_result(ptr)` to free it. hanzo-node's `native` runtime loads it only in a
//!   sandboxed helper process.
//!
//! The binary compiles the library's source as a module (`#[path = "lib.rs"] mod tools;`)
//! rather than linking the library: on wasm, rustc exports every `#[no_mangle]` symbol of all
//! linked crates from executables too, and a command exporting `hanzo_alloc` would be taken
//! for an exports-ABI module. Inside a binary target the macros emit no WASM exports at all.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Params {
//!     name: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting {
//!     message: String,
//! }
//!
//! /// Greets someone by name.
//! #[hanzo_tool::tool]
//! fn greet(params: Params) -> Result<Greeting, String> {
//!     if params.name.is_empty() {
//!         return Err("name must not be empty".into());
//!     }
//!     Ok(Greeting { message: format!("Hello, {}!", params.name) })
//! }
//!
//! hanzo_tool::export!(greet);
//!
//! # fn main() {
//! let greet = hanzo_tools()[0];
//! assert_eq!(greet.name, "greet");
//! assert_eq!(greet.call(br#"{"name":"Ada"}"#).unwrap()["message"], "Hello, Ada!");
//! assert_eq!(greet.envelope(br#"{"name":""}"#), br#"{"error":"name must not be empty"}"#);
//! # }
//! ```
//!
//! The contract itself is specified in the project's `CONTRACTS.md` §1; the README next to this
//! crate shows a complete tool crate and its build commands.

// Lets the macros' `::hanzo_tool::...` paths resolve inside this crate's own tests and doctests.
extern crate self as hanzo_tool;

mod def;
mod stdio;

// Public only for the code `#[tool]` and `export!` generate; reached via `__private`.
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod abi;

#[cfg(not(target_family = "wasm"))]
#[doc(hidden)]
pub mod native;

pub use def::{ToolDef, envelope, parse_params, schema_document, select, to_output};
pub use stdio::{StdioOutcome, run_stdio};

/// Turns a free function `fn NAME(params: I) -> O` (or `-> Result<O, E>` with `E: Display`)
/// into a hanzo tool.
///
/// `I` must be `serde::de::DeserializeOwned + schemars::JsonSchema`, `O` must be
/// `serde::Serialize + schemars::JsonSchema`. The function stays callable as before; the
/// attribute adds:
///
/// * on `target_family = "wasm"`, outside binary targets, an export named exactly `NAME`
///   implementing the exports ABI (`NAME(ptr: i32, len: i32) -> i64`, answering
///   `{"ok": ..}` / `{"error": ..}`);
/// * a hidden constant `__hanzo_tool_NAME: hanzo_tool::ToolDef` (name, the doc comment as
///   description, input/output JSON Schemas, dispatch) that [`export!`] collects.
///
/// A fallible tool is recognised by its return type's last path segment being `Result`
/// (`Result<O, E>`, `std::io::Result<O>`, `anyhow::Result<O>`, ...).
pub use hanzo_tool_macros::tool;

/// Collects the crate's tools: `hanzo_tool::export!(run, other, module::third);`.
///
/// Invoke it once, at the crate root of the tool's library. It emits:
///
/// * `pub fn hanzo_tools() -> &'static [&'static hanzo_tool::ToolDef]`, the tools in the
///   listed order (handy for native tests);
/// * `pub fn hanzo_main() -> !`, the stdio contract: reads params from stdin, runs the tool
///   named by `HANZO_FUNCTION`, prints the output, exits (0 on success, 1 on failure);
/// * on wasm, outside binary targets, the exports `hanzo_schema`, `hanzo_alloc` and
///   `hanzo_free`, and, when no listed tool is called `run`, a `run` export aliasing the first
///   one, so the node's default function name always works;
/// * on every other target, outside binary targets, the C symbols
///   `execute_tool(params_ptr: *const u8, params_len: usize) -> *mut c_char` (runs the tool
///   `HANZO_FUNCTION` names, answers `{"ok": ..}` / `{"error": ..}` as a NUL-terminated string;
///   a panic becomes `{"error": "tool panicked: .."}`) and `hanzo_free_result(ptr)`, so the
///   native `cdylib` is a `native` runtime tool. Being unmangled symbols, they make two tool
///   libraries clash when linked into one binary: link at most one per binary.
///
/// The first listed tool is the default: it answers `HANZO_FUNCTION` unset or `run` when no
/// tool is named `run`, and its document is the top level of `hanzo_schema`.
pub use hanzo_tool_macros::export;

/// `serde_json` as the SDK uses it, so tool crates need no direct dependency to take or
/// return arbitrary JSON.
pub use serde_json;
/// Any JSON value; as a tool's input type it accepts every params document.
pub use serde_json::Value;

/// Implementation details used by the generated code; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;

    pub use crate::def::{error_envelope, input_schema, ok_envelope, output_schema};
    pub use crate::stdio::stdio_main;

    #[cfg(target_family = "wasm")]
    pub use crate::abi;

    #[cfg(not(target_family = "wasm"))]
    pub use crate::native;

    /// Names the success type of a fallible tool's return type, so that type aliases such as
    /// `anyhow::Result<T>` still yield `T`'s schema.
    pub trait ResultOk {
        /// The `Ok` type.
        type Ok;
    }

    impl<T, E> ResultOk for Result<T, E> {
        type Ok = T;
    }
}
