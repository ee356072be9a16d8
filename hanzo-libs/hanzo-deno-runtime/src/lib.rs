//! hanzo-deno-runtime (work in progress).
