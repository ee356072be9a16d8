//! The Go SDK (`hanzo-sdk/go`), as this node was built with it.
//!
//! A package's build sees only its own module's tree, so a `replace` of a module by a
//! directory outside it is refused (see `source.rs`). The one exception is the SDK
//! itself, which every Go tool needs and which the examples replace by the checkout's
//! copy (`../../../hanzo-sdk/go`): the node supplies its own copy instead, placed in the
//! build's private source tree where that `replace` points. The host directory the
//! `replace` names is never read, so a go.mod cannot use the SDK's name to show a build
//! any other host directory. The SDK is also the node's ABI (the exports envelope), so
//! building against the node's own copy is what keeps the two in step.

use sha2::{Digest, Sha256};

/// The SDK's module path.
pub const MODULE: &str = "github.com/hanzoai/hanzo-node/hanzo-sdk/go";

/// The SDK's files (its go.mod and every non-test `.go` file), by name. `hanzo-node new
/// go` vendors the same files into a tool project.
pub const FILES: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../../hanzo-sdk/go/go.mod")),
    (
        "call_wasip1.go",
        include_str!("../../../hanzo-sdk/go/call_wasip1.go"),
    ),
    (
        "exports_wasip1.go",
        include_str!("../../../hanzo-sdk/go/exports_wasip1.go"),
    ),
    ("memory.go", include_str!("../../../hanzo-sdk/go/memory.go")),
    ("schema.go", include_str!("../../../hanzo-sdk/go/schema.go")),
    ("serve.go", include_str!("../../../hanzo-sdk/go/serve.go")),
    ("tool.go", include_str!("../../../hanzo-sdk/go/tool.go")),
];

/// sha256 over the SDK's files: part of the digest of every package built with it.
pub(crate) fn digest() -> String {
    let mut h = Sha256::new();
    for (name, text) in FILES {
        for part in [name.as_bytes(), text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_sdk_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hanzo-sdk/go");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == "go.mod" || (n.ends_with(".go") && !n.ends_with("_test.go")))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "update FILES in sdk.rs");
    }
}
