//! `hanzo-node receipt verify PATH`: checks a receipt's signature and, given the
//! data, its hashes.

use clap::{Args, Subcommand};
use hanzo_compute::{ComputeError, Receipt, RuntimeKind};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ReceiptCmd {
    /// Verify a receipt: its signature always, and its hashes for the data given.
    /// Exit 0 when it verifies, 1 when it does not, 2 when it cannot be read.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The receipt file (JSON).
    pub path: PathBuf,
    /// Check code_hash against this module or script file.
    #[arg(long, value_name = "PATH")]
    pub code: Option<PathBuf>,
    /// Check input_hash against these params (JSON).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Check output_hash against this output (JSON).
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
    /// Require the receipt to be signed by this node id (hex public key).
    #[arg(long, value_name = "HEX")]
    pub node_id: Option<String>,
}

pub fn run(cmd: ReceiptCmd) -> anyhow::Result<u8> {
    let ReceiptCmd::Verify(args) = cmd;
    let text = std::fs::read_to_string(&args.path)
        .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", args.path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ComputeError::invalid(format!("{} is not JSON: {e}", args.path.display())))?;
    // serde_json keeps the last of a duplicated key and verifies that; a reader keeping
    // the first would trust another value under the same signature. Readable JSON, but
    // not a receipt any node signed: it does not verify (exit 1).
    if let Err(e) = hanzo_compute::receipt::check_unique_keys(&text) {
        return fail(format!("receipt does not verify: {e}"));
    }
    let receipt = match Receipt::verify(&value) {
        Ok(r) => r,
        Err(e) => return fail(format!("receipt does not verify: {e}")),
    };
    if let Some(id) = &args.node_id
        && !id.eq_ignore_ascii_case(&receipt.node_id)
    {
        return fail(format!(
            "receipt was signed by node {}, not {id}",
            receipt.node_id
        ));
    }
    if let Some(path) = &args.code {
        let bytes = std::fs::read(path)
            .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", path.display())))?;
        // A WASM receipt hashes the binary module, also when it was run from WAT.
        let digest = match receipt.runtime {
            RuntimeKind::Wasm => hanzo_wasm_runtime::module_digest(&bytes)?,
            _ => hanzo_compute::receipt::sha256_hex(&bytes),
        };
        if digest != receipt.code_hash {
            return fail(format!(
                "code_hash does not match: receipt has {}, {} hashes to {digest}",
                receipt.code_hash,
                path.display()
            ));
        }
    }
    if let Some(p) = &args.params {
        let v = json_arg(p, "--params")?;
        if let Err(e) = receipt.check_input(&v) {
            return fail(e.to_string());
        }
    }
    if let Some(o) = &args.output {
        let v = json_arg(o, "--output")?;
        if let Err(e) = receipt.check_output(&v) {
            return fail(e.to_string());
        }
    }
    let pinned = if args.node_id.is_some() {
        "the node given with --node-id".to_string()
    } else {
        // A valid signature only says some key signed it: anyone can make a key.
        format!(
            "NOT PINNED: any node's key is accepted; pass --node-id {} to require this signer",
            receipt.node_id
        )
    };
    println!(
        "ok: receipt verifies: job {} on {} ({:?}), signed by node {} ({pinned})",
        receipt.job_id, receipt.runtime, receipt.status, receipt.node_id
    );
    Ok(0)
}

fn json_arg(text: &str, flag: &str) -> Result<Value, ComputeError> {
    serde_json::from_str(text).map_err(|e| ComputeError::invalid(format!("{flag} is not valid JSON: {e}")))
}

fn fail(msg: String) -> anyhow::Result<u8> {
    eprintln!("error: {}", crate::one_line(&msg));
    Ok(1)
}
