//! Services against the scripted API: the exact request sequence of deploy (new and
//! redeploy), list, inspect, scale and remove, what is left in the cluster afterwards,
//! and the failures (missing service, foreign objects, forbidden, unreachable).

use crate::api::{self, Fixture, NS, Script, running, service_pod, waiting};
use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::service::{HealthCheck, RestartPolicy, ServiceRuntime, ServiceSpec};
use hanzo_compute::{ComputeError, RuntimeKind};
use hanzo_k8s_runtime::KubernetesRuntime;
use serde_json::{Value, json};

fn runtime(client: kube::Client) -> KubernetesRuntime {
    let config = KubernetesConfig {
        namespace: NS.into(),
        ..Default::default()
    };
    KubernetesRuntime::with_client(client, config).with_node_id("node-1")
}

async fn fixture(script: Script) -> (Fixture, KubernetesRuntime) {
    let f = Fixture::start(script).await;
    let rt = runtime(f.client());
    (f, rt)
}

fn web() -> ServiceSpec {
    let mut s = ServiceSpec::new("web", "busybox:1.36");
    s.ports = vec![8080];
    s.command = Some(vec!["httpd".into(), "-f".into(), "-p".into(), "8080".into()]);
    s.env.insert("GREETING".into(), "hi".into());
    s.replicas = 2;
    s.limits.memory_mb = 64;
    s.limits.cpu_shares = 512;
    s.health_check = Some(HealthCheck {
        command: vec![
            "wget".into(),
            "-q".into(),
            "-O-".into(),
            "http://127.0.0.1:8080/".into(),
        ],
        interval_ms: 3_000,
        timeout_ms: 1_500,
        retries: 4,
    });
    s
}

const PODS: &str = "list pods hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1,hanzo.service=web";

fn delete(what: &str) -> String {
    format!("delete {what}/hanzo-svc-web propagationPolicy=Background")
}

/// The requests made since `from`.
fn since(f: &Fixture, from: usize) -> Vec<String> {
    f.requests()[from..].to_vec()
}

#[tokio::test]
async fn deploy_applies_a_deployment_a_service_and_an_ingress() {
    let (f, rt) = fixture(Script::default()).await;
    let mut spec = web();
    spec.host = Some("web.example.com".into());
    let status = rt.deploy(&spec).await.unwrap();
    assert_eq!(
        f.requests(),
        [
            "get deployment/hanzo-svc-web",
            "apply deployment/hanzo-svc-web",
            "apply service/hanzo-svc-web",
            "apply ingress/hanzo-svc-web",
            PODS,
        ]
    );
    assert_eq!(status.runtime, RuntimeKind::K8s);
    assert_eq!(status.spec, spec);
    assert_eq!(status.replicas_desired, 2);
    assert_eq!(
        status.endpoints,
        ["hanzo-svc-web.hanzo-compute.svc:8080", "http://web.example.com/"]
    );

    let objects = f.objects();
    let d = &objects["deployment/hanzo-svc-web"];
    assert_eq!(d["metadata"]["labels"]["hanzo.node"], "node-1");
    assert_eq!(d["metadata"]["labels"]["hanzo.service"], "web");
    let stored: ServiceSpec =
        serde_json::from_str(d["metadata"]["annotations"]["hanzo.spec"].as_str().unwrap()).unwrap();
    assert_eq!(stored, spec);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        d["spec"]["template"]["metadata"]["labels"]
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    // `command` replaces the image's CMD, as on Docker: Kubernetes' `args`.
    assert_eq!(c["args"], json!(["httpd", "-f", "-p", "8080"]));
    assert!(c.get("command").is_none());
    assert_eq!(c["env"], json!([{"name": "GREETING", "value": "hi"}]));
    assert_eq!(c["ports"], json!([{"containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
    assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65534);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe],
            json!({"exec": {"command": ["wget", "-q", "-O-", "http://127.0.0.1:8080/"]},
                   "periodSeconds": 3, "timeoutSeconds": 2, "failureThreshold": 4, "successThreshold": 1}),
            "{probe}"
        );
    }

    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "hanzo-svc-web",
                        "uid": "deployment-uid"}]);
    let svc = &objects["service/hanzo-svc-web"];
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "tcp-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(svc["spec"]["selector"], d["spec"]["selector"]["matchLabels"]);
    assert_eq!(svc["metadata"]["ownerReferences"], owner);
    let ing = &objects["ingress/hanzo-svc-web"];
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "web.example.com");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"],
        json!({"name": "hanzo-svc-web", "port": {"number": 8080}})
    );
    assert_eq!(ing["metadata"]["ownerReferences"], owner);
}

#[tokio::test]
async fn a_service_without_ports_gets_no_service_object() {
    let (f, rt) = fixture(Script::default()).await;
    let mut spec = web();
    spec.ports.clear();
    let status = rt.deploy(&spec).await.unwrap();
    assert!(status.endpoints.is_empty());
    assert_eq!(
        f.requests(),
        [
            "get deployment/hanzo-svc-web",
            "apply deployment/hanzo-svc-web",
            PODS
        ]
    );
    assert_eq!(
        f.objects().keys().collect::<Vec<_>>(),
        ["deployment/hanzo-svc-web"]
    );
}

#[tokio::test]
async fn a_redeploy_applies_over_and_deletes_what_the_spec_dropped() {
    let (f, rt) = fixture(Script::default()).await;
    let mut spec = web();
    spec.host = Some("web.example.com".into());
    rt.deploy(&spec).await.unwrap();
    let mark = f.requests().len();
    spec.host = None;
    spec.image = "busybox:1.37".into();
    let status = rt.deploy(&spec).await.unwrap();
    assert_eq!(
        since(&f, mark),
        [
            "get deployment/hanzo-svc-web".to_string(),
            "apply deployment/hanzo-svc-web".into(),
            "apply service/hanzo-svc-web".into(),
            delete("ingress"),
            PODS.into(),
        ]
    );
    assert_eq!(status.endpoints, ["hanzo-svc-web.hanzo-compute.svc:8080"]);
    let objects = f.objects();
    assert!(!objects.contains_key("ingress/hanzo-svc-web"));
    let d = &objects["deployment/hanzo-svc-web"];
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(
        d["metadata"]["uid"], "deployment-uid",
        "the same Deployment, updated"
    );
}

fn foreign(node: &str) -> (String, Value) {
    (
        "deployment/hanzo-svc-web".into(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "hanzo-svc-web", "namespace": NS, "uid": "theirs",
                            "labels": {"hanzo.managed": "true", "hanzo.kind": "service", "hanzo.node": node,
                                       "hanzo.service": "web"},
                            "annotations": {"hanzo.spec": serde_json::to_string(&web()).unwrap()}},
               "spec": {"replicas": 1, "selector": {}, "template": {}}}),
    )
}

#[tokio::test]
async fn another_nodes_service_of_the_same_name_is_never_touched() {
    let (f, rt) = fixture(Script {
        objects: vec![foreign("node-2")],
        ..Default::default()
    })
    .await;
    let e = rt.deploy(&web()).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("is not this node's service 'web'"), "{e}");
    // Not this node's: as if there were none.
    for e in [
        rt.inspect("web").await.unwrap_err(),
        rt.scale("web", 3).await.unwrap_err(),
        rt.remove("web").await.unwrap_err(),
    ] {
        assert_eq!(e, ComputeError::invalid("no service named 'web'"));
    }
    assert!(rt.list().await.unwrap().is_empty());
    assert_eq!(
        f.requests(),
        [
            "get deployment/hanzo-svc-web",
            "get deployment/hanzo-svc-web",
            "get deployment/hanzo-svc-web",
            "get deployment/hanzo-svc-web",
            "list deployments hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1",
        ]
    );
    assert_eq!(
        f.objects()["deployment/hanzo-svc-web"]["metadata"]["uid"],
        "theirs"
    );
}

#[tokio::test]
async fn list_finds_this_nodes_services_with_their_pods() {
    let (f, rt) = fixture(Script {
        objects: vec![foreign("node-2")],
        service_pods: vec![service_pod("api", "hanzo-svc-api-1", running(), true)],
        ..Default::default()
    })
    .await;
    // `web` of node-2 holds that name; this node runs `api` and `db`.
    let mut api_spec = web();
    api_spec.name = "api".into();
    rt.deploy(&api_spec).await.unwrap();
    let mut db = ServiceSpec::new("db", "postgres:17");
    db.user = Some("999:999".into());
    rt.deploy(&db).await.unwrap();
    let mark = f.requests().len();
    let list = rt.list().await.unwrap();
    assert_eq!(
        since(&f, mark),
        [
            "list deployments hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1",
            "list pods hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1,hanzo.service=api",
            "list pods hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1,hanzo.service=db",
        ]
    );
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "db"]);
    assert_eq!(list[0].replicas_running, 1);
    assert_eq!(list[0].replicas[0].health, "healthy");
    assert_eq!(list[1].spec, db);
    assert!(list[1].replicas.is_empty());
}

#[tokio::test]
async fn inspect_reads_the_deployment_and_one_replica_per_pod() {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (f, rt) = fixture(Script {
        service_pods: vec![
            service_pod("web", "hanzo-svc-web-a", running(), true),
            service_pod(
                "web",
                "hanzo-svc-web-b",
                waiting("CrashLoopBackOff", "back-off"),
                false,
            ),
            service_pod(
                "web",
                "hanzo-svc-web-c",
                json!({"running": {"startedAt": now}}),
                false,
            ),
            // Long past its check's retries and still not ready.
            service_pod(
                "web",
                "hanzo-svc-web-d",
                json!({"running": {"startedAt": "2000-01-01T00:00:00Z"}}),
                false,
            ),
            service_pod("other", "hanzo-svc-other-a", running(), true),
        ],
        ..Default::default()
    })
    .await;
    rt.deploy(&web()).await.unwrap();
    let mark = f.requests().len();
    let s = rt.inspect("web").await.unwrap();
    assert_eq!(since(&f, mark), ["get deployment/hanzo-svc-web", PODS]);
    let seen: Vec<(&str, &str, &str)> = s
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), r.state.as_str(), r.health.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("hanzo-svc-web-a", "running", "healthy"),
            ("hanzo-svc-web-b", "CrashLoopBackOff", "unhealthy"),
            ("hanzo-svc-web-c", "running", "starting"),
            ("hanzo-svc-web-d", "running", "unhealthy"),
        ]
    );
    assert_eq!(s.replicas[0].endpoints, ["10.1.2.3:8080"]);
    assert_eq!((s.replicas_desired, s.replicas_running), (2, 3));
    assert_eq!(s.endpoints, ["hanzo-svc-web.hanzo-compute.svc:8080"]);

    // Without a health check there is no health to report.
    let mut plain = web();
    plain.health_check = None;
    rt.deploy(&plain).await.unwrap();
    let s = rt.inspect("web").await.unwrap();
    assert!(s.replicas.iter().all(|r| r.health == "none"), "{:?}", s.replicas);
}

#[tokio::test]
async fn scale_patches_the_replicas() {
    let (f, rt) = fixture(Script::default()).await;
    rt.deploy(&web()).await.unwrap();
    let mark = f.requests().len();
    let s = rt.scale("web", 5).await.unwrap();
    assert_eq!(
        since(&f, mark),
        [
            "get deployment/hanzo-svc-web",
            "patch deployment/hanzo-svc-web application/merge-patch+json",
            PODS,
        ]
    );
    assert_eq!((s.replicas_desired, s.spec.replicas), (5, 5));
    assert_eq!(f.objects()["deployment/hanzo-svc-web"]["spec"]["replicas"], 5);
    // And inspect agrees afterwards (the Deployment, not the stored spec, has the count).
    assert_eq!(rt.inspect("web").await.unwrap().replicas_desired, 5);

    let mark = f.requests().len();
    for (n, why) in [(0, "at least 1 replica"), (65, "above the limit")] {
        let e = rt.scale("web", n).await.unwrap_err();
        assert!(e.to_string().contains(why) && e.exit_code() == 2, "{e}");
    }
    assert_eq!(f.requests().len(), mark, "refused before any request");
    let e = rt.scale("ghost", 2).await.unwrap_err();
    assert_eq!(e, ComputeError::invalid("no service named 'ghost'"));
}

#[tokio::test]
async fn remove_deletes_the_ingress_the_service_and_the_deployment() {
    let (f, rt) = fixture(Script::default()).await;
    let mut spec = web();
    spec.host = Some("web.example.com".into());
    rt.deploy(&spec).await.unwrap();
    assert_eq!(f.objects().len(), 3);
    let mark = f.requests().len();
    rt.remove("web").await.unwrap();
    assert_eq!(
        since(&f, mark),
        [
            "get deployment/hanzo-svc-web".to_string(),
            delete("ingress"),
            delete("service"),
            delete("deployment"),
        ]
    );
    assert!(f.objects().is_empty(), "{:?}", f.objects());
    // Gone: a second remove finds nothing.
    let e = rt.remove("web").await.unwrap_err();
    assert_eq!(e, ComputeError::invalid("no service named 'web'"));
}

#[tokio::test]
async fn removing_a_missing_service_is_invalid_input() {
    let (f, rt) = fixture(Script::default()).await;
    let e = rt.remove("ghost").await.unwrap_err();
    assert_eq!(e, ComputeError::invalid("no service named 'ghost'"));
    assert_eq!(e.exit_code(), 2);
    assert_eq!(f.requests(), ["get deployment/hanzo-svc-ghost"]);
    let e = rt.inspect("ghost").await.unwrap_err();
    assert_eq!(e, ComputeError::invalid("no service named 'ghost'"));
    // A name no service can have is refused before any request.
    let e = rt.remove("Bad_Name").await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(f.requests().len(), 2);
}

#[tokio::test]
async fn forbidden_names_the_verb_and_the_resource_and_a_new_service_is_undone() {
    let (f, rt) = fixture(Script {
        fail: vec![(
            "apply service/hanzo-svc-web".into(),
            api::forbidden("patch", "services", ""),
        )],
        ..Default::default()
    })
    .await;
    let e = rt.deploy(&web()).await.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("forbidden by RBAC")
            && text.contains("may not create/patch services")
            && text.contains(NS),
        "{text}"
    );
    assert_eq!(
        f.requests(),
        [
            "get deployment/hanzo-svc-web".to_string(),
            "apply deployment/hanzo-svc-web".into(),
            "apply service/hanzo-svc-web".into(),
            delete("deployment"),
        ]
    );
    assert!(f.objects().is_empty(), "nothing half-deployed is left");

    let (f, rt) = fixture(Script {
        fail: vec![(
            "list deployments hanzo.kind=service,hanzo.managed=true,hanzo.node=node-1".into(),
            api::forbidden("list", "deployments", "apps"),
        )],
        ..Default::default()
    })
    .await;
    let e = rt.list().await.unwrap_err().to_string();
    assert!(e.contains("may not list deployments.apps"), "{e}");
    assert_eq!(f.requests().len(), 1);
}

#[tokio::test]
async fn a_missing_namespace_is_named() {
    let (_f, rt) = fixture(Script {
        fail: vec![(
            "apply deployment/hanzo-svc-web".into(),
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": "namespaces \"hanzo-compute\" not found", "reason": "NotFound", "code": 404}),
            ),
        )],
        ..Default::default()
    })
    .await;
    let e = rt.deploy(&web()).await.unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(
        e.to_string().contains("namespace hanzo-compute does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_exit_4() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let rt = runtime(client);
    let errors = [
        rt.deploy(&web()).await.unwrap_err(),
        rt.list().await.unwrap_err(),
        rt.inspect("web").await.unwrap_err(),
        rt.scale("web", 2).await.unwrap_err(),
        rt.remove("web").await.unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.exit_code(), 4, "{e:?}");
        assert!(
            e.to_string().contains("no reachable Kubernetes API server"),
            "{e}"
        );
    }
}

type Tweak = fn(&mut ServiceSpec);

#[tokio::test]
async fn specs_a_deployment_cannot_honour_touch_nothing() {
    let (f, rt) = fixture(Script::default()).await;
    let cases: [(Tweak, &str); 5] = [
        (
            |s| s.restart = RestartPolicy::OnFailure,
            "restart on-failure is not possible on Kubernetes",
        ),
        (
            |s| s.restart = RestartPolicy::Never,
            "restart never is not possible on Kubernetes",
        ),
        (
            |s| s.network = hanzo_compute::Network::None,
            "network none is not enforced",
        ),
        (|s| s.user = Some("0:0".into()), "never as root"),
        (|s| s.host = Some("Web.Example.com".into()), "invalid host"),
    ];
    for (tweak, why) in cases {
        let mut spec = web();
        tweak(&mut spec);
        let e = rt.deploy(&spec).await.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    assert!(f.requests().is_empty(), "{:?}", f.requests());
}
