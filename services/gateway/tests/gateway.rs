//! The gateway over real gRPC with TLS on 127.0.0.1:0: every verb, the object semantics
//! Kubernetes users rely on, authentication and authorization.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use navarch_api::apps::v1::{Deployment, DeploymentSpec};
use navarch_api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec, PodTemplateSpec};
use navarch_api::meta::v1::{LabelSelector, ObjectMeta};
use navarch_api::{ApiError, Reason};
use navarch_gateway::auth::{Attributes, AuthChain, Authorizer, TokenFile, UserInfo};
use navarch_gateway::client::{ListParams, WatchEvent};
use navarch_gateway::{Client, GatewayConfig, MastersOnly, PodBinding, RunningGateway};

const T: Duration = Duration::from_secs(10);

struct Cluster {
    gateway: Option<RunningGateway>,
    url: String,
    ca: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(Arc::new(MastersOnly)).await
    }

    async fn start_with(authorizer: Arc<dyn Authorizer>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = navarch_pki::ClusterPki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let mut tokens = TokenFile::default();
        tokens.insert(
            "admin-token",
            UserInfo {
                name: "admin".into(),
                uid: "1".into(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            },
        );
        tokens.insert(
            "bob-token",
            UserInfo {
                name: "bob".into(),
                uid: "2".into(),
                groups: vec![],
                extra: Default::default(),
            },
        );
        let store = navarch_store::open_embedded(dir.path().join("store")).unwrap();
        let gateway = navarch_gateway::start(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            store,
            authenticator: AuthChain::new(vec![Arc::new(tokens)]),
            authorizer,
            tls: Some(pki.server_config(&[b"h2"])),
            tokens: None,
            audit: None,
            node_signer: None,
        })
        .await
        .unwrap();
        let url = format!("https://{}", gateway.addr);
        Self {
            gateway: Some(gateway),
            url,
            ca: pki.ca_pem().to_string(),
            _dir: dir,
        }
    }

    async fn client(&self, token: &str) -> Client {
        tokio::time::timeout(T, Client::connect(&self.url, &self.ca, token))
            .await
            .unwrap()
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            tokio::time::timeout(T, g.shutdown()).await.unwrap();
        }
    }
}

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    })
}

/// A one-container pod.
fn pod(name: &str) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: [("k".to_string(), value.to_string())].into(),
        ..Default::default()
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: Some("web".into()),
                        image: Some("nginx:1.27".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn t<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

#[tokio::test]
async fn create_get_list_update_delete() {
    let cluster = Cluster::start().await;
    let c = cluster.client("admin-token").await;

    let created = t(c.create("default", &configmap("a", "1"))).await.unwrap();
    let m = created.metadata.clone().unwrap();
    assert_eq!(m.namespace.as_deref(), Some("default"));
    assert!(m.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(m.creation_timestamp.is_some());
    let rv: i64 = m.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv > 0);

    let err = t(c.create("default", &configmap("a", "2")))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");

    let got: ConfigMap = t(c.get("default", "a")).await.unwrap();
    assert_eq!(got, created);

    // Optimistic concurrency: an update from a stale copy conflicts.
    let mut first = got.clone();
    first.data.insert("k".into(), "first".into());
    let updated = t(c.update("default", "a", &first)).await.unwrap();
    assert!(
        updated
            .metadata
            .as_ref()
            .unwrap()
            .resource_version
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv
    );
    let mut stale = got.clone();
    stale.data.insert("k".into(), "stale".into());
    let err = t(c.update("default", "a", &stale)).await.unwrap_err();
    assert_eq!(err.reason, Reason::Conflict, "{err}");

    for i in 0..5 {
        t(c.create("default", &configmap(&format!("p{i}"), "x")))
            .await
            .unwrap();
    }
    let all = t(c.list::<ConfigMap>("default", &ListParams::default()))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 6);
    // Pagination.
    let mut seen = Vec::new();
    let mut params = ListParams {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = t(c.list::<ConfigMap>("default", &params)).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(
            page.items
                .iter()
                .map(|i| i.metadata.as_ref().unwrap().name.clone().unwrap()),
        );
        if page.continue_token.is_empty() {
            break;
        }
        params.continue_token = page.continue_token;
    }
    assert_eq!(seen, vec!["a", "p0", "p1", "p2", "p3", "p4"]);

    let deleted: ConfigMap = t(c.delete("default", "a")).await.unwrap();
    assert_eq!(deleted.metadata.unwrap().name.as_deref(), Some("a"));
    let err = t(c.get::<ConfigMap>("default", "a")).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound);
    assert_eq!(err.message, "configmaps \"a\" not found");
    cluster.stop().await;
}

#[tokio::test]
async fn semantics_users_rely_on() {
    let cluster = Cluster::start().await;
    let c = cluster.client("admin-token").await;

    // The namespace must exist.
    let err = t(c.create("nope", &configmap("a", "1"))).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    assert_eq!(err.message, "namespaces \"nope\" not found");

    // generateName.
    let mut cm = configmap("", "1");
    cm.metadata = Some(ObjectMeta {
        generate_name: Some("gen-".into()),
        ..Default::default()
    });
    let created = t(c.create("default", &cm)).await.unwrap();
    let name = created.metadata.unwrap().name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Generation bumps on spec change only; status only through the status subresource.
    let d = t(c.create("default", &deployment("web", 2))).await.unwrap();
    assert_eq!(d.metadata.as_ref().unwrap().generation, Some(1));
    let mut with_status = d.clone();
    with_status.status = Some(navarch_api::apps::v1::DeploymentStatus {
        replicas: Some(7),
        ..Default::default()
    });
    let after = t(c.update("default", "web", &with_status)).await.unwrap();
    assert_eq!(after.status, None, "spec writers cannot set status");
    assert_eq!(after.metadata.as_ref().unwrap().generation, Some(1));
    let mut status_write = after.clone();
    status_write.status = Some(navarch_api::apps::v1::DeploymentStatus {
        replicas: Some(2),
        ..Default::default()
    });
    status_write.spec.as_mut().unwrap().replicas = Some(9);
    let s = t(c.update_status("default", "web", &status_write))
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        s.spec.as_ref().unwrap().replicas,
        Some(2),
        "status writers cannot change spec"
    );
    let mut scaled = s.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(3);
    let scaled = t(c.update("default", "web", &scaled)).await.unwrap();
    assert_eq!(scaled.metadata.as_ref().unwrap().generation, Some(2));
    assert_eq!(
        scaled.status.as_ref().unwrap().replicas,
        Some(2),
        "status kept across spec updates"
    );

    // Validation names every field at fault.
    let mut bad = deployment("bad", -1);
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = None;
    let err = t(c.create("default", &bad)).await.unwrap_err();
    assert_eq!(err.reason, Reason::Invalid, "{err}");
    let fields: Vec<_> = err.causes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"spec.replicas"), "{fields:?}");
    assert!(
        fields.contains(&"spec.template.spec.containers[0].image"),
        "{fields:?}"
    );

    // Finalizers keep an object until they are removed.
    let mut f = configmap("fin", "1");
    f.metadata.as_mut().unwrap().finalizers = vec!["example.com/hold".into()];
    t(c.create("default", &f)).await.unwrap();
    let deleting: ConfigMap = t(c.delete("default", "fin")).await.unwrap();
    assert!(
        deleting
            .metadata
            .as_ref()
            .unwrap()
            .deletion_timestamp
            .is_some()
    );
    let mut release: ConfigMap = t(c.get("default", "fin")).await.unwrap();
    release.metadata.as_mut().unwrap().finalizers.clear();
    t(c.update("default", "fin", &release)).await.unwrap();
    assert_eq!(
        t(c.get::<ConfigMap>("default", "fin"))
            .await
            .unwrap_err()
            .reason,
        Reason::NotFound
    );

    // Cluster-scoped kinds take no namespace.
    let ns = Namespace {
        metadata: meta("team-a"),
        ..Default::default()
    };
    let ns = t(c.create("", &ns)).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));

    // Jobs get a selector on their uid and matching template labels.
    let job: navarch_api::batch::v1::Job = serde_json_job();
    let job = t(c.create("default", &job)).await.unwrap();
    let uid = job.metadata.as_ref().unwrap().uid.clone().unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(
        spec.selector.unwrap().match_labels["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        spec.template.unwrap().metadata.unwrap().labels["job-name"],
        "once"
    );

    // An empty namespace goes at once; one with content waits for the namespace controller.
    let gone: Namespace = t(c.delete("", "team-a")).await.unwrap();
    assert!(gone.metadata.unwrap().deletion_timestamp.is_none());
    assert_eq!(
        t(c.get::<Namespace>("", "team-a"))
            .await
            .unwrap_err()
            .reason,
        Reason::NotFound
    );
    let busy: Namespace = t(c.delete("", "default")).await.unwrap();
    assert!(busy.metadata.unwrap().deletion_timestamp.is_some());
    assert_eq!(busy.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = t(c.create("default", &configmap("late", "1")))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    cluster.stop().await;
}

#[tokio::test]
async fn watch_sees_every_change_in_order() {
    let cluster = Cluster::start().await;
    let c = cluster.client("admin-token").await;
    t(c.create("default", &configmap("before", "0")))
        .await
        .unwrap();
    let list = t(c.list::<ConfigMap>("default", &ListParams::default()))
        .await
        .unwrap();
    let mut watch =
        t(c.watch::<ConfigMap>("default", &list.resource_version, &ListParams::default()))
            .await
            .unwrap();
    let mut from_scratch = t(c.watch::<ConfigMap>("default", "", &ListParams::default()))
        .await
        .unwrap();
    match t(from_scratch.next()).await.unwrap().unwrap() {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.unwrap().name.as_deref(), Some("before")),
        other => panic!("{other:?}"),
    }

    let created = t(c.create("default", &configmap("w", "1"))).await.unwrap();
    let mut cm = created.clone();
    cm.data.insert("k".into(), "2".into());
    let updated = t(c.update("default", "w", &cm)).await.unwrap();
    t(c.delete::<ConfigMap>("default", "w")).await.unwrap();

    let mut types = Vec::new();
    while types.len() < 3 {
        match t(watch.next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) => {
                types.push(("ADDED", o.metadata.unwrap().resource_version.unwrap()))
            }
            WatchEvent::Modified(o) => {
                types.push(("MODIFIED", o.metadata.unwrap().resource_version.unwrap()))
            }
            WatchEvent::Deleted(o) => {
                types.push(("DELETED", o.metadata.unwrap().resource_version.unwrap()))
            }
            WatchEvent::Bookmark(_) => {}
        }
    }
    assert_eq!(
        types[0],
        ("ADDED", created.metadata.unwrap().resource_version.unwrap())
    );
    assert_eq!(
        types[1],
        (
            "MODIFIED",
            updated.metadata.unwrap().resource_version.unwrap()
        )
    );
    assert_eq!(types[2].0, "DELETED");

    // Label-selected watch: an object leaving the selector is seen as DELETED.
    let params = ListParams {
        label_selector: "tier=web".into(),
        ..Default::default()
    };
    let mut selected = t(c.watch::<ConfigMap>("default", "", &params))
        .await
        .unwrap();
    let mut labelled = configmap("l", "1");
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "web".into());
    let l = t(c.create("default", &labelled)).await.unwrap();
    let mut moved = l.clone();
    moved
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "db".into());
    t(c.update("default", "l", &moved)).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match t(selected.next()).await.unwrap().unwrap() {
            WatchEvent::Added(_) => seen.push("ADDED"),
            WatchEvent::Modified(_) => seen.push("MODIFIED"),
            WatchEvent::Deleted(_) => seen.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
        }
    }
    assert_eq!(seen, vec!["ADDED", "DELETED"]);
    cluster.stop().await;
}

#[tokio::test]
async fn pods_bind_through_the_binding_subresource() {
    let cluster = Cluster::start().await;
    let c = cluster.client("admin-token").await;
    let pod = pod("p");
    let created = t(c.create("default", &pod)).await.unwrap();
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Always"),
        "defaults applied"
    );

    let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let bind = |c: Client| {
        let binding = binding.clone();
        async move {
            let req = navarch_api::gateway::v1::CreateRequest {
                resource: Some(navarch_api::gateway::v1::Resource {
                    group: "".into(),
                    version: "v1".into(),
                    resource: "pods".into(),
                    subresource: "binding".into(),
                }),
                namespace: "default".into(),
                name: "p".into(),
                object: Some(navarch_api::gateway::v1::RawObject {
                    raw: binding.to_string().into_bytes(),
                    content_type: "application/json".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            c.raw()
                .create(req)
                .await
                .map_err(|s| ApiError::from_grpc(&s))
        }
    };
    t(bind(c.clone())).await.unwrap();
    let bound: Pod = t(c.get("default", "p")).await.unwrap();
    let scheduled = bound
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type.as_deref() == Some("PodScheduled"))
        })
        .cloned()
        .expect("PodScheduled condition");
    assert_eq!(scheduled.status.as_deref(), Some("True"));
    assert!(scheduled.last_transition_time.is_some());
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let err = t(bind(c.clone())).await.unwrap_err();
    assert_eq!(err.reason, Reason::Conflict, "{err}");

    // A bound pod is deleted gracefully.
    let deleting: Pod = t(c.delete("default", "p")).await.unwrap();
    assert_eq!(
        deleting.metadata.unwrap().deletion_grace_period_seconds,
        Some(30)
    );
    cluster.stop().await;
}

/// Admins may do anything; bob may bind pods in `team-a` and nothing else.
struct TeamABinder;

impl Authorizer for TeamABinder {
    fn authorize(&self, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
        let binds_in_team_a = user.name == "bob"
            && a.verb == "create"
            && a.resource == "pods"
            && a.subresource == "binding"
            && a.namespace == "team-a";
        if user.in_group("system:masters") || binds_in_team_a {
            return Ok(());
        }
        Err(navarch_gateway::auth::forbidden(user, a))
    }
}

fn binding<'a>(namespace: &'a str, pod: &'a str, node: &'a str) -> PodBinding<'a> {
    PodBinding {
        namespace,
        pod,
        node,
        traceparent: None,
    }
}

#[tokio::test]
async fn create_bindings_checks_and_answers_each_item_on_its_own() {
    let cluster = Cluster::start_with(Arc::new(TeamABinder)).await;
    let admin = cluster.client("admin-token").await;
    for ns in ["team-a", "team-b"] {
        let namespace = Namespace {
            metadata: meta(ns),
            ..Default::default()
        };
        t(admin.create("", &namespace)).await.unwrap();
        for name in ["p1", "p2", "p3"] {
            t(admin.create(ns, &pod(name))).await.unwrap();
        }
    }
    t(admin.bind("team-a", "p3", "node-0")).await.unwrap();

    let bob = cluster.client("bob-token").await;
    let results = t(bob.bind_all(&[
        binding("team-a", "p1", "node-1"),
        binding("team-b", "p1", "node-1"),
        binding("team-a", "missing", "node-1"),
        binding("team-a", "p3", "node-1"),
        binding("team-a", "p2", ""),
        binding("team-a", "p2", "node-2"),
    ]))
    .await
    .unwrap();
    let reasons: Vec<Option<Reason>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            None,
            Some(Reason::Forbidden),
            Some(Reason::NotFound),
            Some(Reason::Conflict),
            Some(Reason::Invalid),
            None,
        ],
        "{results:?}"
    );
    let forbidden = results[1].as_ref().unwrap_err();
    assert!(
        forbidden
            .message
            .contains("User \"bob\" cannot create resource \"pods/binding\""),
        "{forbidden}"
    );
    let invalid = results[4].as_ref().unwrap_err();
    assert_eq!(invalid.causes[0].field, "target.name", "{invalid}");
    let already = results[3].as_ref().unwrap_err();
    assert!(
        already
            .message
            .contains("already assigned to node \"node-0\""),
        "{already}"
    );

    let node_of = |ns: &'static str, name: &'static str| {
        let admin = admin.clone();
        async move {
            let pod: Pod = t(admin.get(ns, name)).await.unwrap();
            pod.spec.and_then(|s| s.node_name)
        }
    };
    assert_eq!(node_of("team-a", "p1").await.as_deref(), Some("node-1"));
    assert_eq!(node_of("team-a", "p2").await.as_deref(), Some("node-2"));
    assert_eq!(node_of("team-a", "p3").await.as_deref(), Some("node-0"));
    assert_eq!(node_of("team-b", "p1").await, None);

    // Only pods/binding goes through CreateBindings.
    let item = navarch_api::gateway::v1::create_bindings_request::Item {
        request: Some(navarch_api::gateway::v1::CreateRequest {
            resource: Some(navarch_api::gateway::v1::Resource {
                group: "".into(),
                version: "v1".into(),
                resource: "configmaps".into(),
                subresource: "".into(),
            }),
            namespace: "team-a".into(),
            ..Default::default()
        }),
        traceparent: String::new(),
    };
    let answer = t(admin
        .raw()
        .create_bindings(navarch_api::gateway::v1::CreateBindingsRequest { items: vec![item] }))
    .await
    .unwrap()
    .into_inner();
    let refused = ApiError::from_status(&answer.results[0]);
    assert_eq!(refused.reason, Reason::BadRequest, "{refused}");

    // Without credentials the whole call is refused.
    let anonymous = cluster.client("").await;
    let err = t(anonymous.bind_all(&[binding("team-a", "p2", "node-3")]))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Unauthorized);
    cluster.stop().await;
}

#[tokio::test]
async fn unauthenticated_and_unauthorized_requests_are_rejected() {
    let cluster = Cluster::start().await;
    let anonymous = cluster.client("").await;
    let err = t(anonymous.list::<ConfigMap>("default", &ListParams::default()))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Unauthorized);
    let wrong = cluster.client("not-a-token").await;
    assert_eq!(
        t(wrong.get::<ConfigMap>("default", "x"))
            .await
            .unwrap_err()
            .reason,
        Reason::Unauthorized
    );
    let bob = cluster.client("bob-token").await;
    let err = t(bob.create("default", &configmap("x", "1")))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Forbidden);
    assert!(
        err.message
            .contains("User \"bob\" cannot create resource \"configmaps\""),
        "{}",
        err.message
    );
    cluster.stop().await;
}

#[tokio::test]
async fn clients_must_trust_the_cluster_ca() {
    let cluster = Cluster::start().await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = navarch_pki::ClusterPki::load_or_create(other.path(), &[]).unwrap();
    let result = tokio::time::timeout(T, async {
        let c = Client::connect(&cluster.url, other_ca.ca_pem(), "admin-token").await?;
        c.list::<ConfigMap>("default", &ListParams::default()).await
    })
    .await
    .unwrap();
    assert!(
        result.is_err(),
        "a client trusting another CA must not get through"
    );
    cluster.stop().await;
}

fn serde_json_job() -> navarch_api::batch::v1::Job {
    let json = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    });
    navarch_api::codec::decode_json(&json, navarch_api::codec::FieldValidation::Strict)
        .unwrap()
        .0
}

#[tokio::test]
async fn stock_grpc_tooling_works_health_and_reflection() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let cluster = Cluster::start().await;
    navarch_pki::ensure_crypto_provider();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cluster.ca))
        .domain_name("localhost");
    let channel = t(tonic::transport::Endpoint::from_shared(cluster.url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect())
    .await
    .unwrap();

    let health = t(
        HealthClient::new(channel.clone()).check(HealthCheckRequest {
            service: "navarch.gateway.v1.Gateway".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = t(ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request])))
    .await
    .unwrap()
    .into_inner();
    let first = t(responses.next()).await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("{first:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"navarch.gateway.v1.Gateway"), "{names:?}");
    cluster.stop().await;
}
