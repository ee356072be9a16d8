//! PEP 723 dependencies: installed by uv from PyPI on the first run, reused from the
//! cache on the next, one environment per dependency set, built once under
//! concurrency, nothing half-built left by a failure, read-only for the job.

use crate::util::{Node, err, examples, ok};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::{Instant, SystemTime};

/// The inode and modification time of an environment directory and of its marker:
/// a rebuild (build in a temporary directory, rename into place) changes both.
fn identity(p: &std::path::Path) -> (u64, SystemTime, SystemTime) {
    let m = std::fs::metadata(p).unwrap();
    let marker = std::fs::metadata(p.join("hanzo-env.txt")).unwrap();
    (m.ino(), m.modified().unwrap(), marker.modified().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_installs_second_reuses_other_sets_get_their_own() {
    let n = Node::new();
    let table = examples().join("table.py");
    let params = json!({"rows": [["Oslo", 3.5], ["Rome", 14]], "headers": ["city", "temp"]});
    assert!(n.envs().is_empty());

    let t = Instant::now();
    let ex = n.run(n.job(&table).params(params.clone())).await;
    let cold = t.elapsed();
    let out = ok(&ex).clone();
    let text = out["table"].as_str().unwrap();
    assert!(
        text.contains("| city") && text.contains("| Oslo") && text.contains("14"),
        "{text}"
    );
    let envs = n.envs();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let before = identity(&envs[0]);
    let canonical = std::fs::read_to_string(envs[0].join("hanzo-env.txt")).unwrap();
    assert!(canonical.contains("dependency=tabulate>=0.9"), "{canonical}");

    // Make a rebuild visible even within the file system's timestamp granularity.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t = Instant::now();
    let ex = n.run(n.job(&table).params(params.clone())).await;
    let warm = t.elapsed();
    assert_eq!(ok(&ex), &out);
    assert_eq!(n.envs(), envs, "no new environment");
    assert_eq!(identity(&envs[0]), before, "the environment was rebuilt");

    // Another script with the same set (spelled differently) shares the environment.
    let same = n.script(
        "same.py",
        "# /// script\n# requires-python = \">=3.8\"\n# dependencies = [\"Tabulate >= 0.9\"]\n# ///\nimport tabulate\ndef run(p): return tabulate.__version__\n",
    );
    let ex = n.run(n.job(&same)).await;
    assert_eq!(ok(&ex), &out["tabulate"]);
    assert_eq!(n.envs(), envs);

    // A different set makes a different environment, without the first one's package.
    let other = n.script(
        "slug.py",
        "# /// script\n# dependencies = [\"python-slugify\"]\n# ///\nimport importlib.util\nfrom slugify import slugify\ndef run(p):\n    return {'slug': slugify(p['s']), 'tabulate': importlib.util.find_spec('tabulate') is not None}\n",
    );
    let ex = n
        .run(n.job(&other).params(json!({"s": "Héllo Wörld, ça va?"})))
        .await;
    assert_eq!(ok(&ex), &json!({"slug": "hello-world-ca-va", "tabulate": false}));
    assert_eq!(n.envs().len(), 2);
    assert_eq!(identity(&envs[0]), before);
    assert!(n.leftovers().is_empty());
    eprintln!("timing: table.py cold env {cold:?}, cached env {warm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_runs_build_one_environment() {
    let n = std::sync::Arc::new(Node::new());
    let p = n.script(
        "conc.py",
        "# /// script\n# dependencies = [\"text-unidecode\"]\n# ///\nfrom text_unidecode import unidecode\ndef run(p): return unidecode(p['s'])\n",
    );
    let mut tasks = Vec::new();
    for i in 0..4 {
        let n = n.clone();
        let spec = n.job(&p).params(json!({"s": format!("Ça {i}")}));
        tasks.push(tokio::spawn(async move { n.run(spec).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let ex = t.await.unwrap();
        assert_eq!(ok(&ex), &json!(format!("Ca {i}")));
    }
    // A second build of the same key would have failed to rename onto the first.
    assert_eq!(n.envs().len(), 1);
    assert!(n.leftovers().is_empty());
}

#[tokio::test]
async fn a_failed_install_is_bad_input_and_leaves_nothing() {
    let n = Node::new();
    let ex = n
        .run_script(
            "nope.py",
            "# /// script\n# dependencies = [\"hanzo-no-such-package-zz9\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 2, "{e}");
    let m = e.to_string();
    assert!(
        m.contains("hanzo-no-such-package-zz9") && !m.contains('\n'),
        "{m}"
    );
    assert!(n.envs().is_empty(), "{:?}", n.envs());
    assert!(n.leftovers().is_empty(), "{:?}", n.leftovers());
    // A version that does not exist.
    let ex = n
        .run_script(
            "nover.py",
            "# /// script\n# dependencies = [\"tabulate==0.0.0.1\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    assert_eq!(err(&ex).exit_code(), 2, "{}", err(&ex));
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
}

/// docopt 0.6.2, its only release, is published as a source distribution only: installing
/// it would run its setup.py. Wheels-only refuses it, and nothing is left.
#[tokio::test]
async fn source_distributions_are_not_built() {
    let n = Node::new();
    let ex = n
        .run_script(
            "sdist.py",
            "# /// script\n# dependencies = [\"docopt\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("no usable wheels"), "{e}");
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
}

#[tokio::test]
async fn the_environment_is_read_only_for_the_job() {
    let n = Node::new();
    let ex = n
        .run_script(
            "tamper.py",
            "# /// script\n# dependencies = [\"text-unidecode\"]\n# ///\nimport os, text_unidecode\ndef run(p):\n    d = os.path.dirname(text_unidecode.__file__)\n    try:\n        open(os.path.join(d, '__init__.py'), 'a').write('raise SystemExit')\n        return 'tampered'\n    except OSError as e:\n        return type(e).__name__\n",
            json!({}),
        )
        .await;
    assert_eq!(ok(&ex), &json!("OSError"));
}

#[tokio::test]
async fn no_dependencies_run_without_an_environment() {
    let n = Node::new();
    let src = "import sys\ndef run(p): return sys.prefix == sys.base_prefix\n";
    let p = n.script("bare.py", src);
    let t = Instant::now();
    let ex = n.run(n.job(&p)).await;
    let first = t.elapsed();
    assert_eq!(ok(&ex), &json!(true), "not in a virtual environment");
    let t = Instant::now();
    let ex = n.run(n.job(&p)).await;
    let second = t.elapsed();
    assert_eq!(ok(&ex), &json!(true));
    assert!(!n.rt.envs_dir().exists(), "no cache was created");
    eprintln!("timing: no-deps run {first:?}, again {second:?}");
}
