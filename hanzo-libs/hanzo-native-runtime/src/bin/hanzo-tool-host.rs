//! The tool-host helper as a program of its own (the node binary embeds the same
//! `tool_host_main` behind a hidden subcommand): loads a cdylib or runs a built-in tool,
//! inside the sandbox the native runtime starts it in. Not meant to be run by hand.

/// The node's allocator (hanzo-node's `main.rs` says why), so that the memory rlimit
/// a tool host runs under is tested against what the node runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(hanzo_native_runtime::tool_host_main(args))
}
