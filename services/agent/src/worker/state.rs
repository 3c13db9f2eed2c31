//! The lifecycle of one pod on this node, as a small state machine with `can_*` predicates.
//!
//! ```text
//! Pending ──SandboxReady──► Initializing ──Initialized──► Running ──Finished──► Completed
//!    ▲                          │  │                         │  │                  │
//!    └──────SandboxLost─────────┘  └────────Finished─────────┼──┘                  │
//!    └──────────────────────────SandboxLost──────────────────┘                     │
//! any state but Terminated ──Terminate──► Terminating ──Stopped──► Terminated ◄────┘(Terminate)
//! ```

use serde::{Deserialize, Serialize};

/// Where a pod is in its life on this node. Persisted after every transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodLifecycle {
    /// Accepted; no sandbox (namespaces, IP) yet.
    Pending,
    /// Sandbox ready; init containers run one after another.
    Initializing,
    /// Init containers done; app containers run and restart per policy.
    Running,
    /// Every container finished and none will be restarted (phase Succeeded or Failed).
    Completed,
    /// Containers are being stopped (deletion), honouring the grace period.
    Terminating,
    /// Containers stopped and sandbox removed; only the API object remains to finish.
    Terminated,
}

/// What happened to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodEvent {
    SandboxReady,
    Initialized,
    SandboxLost,
    Finished,
    Terminate,
    Stopped,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pod transition: {event:?} in state {from:?}")]
pub struct InvalidTransition {
    pub from: PodLifecycle,
    pub event: PodEvent,
}

impl PodLifecycle {
    /// A sandbox may be created.
    pub fn can_create_sandbox(self) -> bool {
        matches!(self, PodLifecycle::Pending)
    }

    /// Containers may be created and started (init containers while initializing).
    pub fn can_start_containers(self) -> bool {
        matches!(self, PodLifecycle::Initializing | PodLifecycle::Running)
    }

    /// Exited containers may be restarted.
    pub fn can_restart(self) -> bool {
        self.can_start_containers()
    }

    /// Probes run.
    pub fn can_probe(self) -> bool {
        matches!(self, PodLifecycle::Initializing | PodLifecycle::Running)
    }

    /// Termination (kill containers, remove sandbox) may begin.
    pub fn can_terminate(self) -> bool {
        !matches!(self, PodLifecycle::Terminated)
    }

    /// The pod's resources are gone; the API object may be removed.
    pub fn can_remove(self) -> bool {
        matches!(self, PodLifecycle::Terminated)
    }

    /// No container of this pod will run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodLifecycle::Completed | PodLifecycle::Terminated)
    }

    /// The state after `event`, or why not.
    pub fn transition(self, event: PodEvent) -> Result<PodLifecycle, InvalidTransition> {
        use PodEvent as E;
        use PodLifecycle as S;
        let next = match (self, event) {
            (S::Pending, E::SandboxReady) => S::Initializing,
            (S::Initializing, E::Initialized) => S::Running,
            (S::Initializing | S::Running, E::SandboxLost) => S::Pending,
            (S::Initializing | S::Running, E::Finished) => S::Completed,
            (S::Pending | S::Initializing | S::Running | S::Terminating, E::Terminate) => {
                S::Terminating
            }
            (S::Completed, E::Terminate) => S::Terminated,
            (S::Terminating, E::Stopped) => S::Terminated,
            (from, event) => return Err(InvalidTransition { from, event }),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::PodEvent as E;
    use super::PodLifecycle as S;
    use super::*;

    const STATES: [S; 6] = [
        S::Pending,
        S::Initializing,
        S::Running,
        S::Completed,
        S::Terminating,
        S::Terminated,
    ];
    const EVENTS: [E; 6] = [
        E::SandboxReady,
        E::Initialized,
        E::SandboxLost,
        E::Finished,
        E::Terminate,
        E::Stopped,
    ];

    /// Every (state, event) pair: the expected next state, or `None` when refused.
    fn expected(from: S, event: E) -> Option<S> {
        let table: &[(S, E, S)] = &[
            (S::Pending, E::SandboxReady, S::Initializing),
            (S::Pending, E::Terminate, S::Terminating),
            (S::Initializing, E::Initialized, S::Running),
            (S::Initializing, E::SandboxLost, S::Pending),
            (S::Initializing, E::Finished, S::Completed),
            (S::Initializing, E::Terminate, S::Terminating),
            (S::Running, E::SandboxLost, S::Pending),
            (S::Running, E::Finished, S::Completed),
            (S::Running, E::Terminate, S::Terminating),
            (S::Completed, E::Terminate, S::Terminated),
            (S::Terminating, E::Terminate, S::Terminating),
            (S::Terminating, E::Stopped, S::Terminated),
        ];
        table
            .iter()
            .find(|(s, e, _)| *s == from && *e == event)
            .map(|(_, _, to)| *to)
    }

    #[test]
    fn every_transition_matches_the_table() {
        for from in STATES {
            for event in EVENTS {
                let got = from.transition(event).ok();
                assert_eq!(got, expected(from, event), "{from:?} + {event:?}");
                if got.is_none() {
                    assert_eq!(
                        from.transition(event),
                        Err(InvalidTransition { from, event })
                    );
                }
            }
        }
    }

    #[test]
    fn predicates() {
        let rows: &[(S, bool, bool, bool, bool, bool)] = &[
            // state, create_sandbox, start_containers, terminate, remove, terminal
            (S::Pending, true, false, true, false, false),
            (S::Initializing, false, true, true, false, false),
            (S::Running, false, true, true, false, false),
            (S::Completed, false, false, true, false, true),
            (S::Terminating, false, false, true, false, false),
            (S::Terminated, false, false, false, true, true),
        ];
        for &(s, sandbox, start, terminate, remove, terminal) in rows {
            assert_eq!(s.can_create_sandbox(), sandbox, "{s:?}");
            assert_eq!(s.can_start_containers(), start, "{s:?}");
            assert_eq!(s.can_restart(), start, "{s:?}");
            assert_eq!(s.can_probe(), start, "{s:?}");
            assert_eq!(s.can_terminate(), terminate, "{s:?}");
            assert_eq!(s.can_remove(), remove, "{s:?}");
            assert_eq!(s.is_terminal(), terminal, "{s:?}");
        }
    }

    #[test]
    fn predicates_agree_with_transitions() {
        for s in STATES {
            assert_eq!(
                s.can_create_sandbox(),
                s.transition(E::SandboxReady).is_ok()
            );
            assert_eq!(s.can_terminate(), s.transition(E::Terminate).is_ok());
        }
    }

    #[test]
    fn lifecycle_round_trips_through_json() {
        for s in STATES {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<S>(&json).unwrap(), s);
        }
    }
}
