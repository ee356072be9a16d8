//! Shared helpers: one data directory (so builds are cached across tests, as on a
//! node), the runtime in each ABI setting, and fixture packages.

use hanzo_compute::config::{GoConfig, WasmConfig};
use hanzo_compute::{Execution, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_go_runtime::GoRuntime;
use hanzo_sandbox::Sandbox;
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The data directory, shared by every test process of this suite and kept between
/// runs (under cargo's target directory): Go builds, the Go build cache and compiled
/// modules are then made once, as on a node. Safe to share: builds and modules are
/// stored under their digests and renamed into place.
pub fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hanzo-go-runtime-data");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

pub fn sandbox() -> Arc<Sandbox> {
    static SB: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SB.get_or_init(|| Arc::new(Sandbox::detect())).clone()
}

fn wasm() -> Arc<dyn Runtime> {
    static RT: OnceLock<Arc<WasmRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(WasmRuntime::new(WasmOptions::new(data_dir(), WasmConfig::default())).unwrap())
    })
    .clone()
}

/// The runtime with `[compute.go] abi = abi`, shared by the tests.
pub fn runtime(abi: &str) -> Arc<GoRuntime> {
    type ByAbi = std::sync::Mutex<Vec<(String, Arc<GoRuntime>)>>;
    static RTS: OnceLock<ByAbi> = OnceLock::new();
    let mut v = RTS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, rt)) = v.iter().find(|(a, _)| a == abi) {
        return rt.clone();
    }
    let config = GoConfig {
        abi: abi.into(),
        ..GoConfig::default()
    };
    let rt = Arc::new(GoRuntime::new(sandbox(), wasm(), &config, data_dir(), 128));
    v.push((abi.into(), rt.clone()));
    rt
}

/// Writes a package `name` (a module of its own) with `main.go`. Test processes share
/// it: files are only replaced when they differ, and atomically, so that another
/// process hashing or building the package never sees a half-written file.
pub fn package(name: &str, main_go: &str) -> PathBuf {
    // Outside the data directory, which no package may overlap.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hanzo-go-runtime-fixtures")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_atomically(
        &dir.join("go.mod"),
        &format!("module example.com/{name}\n\ngo 1.24\n"),
    );
    write_atomically(&dir.join("main.go"), main_go);
    dir
}

/// A package no other test or earlier run has built.
pub fn fresh_package(prefix: &str, main_go: &str) -> PathBuf {
    package(&format!("{prefix}-{}", hanzo_compute::new_job_id()), main_go)
}

/// Replaces `path` with `text` by rename, unless it already holds exactly that.
pub fn write_atomically(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The repository's examples/go/<name>.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/go")
        .join(name)
}

/// A go job for `source`.
pub fn job(source: &Path) -> JobSpec {
    JobSpec::new(RuntimeKind::Go, source.to_string_lossy())
}

/// Runs `spec` on the runtime with `abi`.
pub async fn run(abi: &str, spec: JobSpec) -> Execution {
    runtime(abi).execute(&Job::new(spec)).await
}

/// The fixture of the conformance suite and the hostile tests: one package whose
/// behaviour HANZO_FUNCTION picks (one build per target instead of one per fixture).
pub const FIXTURE: &str = r#"package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
)

var hog [][]byte

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var params map[string]any
	_ = json.Unmarshal(in, &params)
	switch os.Getenv("HANZO_FUNCTION") {
	case "run", "echo":
		os.Stdout.Write(in)
	case "fail":
		fmt.Fprintln(os.Stderr, "requested failure")
		os.Exit(1)
	case "spin":
		for {
		}
	case "hog":
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hog = append(hog, b)
		}
	case "big":
		out, _ := json.Marshal(strings.Repeat("x", int(params["bytes"].(float64))))
		os.Stdout.Write(out)
	case "log":
		fmt.Fprintln(os.Stderr, params["message"])
		os.Stdout.WriteString(`{"logged":true}`)
	case "read":
		b, err := os.ReadFile(params["path"].(string))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, _ := json.Marshal(string(b))
		os.Stdout.Write(out)
	case "connect":
		c, err := net.Dial("tcp", params["addr"].(string))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Close()
		os.Stdout.WriteString(`"connected"`)
	case "spawn":
		// Leaves a child behind and exits at once.
		cmd := exec.Command("/bin/sleep", params["marker"].(string))
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.WriteString(`"spawned"`)
	case "forkbomb":
		for {
			exec.Command("/bin/sh", "-c", "sleep 38 & sleep 38").Start()
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown function", os.Getenv("HANZO_FUNCTION"))
		os.Exit(1)
	}
}
"#;

/// The fixture package.
pub fn fixture() -> PathBuf {
    package("fixture", FIXTURE)
}
