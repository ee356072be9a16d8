//! `run k8s` and `service … --runtime k8s` through the binary. No cluster can run on
//! these machines: the request sequences are tested against a scripted API in
//! hanzo-k8s-runtime (and end to end there with HANZO_K8S_E2E=1); here the node's own
//! part is checked: a missing or unreachable cluster is exit 4 with one error line that
//! says what to do, for jobs and services alike, and the runtime is listed with why.

use crate::util::{Home, assert_one_error_line};

/// A kubeconfig whose API server refuses connections.
fn unreachable_kubeconfig(h: &Home) -> String {
    h.file(
        "kubeconfig",
        r#"apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#,
    )
}

#[test]
fn no_kubeconfig_is_exit_4_naming_the_setting() {
    let h = Home::new();
    let missing = h.path("no-such-kubeconfig").display().to_string();
    let cmds: [&[&str]; 3] = [
        &["run", "k8s", "busybox:latest"],
        &["service", "ls", "--runtime", "k8s"],
        &[
            "service",
            "deploy",
            "--runtime",
            "k8s",
            "--name",
            "web",
            "--image",
            "busybox:latest",
        ],
    ];
    for args in cmds {
        let r = h.run_with(args, |c| {
            c.env("HANZO_COMPUTE_KUBERNETES_CONFIG_PATH", &missing);
        });
        assert_one_error_line(&r, 4, "config_path");
    }
}

#[test]
fn an_unreachable_cluster_is_exit_4_for_jobs_and_services() {
    let h = Home::new();
    let kc = unreachable_kubeconfig(&h);
    let cmds: [&[&str]; 3] = [
        &["run", "k8s", "busybox:latest", "--params", "{}"],
        &["service", "ls", "--runtime", "k8s"],
        &["service", "rm", "web", "--runtime", "k8s"],
    ];
    for args in cmds {
        let r = h.run_with(args, |c| {
            c.env("HANZO_COMPUTE_KUBERNETES_CONFIG_PATH", &kc);
        });
        assert_one_error_line(&r, 4, "Kubernetes API");
    }
}

#[test]
fn the_runtime_is_listed_with_why_it_is_unavailable() {
    let h = Home::new();
    let kc = unreachable_kubeconfig(&h);
    let r = h.run_with(&["runtimes", "--json"], |c| {
        c.env("HANZO_COMPUTE_KUBERNETES_CONFIG_PATH", &kc);
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let all = r.json();
    let k8s = all["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "k8s")
        .expect("k8s is listed");
    assert_eq!(k8s["available"], false);
    assert!(
        k8s["detail"].as_str().unwrap().contains("Kubernetes API"),
        "{k8s}"
    );
    // What the kubelet enforces is stated even while the cluster is away.
    assert_eq!(k8s["capabilities"]["limits"]["memory"]["support"], "enforced");
}

#[test]
fn a_service_host_is_refused_on_docker_with_a_pointer_to_k8s() {
    let h = Home::new();
    let r = h.run(&[
        "service",
        "deploy",
        "--name",
        "web",
        "--image",
        "busybox:latest",
        "--port",
        "80",
        "--host",
        "web.example.com",
    ]);
    assert_one_error_line(&r, 2, "k8s");
}
