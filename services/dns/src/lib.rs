//! Cluster DNS. Every node agent runs one on its pod bridge's gateway address (like
//! NodeLocal DNSCache): pods' `resolv.conf` points there, so a lookup never leaves the node
//! nor crosses a conntrack'd ClusterIP, and DNS keeps working when the service proxy is
//! off. The cluster zone is answered from the node's informer cache ([`zone`], pure);
//! other names are forwarded to the node's upstream resolvers ([`server`]).

pub mod client;
pub mod server;
pub mod zone;

pub use server::{DnsConfig, DnsServer, SharedZone};
pub use zone::{Answer, Zone, ZoneConfig};
