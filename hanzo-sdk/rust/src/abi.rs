//! The exports ABI (WASM only): linear-memory buffers handed across the host boundary.
//!
//! Buffers are plain byte allocations with alignment 1, so the host may free any pointer this
//! module hands out (input buffers from `hanzo_alloc`, output buffers returned packed in an
//! `i64`) with `hanzo_free(ptr, len)`. The host creates a fresh instance per call, so outputs it
//! does not free are reclaimed with the instance.
//!
//! Nothing here is `#[no_mangle]`: `export!` emits the `hanzo_alloc` / `hanzo_free` exports in
//! the tool crate. On wasm, rustc exports every `#[no_mangle]` symbol of the whole dependency
//! graph from *executables* as well as cdylibs, so symbols defined here would turn every WASI
//! command linking this crate into an (apparent) exports-ABI module.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};

use crate::def::{ToolDef, schema_document};
use crate::stdio::panic_message;

/// Allocation with alignment 1 for `len` bytes; `None` for sizes no buffer can have.
fn layout(len: i32) -> Option<Layout> {
    let len = usize::try_from(len).ok()?;
    Layout::from_size_align(len, 1).ok()
}

/// Body of the `hanzo_alloc` export: a pointer to `len` writable bytes.
///
/// Failure traps rather than returning 0: address 0 lies inside linear memory, so a host that
/// took 0 for a buffer would write the params over the module's own data.
pub fn alloc_buffer(len: i32) -> i32 {
    install_panic_hook();
    let Some(layout) = layout(len) else {
        panic!("hanzo_alloc: invalid length {len}");
    };
    if layout.size() == 0 {
        // A zero-length buffer needs no memory; any non-null, aligned pointer will do.
        return 1;
    }
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc(layout) };
    if ptr.is_null() {
        // Prints "memory allocation of N bytes failed" to stderr, then aborts (a trap).
        handle_alloc_error(layout);
    }
    ptr as usize as i32
}

/// Body of the `hanzo_free` export: frees a buffer obtained from `hanzo_alloc` or returned by
/// a tool export.
///
/// # Safety
/// `ptr` and `len` must describe exactly one live buffer handed out by this module, freed at
/// most once.
pub unsafe fn free_buffer(ptr: i32, len: i32) {
    if ptr == 0 {
        return;
    }
    if let Some(layout) = layout(len).filter(|l| l.size() > 0) {
        // SAFETY: the caller promises (ptr, len) came from `alloc` with this very layout:
        // `hanzo_alloc` and `pack` both allocate `len` bytes with alignment 1.
        unsafe { dealloc(ptr as u32 as usize as *mut u8, layout) }
    }
}

/// Hands `bytes` to the host: `(ptr << 32) | len`, the buffer leaked until `hanzo_free`.
pub fn pack(bytes: Vec<u8>) -> i64 {
    // `into_boxed_slice` drops spare capacity so the allocation is exactly `len` bytes with
    // alignment 1, matching what `hanzo_free(ptr, len)` deallocates.
    let bytes = Box::leak(bytes.into_boxed_slice());
    let ptr = bytes.as_mut_ptr() as usize as u64;
    let len = bytes.len() as u64;
    ((ptr << 32) | (len & 0xffff_ffff)) as i64
}

/// Body of a tool export `NAME(ptr, len) -> i64`.
///
/// # Safety
/// `[ptr, ptr + len)` must be readable memory of this instance (the host wrote the params
/// there, normally into a `hanzo_alloc` buffer). The buffer is not freed here: the host owns
/// it and may free it after the call.
pub unsafe fn call_export(tool: &ToolDef, ptr: i32, len: i32) -> i64 {
    install_panic_hook();
    let input: &[u8] = match usize::try_from(len) {
        Ok(0) | Err(_) => &[],
        // SAFETY: guaranteed by the caller.
        Ok(len) => unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len) },
    };
    pack(tool.envelope(input))
}

/// Body of the `hanzo_schema` export.
pub fn schema_export(tools: &[&ToolDef]) -> i64 {
    pack(schema_document(tools).to_string().into_bytes())
}

/// Panics abort on wasm (the host sees a trap); before that, leave the reason as one stderr
/// line, which the host can show in place of a bare "unreachable" trap.
///
/// Once per instance: every call reaches here twice (`hanzo_alloc`, then the tool), and
/// setting the hook takes std's hook lock and drops the old one.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{}", panic_message(info)))));
}
