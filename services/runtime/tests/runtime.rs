//! The runtime against a real gateway (in-process, memory store, plain HTTP/2 on 127.0.0.1:0):
//! informers (list, watch, handlers, indexes, resync after Expired), the shared factory,
//! leader election and the event recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use navarch_api::ApiError;
use navarch_api::coordination::v1::Lease;
use navarch_api::core::v1::{ConfigMap, Event as CoreEvent, Pod};
use navarch_api::meta::v1::ObjectMeta;
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::client::{List, ListParams};
use navarch_gateway::{Client, GatewayConfig, MastersOnly, RunningGateway};
use navarch_runtime::informer::{ClientListWatch, WatchStream};
use navarch_runtime::{
    Event, EventRecorder, EventType, Informer, InformerConfig, InformerFactory,
    LeaderElectionConfig, LeaderElector, Leading, ListWatch, ObjectKey, Scope,
};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(15);
const TOKEN: &str = "admin-token";

struct Cluster {
    gateway: Option<RunningGateway>,
    url: String,
}

impl Cluster {
    async fn start() -> Self {
        let mut tokens = TokenFile::default();
        tokens.insert(
            TOKEN,
            UserInfo {
                name: "admin".into(),
                uid: "1".into(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            },
        );
        let gateway = navarch_gateway::start(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            store: navarch_store::open_memory(),
            authenticator: AuthChain::new(vec![Arc::new(tokens)]),
            authorizer: Arc::new(MastersOnly),
            tls: None,
            tokens: None,
            audit: None,
            node_signer: None,
        })
        .await
        .unwrap();
        let url = format!("http://{}", gateway.addr);
        Self {
            gateway: Some(gateway),
            url,
        }
    }

    async fn client(&self) -> Client {
        t(Client::connect(&self.url, "", TOKEN)).await.unwrap()
    }

    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().unwrap()
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            t(g.shutdown()).await;
        }
    }
}

async fn t<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    tokio::time::timeout(T, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn cm(ns: &str, name: &str, data: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: BTreeMap::from([("app".into(), "demo".into())]),
            ..Default::default()
        }),
        data: BTreeMap::from([("k".into(), data.into())]),
        ..Default::default()
    }
}

fn names<T: navarch_runtime::KubeObject>(objs: &[Arc<T>]) -> Vec<String> {
    let mut v: Vec<String> = objs
        .iter()
        .map(|o| ObjectKey::of(o.as_ref()).to_string())
        .collect();
    v.sort();
    v
}

fn describe(ev: &Event<ConfigMap>) -> String {
    let name = ev.object().metadata.as_ref().unwrap().name.clone().unwrap();
    match ev {
        Event::Added(_) => format!("added {name}"),
        Event::Updated { new, .. } => format!("updated {name} to {}", new.data["k"]),
        Event::Deleted(_) => format!("deleted {name}"),
    }
}

#[tokio::test]
async fn informer_lists_watches_and_indexes() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("default", &cm("default", "a", "1")))
        .await
        .unwrap();
    t(c.create("kube-system", &cm("kube-system", "b", "1")))
        .await
        .unwrap();

    let informer = Informer::<ConfigMap>::new(c.clone(), Scope::all());
    t(informer.wait_synced()).await;
    assert!(informer.has_synced());
    assert_eq!(
        names(&informer.cache().list()),
        ["default/a", "kube-system/b"]
    );
    let mut events = informer.subscribe();
    // A subscriber first gets the cached objects.
    let mut first = vec![
        describe(&t(events.recv()).await.unwrap()),
        describe(&t(events.recv()).await.unwrap()),
    ];
    first.sort();
    assert_eq!(first, ["added a", "added b"]);

    t(c.create("default", &cm("default", "c", "1")))
        .await
        .unwrap();
    let mut a: ConfigMap = t(c.get("default", "a")).await.unwrap();
    a.data.insert("k".into(), "2".into());
    t(c.update("default", "a", &a)).await.unwrap();
    t(c.delete::<ConfigMap>("kube-system", "b")).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&t(events.recv()).await.unwrap()));
    }
    assert_eq!(seen, ["added c", "updated a to 2", "deleted b"]);
    assert_eq!(
        names(&informer.cache().in_namespace("default")),
        ["default/a", "default/c"]
    );
    let selector = navarch_api::selectors::LabelSelector::parse("app=demo").unwrap();
    assert_eq!(informer.cache().select(Some("default"), &selector).len(), 2);
    assert!(!informer.resource_version().is_empty());
    cluster.stop().await;
}

#[tokio::test]
async fn pods_are_indexed_by_node() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let informer = Informer::<Pod>::new(c.clone(), Scope::namespace("default"));
    t(informer.wait_synced()).await;
    let pod = Pod {
        metadata: Some(ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        spec: Some(navarch_api::core::v1::PodSpec {
            containers: vec![navarch_api::core::v1::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    t(c.create("default", &pod)).await.unwrap();
    eventually("the pod", || informer.cache().len() == 1).await;
    assert!(informer.cache().on_node("node-1").is_empty());
    t(c.bind("default", "p", "node-1")).await.unwrap();
    eventually("the binding", || {
        informer.cache().on_node("node-1").len() == 1
    })
    .await;
    let err = t(c.bind("default", "p", "node-2")).await.unwrap_err();
    assert_eq!(err.reason, navarch_api::Reason::Conflict, "{err}");
    cluster.stop().await;
}

/// A list-watch whose watch connection the test can cut and restore; counts lists.
struct CuttableListWatch {
    inner: ClientListWatch,
    connected: watch::Sender<bool>,
    lists: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl ListWatch<ConfigMap> for CuttableListWatch {
    async fn list(&self, limit: i64, token: &str) -> Result<List<ConfigMap>, ApiError> {
        if token.is_empty() {
            self.lists.fetch_add(1, Ordering::SeqCst);
        }
        ListWatch::<ConfigMap>::list(&self.inner, limit, token).await
    }

    async fn watch(&self, rv: &str) -> Result<WatchStream<ConfigMap>, ApiError> {
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(|c| *c).await;
        let stream = ListWatch::<ConfigMap>::watch(&self.inner, rv).await?;
        let mut cut = self.connected.subscribe();
        Ok(stream
            .take_until(async move {
                let _ = cut.wait_for(|c| !*c).await;
            })
            .boxed())
    }
}

#[tokio::test]
async fn informer_relists_after_expired_and_reports_what_it_missed() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    for name in ["a", "b", "c"] {
        t(c.create("default", &cm("default", name, "1")))
            .await
            .unwrap();
    }
    let connected = watch::channel(true).0;
    let lists = Arc::new(AtomicUsize::new(0));
    let source = CuttableListWatch {
        inner: ClientListWatch::new(c.clone(), Scope::namespace("default")),
        connected: connected.clone(),
        lists: lists.clone(),
    };
    let config = InformerConfig {
        page_size: 2, // exercises pagination too
        ..Default::default()
    };
    let informer = Informer::<ConfigMap>::start(source, config);
    t(informer.wait_synced()).await;
    let mut events = informer.subscribe();
    for _ in 0..3 {
        t(events.recv()).await.unwrap();
    }
    assert_eq!(lists.load(Ordering::SeqCst), 1);

    // The connection drops; meanwhile the objects change and history is compacted away.
    connected.send_replace(false);
    let mut b: ConfigMap = t(c.get("default", "b")).await.unwrap();
    b.data.insert("k".into(), "2".into());
    t(c.update("default", "b", &b)).await.unwrap();
    t(c.delete::<ConfigMap>("default", "c")).await.unwrap();
    t(c.create("default", &cm("default", "d", "1")))
        .await
        .unwrap();
    let store = cluster.gateway().registry.store().clone();
    t(store.compact(store.current_revision())).await.unwrap();
    assert!(
        events.try_recv().is_err(),
        "nothing seen while disconnected"
    );

    // Back online: the watch from the old revision is Expired, the informer relists.
    connected.send_replace(true);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&t(events.recv()).await.unwrap()));
    }
    seen.sort();
    assert_eq!(seen, ["added d", "deleted c", "updated b to 2"]);
    assert_eq!(lists.load(Ordering::SeqCst), 2, "relisted once");
    assert_eq!(
        names(&informer.cache().list()),
        ["default/a", "default/b", "default/d"]
    );

    // And it watches again from the new list's revision.
    t(c.create("default", &cm("default", "e", "1")))
        .await
        .unwrap();
    assert_eq!(describe(&t(events.recv()).await.unwrap()), "added e");
    cluster.stop().await;
}

/// A list-watch whose list, at its first continued page, has the objects change and the
/// store compacted underneath: that page is Expired.
struct CompactingListWatch {
    inner: ClientListWatch,
    client: Client,
    store: Arc<dyn navarch_store::Store>,
    lists: Arc<AtomicUsize>,
    compacted: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ListWatch<ConfigMap> for CompactingListWatch {
    async fn list(&self, limit: i64, token: &str) -> Result<List<ConfigMap>, ApiError> {
        if token.is_empty() {
            self.lists.fetch_add(1, Ordering::SeqCst);
        } else if !self.compacted.swap(true, Ordering::SeqCst) {
            let c = &self.client;
            let mut a: ConfigMap = c.get("default", "a").await?;
            a.data.insert("k".into(), "2".into());
            c.update("default", "a", &a).await?;
            c.delete::<ConfigMap>("default", "e").await?;
            c.create("default", &cm("default", "f", "1")).await?;
            self.store
                .compact(self.store.current_revision())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        ListWatch::<ConfigMap>::list(&self.inner, limit, token).await
    }

    async fn watch(&self, rv: &str) -> Result<WatchStream<ConfigMap>, ApiError> {
        ListWatch::<ConfigMap>::watch(&self.inner, rv).await
    }
}

/// Pages are fetched ahead of the one being applied; a list whose snapshot expires between
/// pages starts over, and the cache ends up as the cluster is.
#[tokio::test]
async fn a_list_that_expires_between_pages_starts_over() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    for name in ["a", "b", "c", "d", "e"] {
        t(c.create("default", &cm("default", name, "1")))
            .await
            .unwrap();
    }
    let lists = Arc::new(AtomicUsize::new(0));
    let source = CompactingListWatch {
        inner: ClientListWatch::new(c.clone(), Scope::namespace("default")),
        client: c.clone(),
        store: cluster.gateway().registry.store().clone(),
        lists: lists.clone(),
        compacted: Default::default(),
    };
    let config = InformerConfig {
        page_size: 2,
        ..Default::default()
    };
    let informer = Informer::<ConfigMap>::start(source, config);
    t(informer.wait_synced()).await;
    assert_eq!(
        lists.load(Ordering::SeqCst),
        2,
        "listed again from the start"
    );
    assert_eq!(
        names(&informer.cache().list()),
        [
            "default/a",
            "default/b",
            "default/c",
            "default/d",
            "default/f"
        ]
    );
    let a = informer
        .cache()
        .get(&navarch_runtime::ObjectKey::new("default", "a"))
        .unwrap();
    assert_eq!(a.data["k"], "2");
    cluster.stop().await;
}

#[tokio::test]
async fn the_factory_shares_one_informer_per_kind_and_scope() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let factory = InformerFactory::new(c.clone());
    let a = factory.informer::<ConfigMap>();
    let b = factory.informer::<ConfigMap>();
    let scoped = factory.scoped::<ConfigMap>(Scope::namespace("default"));
    let pods = factory.informer::<Pod>();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &scoped));
    t(factory.wait_synced(T)).await.unwrap();
    assert!(a.has_synced() && scoped.has_synced() && pods.has_synced());
    t(c.create("default", &cm("default", "x", "1")))
        .await
        .unwrap();
    eventually("both informers", || {
        a.cache().len() == 1 && scoped.cache().len() == 1
    })
    .await;
    factory.shutdown();
    cluster.stop().await;
}

fn election(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
        ..LeaderElectionConfig::new("kube-system", "test-lock", identity)
    }
}

async fn lease(c: &Client) -> Lease {
    t(c.get("kube-system", "test-lock")).await.unwrap()
}

#[tokio::test]
async fn exactly_one_of_two_electors_leads_and_the_other_takes_over() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let one = LeaderElector::new(c.clone(), election("one"));
    let two = LeaderElector::new(c.clone(), election("two"));
    let mut first = tokio::spawn({
        let one = one.clone();
        async move { one.acquire().await }
    });
    let mut second = tokio::spawn({
        let two = two.clone();
        async move { two.acquire().await }
    });
    let (leader, mut waiting, leader_id) = tokio::select! {
        l = &mut first => (l.unwrap(), second, "one"),
        l = &mut second => (l.unwrap(), first, "two"),
        _ = tokio::time::sleep(T) => panic!("nobody acquired the lease"),
    };
    let spec = lease(&c).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(leader_id));
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert!(
        spec.renew_time.as_deref().unwrap().ends_with('Z')
            && spec.renew_time.as_deref().unwrap().len() == "2024-01-01T00:00:00.000000Z".len(),
        "MicroTime: {:?}",
        spec.renew_time
    );
    // While the leader renews, the other never gets in (three lease durations).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiting.is_finished(), "two leaders at once");
    assert!(leader.is_leading());

    // The leader stops renewing (dropped without releasing): the other takes over.
    drop(leader);
    let successor = t(&mut waiting).await.unwrap();
    assert!(successor.is_leading());
    let spec = lease(&c).await.spec.unwrap();
    assert_ne!(spec.holder_identity.as_deref(), Some(leader_id));
    assert_eq!(spec.lease_transitions, Some(1));
    successor.release().await;
    let spec = lease(&c).await.spec.unwrap();
    assert_eq!(spec.holder_identity, None, "released");
    cluster.stop().await;
}

#[tokio::test]
async fn a_leader_that_sees_another_holder_stops_leading() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let one = LeaderElector::new(c.clone(), election("one"));
    let outcome = tokio::spawn({
        let one = one.clone();
        async move {
            one.lead(|token| async move {
                token.cancelled().await;
                "work saw the cancellation"
            })
            .await
        }
    });
    eventually("leadership", || one.is_leader()).await;
    // Someone overwrites the lease (an operator, a split brain): the leader must step down.
    let mut l = lease(&c).await;
    let spec = l.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.lease_duration_seconds = Some(30);
    spec.renew_time = Some(navarch_runtime::leader_election::micro_time_now());
    t(c.update("kube-system", "test-lock", &l)).await.unwrap();
    let outcome = t(outcome).await.unwrap();
    assert!(
        matches!(
            outcome,
            Leading::Lost | Leading::Finished("work saw the cancellation")
        ),
        "{outcome:?}"
    );
    assert!(!one.is_leader());
    assert_eq!(
        lease(&c).await.spec.unwrap().holder_identity.as_deref(),
        Some("intruder"),
        "a deposed leader does not release someone else's lease"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn finished_work_releases_the_lease_for_the_next_candidate() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let one = LeaderElector::new(c.clone(), election("one"));
    let two = LeaderElector::new(c.clone(), election("two"));
    assert_eq!(t(one.lead(|_| async { 7 })).await, Leading::Finished(7));
    let leadership = t(two.acquire()).await;
    assert!(leadership.is_leading());
    let spec = lease(&c).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("two"));
    assert_eq!(spec.lease_transitions, Some(1));
    leadership.release().await;
    cluster.stop().await;
}

#[tokio::test]
async fn recorded_events_are_written() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let recorder = EventRecorder::new(c.clone(), "test-controller", "host-1");
    let obj = cm("default", "subject", "1");
    recorder.record(
        navarch_runtime::events::object_reference(&obj),
        EventType::Warning,
        "Testing",
        "Test",
        "something happened",
    );
    let found = t(async {
        loop {
            let list = c
                .list::<CoreEvent>("default", &ListParams::default())
                .await
                .unwrap();
            if let Some(ev) = list.items.into_iter().next() {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(found.reason.as_deref(), Some("Testing"));
    assert_eq!(found.r#type.as_deref(), Some("Warning"));
    assert_eq!(found.message.as_deref(), Some("something happened"));
    assert_eq!(
        found.involved_object.unwrap().name.as_deref(),
        Some("subject")
    );
    cluster.stop().await;
}
