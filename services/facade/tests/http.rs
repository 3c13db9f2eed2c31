//! The facade in front of a real gateway, over real TLS on 127.0.0.1:0, driven with plain
//! HTTP/1.1 and HTTP/2 clients: each verb's status code and body, `kind: Status` errors,
//! watch events arriving one by one on both protocols (no buffering), and a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::{GatewayConfig, MastersOnly, RunningGateway};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const TOKEN: &str = "admin-token";

struct Cluster {
    gateway: Option<RunningGateway>,
    facade: Option<navarch_facade::RunningFacade>,
    pki: navarch_pki::ClusterPki,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = navarch_pki::ClusterPki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
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
        let gateway = tokio::time::timeout(
            T,
            navarch_gateway::start(GatewayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                store: Arc::new(navarch_store::memory::MemoryStore::new()),
                authenticator: AuthChain::new(vec![Arc::new(tokens)]),
                authorizer: Arc::new(MastersOnly),
                tls: Some(pki.server_config(&[b"h2"])),
                tokens: None,
                audit: None,
                node_signer: None,
            }),
        )
        .await
        .unwrap()
        .unwrap();
        let channel = navarch_facade::gateway::channel(
            &format!("https://{}", gateway.addr),
            pki.ca_pem(),
            None,
        )
        .unwrap();
        let facade = tokio::time::timeout(
            T,
            navarch_facade::start(navarch_facade::FacadeConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls: pki.server_config(&[b"h2", b"http/1.1"]),
                gateway: channel,
                health: navarch_telemetry::Health::new(),
            }),
        )
        .await
        .unwrap()
        .unwrap();
        Self {
            gateway: Some(gateway),
            facade: Some(facade),
            pki,
            _dir: dir,
        }
    }

    /// A connection speaking `h2` or `http/1.1`, as ALPN settles it.
    async fn connect(&self, alpn: &[u8]) -> Conn {
        let addr = self.facade.as_ref().unwrap().addr;
        let mut config = (*self.pki.client_config()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::time::timeout(T, tokio::net::TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(T, connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap();
        let io = TokioIo::new(tls);
        if alpn == b"h2" {
            let (send, conn) = tokio::time::timeout(
                T,
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
            )
            .await
            .unwrap()
            .unwrap();
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = tokio::time::timeout(T, hyper::client::conn::http1::handshake(io))
                .await
                .unwrap()
                .unwrap();
            tokio::spawn(conn);
            Conn::H1(send)
        }
    }

    async fn stop(mut self) {
        if let Some(f) = self.facade.take() {
            tokio::time::timeout(T, f.shutdown()).await.unwrap();
        }
        if let Some(g) = self.gateway.take() {
            tokio::time::timeout(T, g.shutdown()).await.unwrap();
        }
    }
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> hyper::Response<hyper::body::Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {TOKEN}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let fut = async {
            match self {
                Conn::H1(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
                Conn::H2(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
            }
        };
        tokio::time::timeout(T, fut).await.unwrap()
    }

    /// Sends and reads the whole answer as JSON.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let resp = self.send(method, path, headers, body).await;
        let code = resp.status();
        let bytes = tokio::time::timeout(T, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (code, value)
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn configmap(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
        .to_string()
}

#[tokio::test]
async fn verbs_answer_as_kube_apiserver_on_both_protocols() {
    let cluster = Cluster::start().await;
    for alpn in [b"h2".as_slice(), b"http/1.1".as_slice()] {
        let mut c = cluster.connect(alpn).await;
        let proto = String::from_utf8_lossy(alpn).to_string();
        let name = format!("cm-{}", proto.replace(['/', '.'], ""));
        let base = "/api/v1/namespaces/default/configmaps";

        let (code, created) = c.call(Method::POST, base, &[JSON], &configmap(&name)).await;
        assert_eq!(code, StatusCode::CREATED, "{proto}: {created}");
        assert_eq!(created["metadata"]["name"], name.as_str());

        let (code, again) = c.call(Method::POST, base, &[JSON], &configmap(&name)).await;
        assert_eq!(code, StatusCode::CONFLICT, "{again}");
        assert_eq!(again["kind"], "Status");
        assert_eq!(again["reason"], "AlreadyExists");

        let (code, list) = c.call(Method::GET, base, &[], "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(list["kind"], "ConfigMapList");
        assert!(list["metadata"]["resourceVersion"].is_string(), "{list}");

        let path = format!("{base}/{name}");
        let (code, patched) = c
            .call(
                Method::PATCH,
                &path,
                &[("content-type", "application/merge-patch+json")],
                r#"{"data":{"k":"w"}}"#,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{patched}");
        assert_eq!(patched["data"]["k"], "w");

        let mut updated = patched.clone();
        updated["data"]["n"] = json!("1");
        let (code, updated) = c
            .call(Method::PUT, &path, &[JSON], &updated.to_string())
            .await;
        assert_eq!(code, StatusCode::OK, "{updated}");
        assert_eq!(updated["data"]["n"], "1");

        let (code, table) = c
            .call(
                Method::GET,
                &path,
                &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
                "",
            )
            .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(table["kind"], "Table", "{table}");
        assert_eq!(table["rows"][0]["cells"][0], name.as_str());

        let (code, status) = c.call(Method::DELETE, &path, &[], "").await;
        assert_eq!(code, StatusCode::OK, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["status"], "Success");
        let (code, gone) = c.call(Method::GET, &path, &[], "").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(gone["reason"], "NotFound");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn watch_events_arrive_one_by_one_on_both_protocols() {
    let cluster = Cluster::start().await;
    let mut writer = cluster.connect(b"h2").await;
    let (_, list) = writer
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps",
            &[],
            "",
        )
        .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, alpn) in [b"h2".as_slice(), b"http/1.1".as_slice()]
        .into_iter()
        .enumerate()
    {
        let mut c = cluster.connect(alpn).await;
        let resp = c
            .send(
                Method::GET,
                &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
                &[],
                "",
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let name = format!("w{i}");
        writer
            .call(
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                &[JSON],
                &configmap(&name),
            )
            .await;
        // The event for the object just created arrives while the stream stays open.
        let mut seen = String::new();
        while !seen.contains(&format!("\"name\":\"{name}\"")) {
            let frame = tokio::time::timeout(T, body.frame())
                .await
                .expect("an event within the timeout")
                .expect("the stream stays open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
        for line in seen.lines() {
            let ev: Value = serde_json::from_str(line).unwrap();
            assert_eq!(ev["type"], "ADDED", "{line}");
            assert_eq!(ev["object"]["kind"], "ConfigMap");
        }
    }
    cluster.stop().await;
}

#[tokio::test]
async fn unauthenticated_and_unknown_requests_get_status_bodies() {
    let cluster = Cluster::start().await;
    let mut c = cluster.connect(b"h2").await;
    let resp = {
        let req = Request::builder()
            .uri("/api/v1/namespaces")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let Conn::H2(s) = &mut c else { unreachable!() };
        tokio::time::timeout(T, s.send_request(req))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (code, body) = c
        .call(Method::GET, "/apis/example.com/v1/widgets", &[], "")
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
    let (code, body) = c
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (code, body) = c
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            &[JSON],
            "{not json",
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
    let (code, version) = c.call(Method::GET, "/version", &[], "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(version["major"], "1");
    cluster.stop().await;
}
