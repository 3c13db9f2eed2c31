//! Health endpoints as Kubernetes serves them: `/livez`, `/readyz` and `/healthz` (both sets),
//! each with `?verbose` (one `[+]name ok` / `[-]name failed: reason withheld` line per
//! check), `?exclude=name` (repeatable), and `/<endpoint>/<check>` for a single check.
//!
//! Every component registers its checks on one shared [`Health`]; the plain-HTTP telemetry
//! listener and the Kubernetes API both serve it, without credentials: the answers reveal
//! only check names and pass/fail, the reasons go to the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Which endpoints a check answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The process works (restart it otherwise): `/livez` and `/readyz`.
    Live,
    /// The component can serve traffic now: `/readyz` only.
    Ready,
}

#[derive(Clone)]
struct Check {
    name: String,
    probe: Probe,
    run: CheckFn,
}

/// The named checks of one process. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<Vec<Check>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// One check's result, as the endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    /// `None` when it passed, else the reason (logged, never served).
    pub error: Option<String>,
}

impl Health {
    /// A set with the `ping` check every Kubernetes component has.
    pub fn new() -> Self {
        let health = Self::default();
        health.add(Probe::Live, "ping", || async { Ok(()) });
        health
    }

    /// Registers `check` under `name`; a second check with the same name replaces the first.
    pub fn add<F, Fut>(&self, probe: Probe, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let run: CheckFn = Arc::new(move || Box::pin(check()));
        let mut checks = self
            .checks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.retain(|c| c.name != name);
        checks.push(Check {
            name: name.to_string(),
            probe,
            run,
        });
    }

    /// The registered check names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().into_iter().map(|c| c.name).collect()
    }

    fn snapshot(&self) -> Vec<Check> {
        self.checks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs the checks `endpoint` covers (`livez`: live ones; `readyz`/`healthz`: all),
    /// concurrently, each bounded by [`CHECK_TIMEOUT`], skipping `exclude`.
    pub async fn run(&self, endpoint: Endpoint, exclude: &[String]) -> Vec<CheckResult> {
        let checks: Vec<Check> = self
            .snapshot()
            .into_iter()
            .filter(|c| endpoint.covers(c.probe) && !exclude.contains(&c.name))
            .collect();
        let runs = checks.into_iter().map(|c| async move {
            let error = match tokio::time::timeout(CHECK_TIMEOUT, (c.run)()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            CheckResult {
                name: c.name,
                error,
            }
        });
        futures::future::join_all(runs).await
    }

    /// Runs one check by name; `None` when there is no such check on `endpoint`.
    pub async fn run_one(&self, endpoint: Endpoint, name: &str) -> Option<CheckResult> {
        let others: Vec<String> = self.names().into_iter().filter(|n| n != name).collect();
        self.run(endpoint, &others).await.into_iter().next()
    }
}

/// A plain-HTTP/1.0 `GET path` to `authority` (`host:port`), blocking: the status code and
/// the body. What `navarch status` and the tests read the telemetry listener with.
pub fn http_get(authority: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("no address for {authority}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// `/livez`, `/readyz` or `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Livez,
    Readyz,
    Healthz,
}

impl Endpoint {
    fn covers(self, probe: Probe) -> bool {
        match self {
            Self::Livez => probe == Probe::Live,
            Self::Readyz | Self::Healthz => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Livez => "livez",
            Self::Readyz => "readyz",
            Self::Healthz => "healthz",
        }
    }
}

/// The body and status Kubernetes gives for `results`.
pub fn render(endpoint: Endpoint, results: &[CheckResult], verbose: bool) -> (StatusCode, String) {
    let failed = results.iter().any(|r| r.error.is_some());
    for r in results {
        if let Some(error) = &r.error {
            tracing::warn!(check = %r.name, endpoint = endpoint.name(), %error, "health check failed");
        }
    }
    if !failed && !verbose {
        return (StatusCode::OK, "ok".into());
    }
    let mut body = String::new();
    for r in results {
        match r.error {
            None => body.push_str(&format!("[+]{} ok\n", r.name)),
            Some(_) => body.push_str(&format!("[-]{} failed: reason withheld\n", r.name)),
        }
    }
    if failed {
        body.push_str(&format!("{} check failed\n", endpoint.name()));
        (StatusCode::INTERNAL_SERVER_ERROR, body)
    } else {
        body.push_str(&format!("{} check passed\n", endpoint.name()));
        (StatusCode::OK, body)
    }
}

/// `verbose` and the `exclude` names of a health query.
fn parse_query(query: Option<&str>) -> (bool, Vec<String>) {
    let mut verbose = false;
    let mut exclude = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "verbose" => verbose = !matches!(value, "false" | "0"),
            "exclude" => exclude.push(value.to_string()),
            _ => {}
        }
    }
    (verbose, exclude)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn serve_all(health: Health, endpoint: Endpoint, query: Option<String>) -> Response {
    let (verbose, exclude) = parse_query(query.as_deref());
    let results = health.run(endpoint, &exclude).await;
    let (status, body) = render(endpoint, &results, verbose);
    text(status, body)
}

async fn serve_one(health: Health, endpoint: Endpoint, name: String) -> Response {
    match health.run_one(endpoint, &name).await {
        Some(CheckResult { error: None, .. }) => text(StatusCode::OK, "ok".into()),
        Some(CheckResult {
            error: Some(error), ..
        }) => {
            tracing::warn!(check = %name, endpoint = endpoint.name(), %error, "health check failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {name} check failed\n"),
            )
        }
        None => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

/// A router serving `/livez`, `/readyz`, `/healthz` and their per-check paths from `health`.
pub fn health_router<S>(health: Health) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::<S>::new();
    for endpoint in [Endpoint::Livez, Endpoint::Readyz, Endpoint::Healthz] {
        let all = health.clone();
        let one = health.clone();
        router = router
            .route(
                &format!("/{}", endpoint.name()),
                get(move |RawQuery(q): RawQuery| serve_all(all.clone(), endpoint, q)),
            )
            .route(
                &format!("/{}/{{check}}", endpoint.name()),
                get(move |Path(name): Path<String>| serve_one(one.clone(), endpoint, name)),
            );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verbose_lists_every_check_and_withholds_reasons() {
        let health = Health::new();
        health.add(Probe::Ready, "store", || async {
            Err("disk on fire".into())
        });
        let results = health.run(Endpoint::Readyz, &[]).await;
        let (status, body) = render(Endpoint::Readyz, &results, true);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "[+]ping ok\n[-]store failed: reason withheld\nreadyz check failed\n"
        );
        // livez does not run readiness checks.
        let results = health.run(Endpoint::Livez, &[]).await;
        assert_eq!(
            render(Endpoint::Livez, &results, false),
            (StatusCode::OK, "ok".into())
        );
        // Excluded checks do not count.
        let results = health.run(Endpoint::Readyz, &["store".into()]).await;
        assert_eq!(
            render(Endpoint::Readyz, &results, true),
            (StatusCode::OK, "[+]ping ok\nreadyz check passed\n".into())
        );
    }

    #[test]
    fn query_parsing() {
        assert_eq!(parse_query(None), (false, vec![]));
        assert_eq!(
            parse_query(Some("verbose&exclude=a&exclude=b")),
            (true, vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_query(Some("verbose=false")), (false, vec![]));
    }
}
