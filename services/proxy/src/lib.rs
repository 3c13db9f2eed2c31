//! The node service proxy (kube-proxy's iptables mode): every node agent runs one. It
//! watches Services and EndpointSlices ([`proxier`]), turns them into chains ([`rules`],
//! pure functions) and programs them atomically with `iptables-restore` ([`iptables`]).

pub mod iptables;
pub mod proxier;
pub mod rules;

pub use iptables::Iptables;
pub use proxier::{Proxy, ProxyConfig};
pub use rules::RulesConfig;
