//! Applies generated chains with the real `iptables-restore --noflush`: one atomic batch per
//! change holding only the chains that changed, nothing at all when nothing changed; the
//! jumps from the built-in chains inserted once (checked with `iptables -C`, so a restarted
//! proxy never duplicates them); everything removed on clean shutdown.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::rules::{self, Chains, Jump, Table};

/// Why programming the rules failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// The applier for one set of chains (one prefix) in one network namespace.
pub struct Iptables {
    /// Words run before each command (e.g. `ip netns exec NAME`); empty for this namespace.
    exec_prefix: Vec<String>,
    prefix: String,
    /// What the kernel holds, as far as we know; `None` until the first sync.
    applied: Option<Chains>,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Chains rewritten.
    pub chains_written: usize,
    /// Chains deleted.
    pub chains_deleted: usize,
    /// Bytes of `iptables-restore` input.
    pub bytes: usize,
}

impl Iptables {
    /// Chains named `prefix…` in the current network namespace.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            exec_prefix: Vec::new(),
            prefix: prefix.into(),
            applied: None,
        }
    }

    /// Runs every command inside the named network namespace (`ip netns exec NAME`).
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.exec_prefix = ["ip", "netns", "exec", netns].map(String::from).to_vec();
        self
    }

    async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, IptablesError> {
        run(&self.exec_prefix, program, args, stdin).await
    }

    /// Deletes the connection-tracking entries that would keep sending packets to endpoints
    /// that are gone (kube-proxy's conntrack cleanup): UDP flows to them, and TCP flows still
    /// in `SYN_SENT` (a SYN to a dead pod, whose retransmissions, or a later connection from
    /// the same port, would follow the old NAT mapping for two minutes). Established TCP
    /// connections stay: a terminating pod drains them. Needs the `conntrack` tool; without
    /// it, says so once and does nothing.
    pub async fn clear_flows_to(&self, endpoints: &[std::net::Ipv4Addr]) {
        for ip in endpoints {
            let ip = ip.to_string();
            for args in [
                vec!["-D", "-p", "tcp", "--state", "SYN_SENT", "--reply-src", &ip],
                vec!["-D", "-p", "udp", "--reply-src", &ip],
            ] {
                match self.run("conntrack", &args, None).await {
                    Ok(_) => {}
                    // Nothing matched: conntrack says so and exits 1.
                    Err(IptablesError::Failed { stderr, .. })
                        if stderr.contains("0 flow entries") => {}
                    Err(IptablesError::Spawn { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        static WARNED: std::sync::Once = std::sync::Once::new();
                        WARNED.call_once(|| {
                            tracing::warn!(
                                "conntrack is not installed: stale flows to removed endpoints are not cleared (apt-get install conntrack)"
                            )
                        });
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, endpoint = %ip, "clearing conntrack entries")
                    }
                }
            }
        }
    }

    /// Our chains present in the kernel now (from `iptables-save`).
    pub async fn existing_chains(&self) -> Result<BTreeSet<(Table, String)>, IptablesError> {
        let mut out = BTreeSet::new();
        for table in [Table::Nat, Table::Filter] {
            let text = self
                .run("iptables-save", &["-t", table.name()], None)
                .await?;
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix(':')
                    && let Some(name) = rest.split_whitespace().next()
                    && name.starts_with(&self.prefix)
                {
                    out.insert((table, name.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Makes the kernel hold `desired`: only the chains that differ from the last sync (on
    /// the first sync: all of ours, and chains of ours it finds left over are deleted).
    pub async fn sync(&mut self, desired: &Chains) -> Result<SyncStats, IptablesError> {
        let old = match &self.applied {
            Some(old) => old.clone(),
            None => {
                // Whatever a previous run left: unknown content, so rewritten or deleted.
                self.existing_chains()
                    .await?
                    .into_iter()
                    .map(|k| (k, vec!["# unknown".to_string()]))
                    .collect()
            }
        };
        let input = rules::restore_input(&old, desired);
        let stats = SyncStats {
            chains_written: desired
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .count(),
            chains_deleted: old.keys().filter(|k| !desired.contains_key(*k)).count(),
            bytes: input.len(),
        };
        if !input.is_empty()
            && let Err(e) = self
                .run("iptables-restore", &["-w", "--noflush"], Some(&input))
                .await
        {
            // What the kernel holds is unknown now: the next sync starts over.
            self.applied = None;
            return Err(e);
        }
        let first = self.applied.is_none();
        self.applied = Some(desired.clone());
        if first {
            self.ensure_jumps().await?;
        }
        Ok(stats)
    }

    /// Inserts each jump into its built-in chain unless it is there already.
    pub async fn ensure_jumps(&self) -> Result<(), IptablesError> {
        for jump in rules::jumps(&self.prefix) {
            if !self.has_jump(&jump).await {
                let mut args = vec!["-w", "-t", jump.table.name(), "-I", jump.chain, "1"];
                args.extend(jump.args.iter().map(String::as_str));
                self.run("iptables", &args, None).await?;
            }
        }
        Ok(())
    }

    async fn has_jump(&self, jump: &Jump) -> bool {
        let mut args = vec!["-w", "-t", jump.table.name(), "-C", jump.chain];
        args.extend(jump.args.iter().map(String::as_str));
        self.run("iptables", &args, None).await.is_ok()
    }

    /// Removes the jumps and every chain of ours (clean shutdown).
    pub async fn cleanup(&mut self) -> Result<(), IptablesError> {
        for jump in rules::jumps(&self.prefix) {
            while self.has_jump(&jump).await {
                let mut args = vec!["-w", "-t", jump.table.name(), "-D", jump.chain];
                args.extend(jump.args.iter().map(String::as_str));
                self.run("iptables", &args, None).await?;
            }
        }
        let existing: Chains = self
            .existing_chains()
            .await?
            .into_iter()
            .map(|k| (k, Vec::new()))
            .collect();
        let input = rules::restore_input(&existing, &Chains::new());
        if !input.is_empty() {
            self.run("iptables-restore", &["-w", "--noflush"], Some(&input))
                .await?;
        }
        self.applied = None;
        Ok(())
    }
}

/// Runs `program args` (after `exec_prefix`, e.g. `ip netns exec NAME`), feeding `stdin`;
/// its stdout, or the failure with its stderr.
pub(crate) async fn run(
    exec_prefix: &[String],
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, IptablesError> {
    let mut words: Vec<&str> = exec_prefix.iter().map(String::as_str).collect();
    words.push(program);
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..]).args(args);
    let name = format!("{} {}", words.join(" "), args.join(" "));
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| IptablesError::Spawn {
        command: name.clone(),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|source| IptablesError::Spawn {
                command: name.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| IptablesError::Spawn {
            command: name.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(IptablesError::Failed {
            command: name,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
