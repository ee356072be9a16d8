//! Docker test support: the docker CLI, a check that a daemon answers, and fixture
//! images built from local files (nothing is ever pulled: the test machines may have
//! no registry access), shared by the Docker runtime's suite and the node's API tests.
//!
//! Fixture images carry a [`FIXTURE_LABEL`] holding a fingerprint of what they were
//! built from; a test process rebuilds an image only when the label does not match,
//! under a machine-wide file lock, so the tests (one process each under nextest, in
//! several crates) share one build.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// busybox (static) with every applet linked in /bin; its command runs the shell
/// script in `$HANZO_TEST_SCRIPT` ([`SCRIPT_VAR`]).
pub const BUSYBOX: &str = "hanzo-test/busybox:latest";
/// The env variable the busybox image's command evaluates.
pub const SCRIPT_VAR: &str = "HANZO_TEST_SCRIPT";
/// Bump to force every machine to rebuild the fixtures.
pub const FIXTURE_VERSION: &str = "1";
/// The image label holding a fixture's fingerprint.
pub const FIXTURE_LABEL: &str = "hanzo.test.fixture";

/// Runs `docker ARGS` and returns its output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the docker CLI ({e}); run `source scripts/docker.sh && ensure_docker`")
        })
}

/// Runs `docker ARGS`, panics unless it succeeds, returns its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Panics (the test fails, it does not skip) unless a Docker daemon answers.
pub fn require_docker() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "no Docker daemon answers `docker info` ({}); these tests need one: \
                 run `source scripts/docker.sh && ensure_docker`",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => {
                panic!("the docker CLI is missing ({e}); run `source scripts/docker.sh && ensure_docker`")
            }
        }
    });
}

/// Holds a machine-wide lock while fixtures are checked and built: the daemon is shared
/// by every test process (and every checkout) on the machine.
fn fixture_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("hanzo-docker-test-fixtures.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock().expect("lock the fixture lock file");
    file
}

/// The [`FIXTURE_LABEL`] of a local image, if it exists.
fn fixture_label(image: &str) -> Option<String> {
    let out = docker_output(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{FIXTURE_LABEL}\"}}}}"),
        image,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds `image` with `build` unless it exists with the label `fingerprint`. `build`
/// receives the fingerprint and must tag the image with it as [`FIXTURE_LABEL`].
pub fn ensure_fixture(image: &str, fingerprint: &str, build: impl FnOnce(&str)) {
    if fixture_label(image).as_deref() == Some(fingerprint) {
        return;
    }
    let _lock = fixture_lock();
    if fixture_label(image).as_deref() == Some(fingerprint) {
        return; // another process built it while this one waited
    }
    let old = docker_output(&["image", "inspect", "--format", "{{.Id}}", image]);
    build(fingerprint);
    assert_eq!(
        fixture_label(image).as_deref(),
        Some(fingerprint),
        "{image} was not built"
    );
    // The image the tag used to name is now dangling: remove it (fails harmlessly when
    // a container or another tag still uses it).
    if old.status.success() {
        let old = String::from_utf8_lossy(&old.stdout).trim().to_string();
        if old != docker(&["image", "inspect", "--format", "{{.Id}}", image]) {
            let _ = docker_output(&["rmi", &old]);
        }
    }
}

/// `docker import` of the directory `root` as `image`, with Dockerfile-style changes.
pub fn import_dir(root: &Path, image: &str, changes: &[String]) {
    let tar = root.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of {} failed", root.display());
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.clone());
    }
    args.push(tar.display().to_string());
    args.push(image.to_string());
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A fingerprint of `parts` (each length-prefixed, so boundaries count), in hex.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// [`BUSYBOX`], built once per machine (and per change of the host's busybox):
/// /bin/busybox from the host's busybox-static, a symlink for every applet, /tmp, a
/// passwd with `nobody`; `CMD sh -c 'eval "$HANZO_TEST_SCRIPT"'`. Panics unless a
/// daemon answers. `httpd`, `wget`, `nc` and a shell are all there, so a test can run
/// a tool or a small web service on it.
pub fn busybox_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        let bin = Path::new("/usr/bin/busybox");
        let bytes = std::fs::read(bin).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); install busybox-static (scripts/docker.sh)",
                bin.display()
            )
        });
        let cmd = format!(r#"CMD ["sh", "-c", "eval \"${SCRIPT_VAR}\""]"#);
        let fingerprint = sha256_hex(&[FIXTURE_VERSION.as_bytes(), &bytes, cmd.as_bytes()]);
        ensure_fixture(BUSYBOX, &fingerprint, |fp| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let root = dir.path().join("rootfs");
            for d in ["bin", "tmp", "etc"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::copy(bin, root.join("bin/busybox")).unwrap();
            let list = Command::new(bin).arg("--list").output().expect("busybox --list");
            for applet in String::from_utf8_lossy(&list.stdout).lines() {
                if applet != "busybox" && !applet.contains('/') {
                    std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
                }
            }
            std::fs::write(
                root.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            )
            .unwrap();
            std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
            import_dir(
                &root,
                BUSYBOX,
                &[
                    cmd.clone(),
                    "ENV PATH=/bin".into(),
                    format!("LABEL {FIXTURE_LABEL}={fp}"),
                ],
            );
        });
    });
    BUSYBOX
}
