//! `navarch status`: the health of the control plane (its `/livez` and `/readyz` checks) and
//! of every node, in two tables.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use navarch_api::coordination::v1::Lease;
use navarch_api::core::v1::{Node, Pod};
use navarch_gateway::Client;
use navarch_gateway::client::ListParams;

/// What `navarch up` / `navarch server` wrote into the data dir.
/// What `navarch up` / `navarch server` wrote into the data dir for local clients.
#[derive(serde::Deserialize)]
pub struct Connection {
    pub grpc: String,
    #[serde(default)]
    pub telemetry: String,
    pub token_file: String,
    pub ca_file: String,
    /// The admin token and the CA, read from the files above.
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub ca: String,
}

impl Connection {
    /// Reads `connection.json` and the files it names from `data_dir`.
    pub fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("connection.json");
        let mut connection: Connection =
            serde_json::from_slice(&std::fs::read(&path).with_context(|| {
                format!("reading {} (is navarch up running here?)", path.display())
            })?)?;
        connection.token = std::fs::read_to_string(data_dir.join(&connection.token_file))?
            .trim()
            .to_string();
        connection.ca = std::fs::read_to_string(data_dir.join(&connection.ca_file))?;
        Ok(connection)
    }

    /// A gateway client as the admin.
    pub async fn admin(&self) -> anyhow::Result<Client> {
        Client::connect(&self.grpc, &self.ca, &self.token)
            .await
            .context("connecting to the gateway")
    }
}

/// One check's state on `/livez` and `/readyz` (`None`: not part of that endpoint).
#[derive(Default)]
struct CheckRow {
    live: Option<bool>,
    ready: Option<bool>,
}

/// `[+]name ok` / `[-]name failed: …` lines of a verbose health answer.
fn parse_checks(body: &str) -> Vec<(String, bool)> {
    body.lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("[+]") {
                Some((rest.split_whitespace().next()?.to_string(), true))
            } else {
                let rest = l.strip_prefix("[-]")?;
                Some((rest.split_whitespace().next()?.to_string(), false))
            }
        })
        .collect()
}

fn mark(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "ok",
        Some(false) => "FAILED",
        None => "-",
    }
}

/// How long ago `t` (RFC 3339) was, the way kubectl prints ages.
fn age(t: Option<&str>) -> String {
    let Some(t) = t.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now() - t)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0) as u64;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A node's STATUS as `kubectl get nodes` prints it.
fn node_status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type.as_deref() == Some("Ready"))
        })
        .and_then(|c| c.status.as_deref());
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The pressure conditions that are True, `-` when none.
fn pressure(node: &Node) -> String {
    let on: Vec<&str> = node
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| {
                    c.r#type.as_deref().is_some_and(|t| t.ends_with("Pressure"))
                        && c.status.as_deref() == Some("True")
                })
                .filter_map(|c| c.r#type.as_deref())
                .collect()
        })
        .unwrap_or_default();
    if on.is_empty() {
        "-".into()
    } else {
        on.join(",")
    }
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Prints the tables; fails (non-zero exit) when the control plane is not ready.
pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    let connection = Connection::read(data_dir)?;

    // 1. Control plane checks.
    let telemetry = connection
        .telemetry
        .trim_start_matches("http://")
        .to_string();
    let mut checks: BTreeMap<String, CheckRow> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut ready = false;
    let mut reachable = true;
    for (endpoint, live) in [("/livez?verbose", true), ("/readyz?verbose", false)] {
        let answer = if telemetry.is_empty() {
            Err(std::io::Error::other(
                "no telemetry address in connection.json",
            ))
        } else {
            let t = telemetry.clone();
            tokio::task::spawn_blocking(move || navarch_telemetry::health::http_get(&t, endpoint))
                .await?
        };
        match answer {
            Ok((code, body)) => {
                if !live {
                    ready = code == 200;
                }
                for (name, ok) in parse_checks(&body) {
                    if !checks.contains_key(&name) {
                        order.push(name.clone());
                    }
                    let row = checks.entry(name).or_default();
                    if live {
                        row.live = Some(ok);
                    } else {
                        row.ready = Some(ok);
                    }
                }
            }
            Err(error) => {
                reachable = false;
                println!("control plane telemetry {telemetry} unreachable: {error}");
            }
        }
    }
    println!(
        "CONTROL PLANE   {}   {}",
        connection.grpc,
        if ready { "Ready" } else { "NOT READY" }
    );
    let mut rows = vec![vec!["CHECK".into(), "LIVEZ".into(), "READYZ".into()]];
    for name in &order {
        let row = &checks[name];
        rows.push(vec![
            name.clone(),
            mark(row.live).into(),
            mark(row.ready).into(),
        ]);
    }
    print_table(&rows);
    println!();

    // 2. Nodes, from the API.
    let client = connection.admin().await?;
    let nodes = client.list::<Node>("", &ListParams::default()).await?.items;
    let pods = client.list::<Pod>("", &ListParams::default()).await?.items;
    let leases = client
        .list::<Lease>("kube-node-lease", &ListParams::default())
        .await?
        .items;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let mut rows = vec![
        [
            "NAME",
            "STATUS",
            "PRESSURE",
            "PODS",
            "HEARTBEAT",
            "AGE",
            "VERSION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for node in &nodes {
        let meta = node.metadata.as_ref();
        let name = meta.and_then(|m| m.name.clone()).unwrap_or_default();
        let max_pods = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.get("pods"))
            .map(|q| q.value.clone())
            .unwrap_or_else(|| "?".into());
        let heartbeat = leases
            .iter()
            .find(|l| l.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some(&name))
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.clone());
        rows.push(vec![
            name.clone(),
            node_status(node),
            pressure(node),
            format!("{}/{max_pods}", per_node.get(&name).copied().unwrap_or(0)),
            heartbeat
                .as_deref()
                .map_or("-".into(), |t| format!("{} ago", age(Some(t)))),
            age(meta.and_then(|m| m.creation_timestamp.as_deref())),
            node.status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .and_then(|i| i.kubelet_version.clone())
                .unwrap_or_default(),
        ]);
    }
    println!("NODES   {}", nodes.len());
    print_table(&rows);
    if !reachable || !ready {
        anyhow::bail!("the control plane is not ready");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_health_lines_are_parsed() {
        let body = "[+]ping ok\n[-]store failed: reason withheld\nreadyz check failed\n";
        assert_eq!(
            parse_checks(body),
            vec![("ping".to_string(), true), ("store".to_string(), false)]
        );
    }
}
