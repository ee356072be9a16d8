//! The tool-host helper as a program of its own (the node binary embeds the same
//! `tool_host_main` behind a hidden subcommand): loads a cdylib or runs a built-in tool,
//! inside the sandbox the native runtime starts it in. Not meant to be run by hand.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(hanzo_native_runtime::tool_host_main(args))
}
