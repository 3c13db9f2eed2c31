//! Navarch's object model.
//!
//! Types are generated from `proto/` (see `navarch-protogen` for how the model is kept complete
//! against upstream Kubernetes). The JSON and YAML forms are exactly Kubernetes' own (see
//! [`codec`]). Paths mirror the proto packages: `navarch_api::core::v1::Pod`,
//! `navarch_api::apps::v1::Deployment`, `navarch_api::gateway::v1::gateway_client`.

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
mod generated {
    pub mod navarch {
        pub mod api {
            pub mod apps {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.apps.v1.rs"));
                }
            }
            pub mod authentication {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/navarch.api.authentication.v1.rs"
                    ));
                }
            }
            pub mod authorization {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.authorization.v1.rs"));
                }
            }
            pub mod autoscaling {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.autoscaling.v1.rs"));
                }
                pub mod v2 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.autoscaling.v2.rs"));
                }
            }
            pub mod batch {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.batch.v1.rs"));
                }
            }
            pub mod coordination {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.coordination.v1.rs"));
                }
            }
            pub mod core {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.core.v1.rs"));
                }
            }
            pub mod discovery {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.discovery.v1.rs"));
                }
            }
            pub mod meta {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.meta.v1.rs"));
                }
            }
            pub mod metrics {
                pub mod v1beta1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.metrics.v1beta1.rs"));
                }
            }
            pub mod policy {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.policy.v1.rs"));
                }
            }
            pub mod rbac {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.rbac.v1.rs"));
                }
            }
            pub mod scheduling {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/navarch.api.scheduling.v1.rs"));
                }
                pub mod v1alpha3 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/navarch.api.scheduling.v1alpha3.rs"
                    ));
                }
            }
        }
        pub mod gateway {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/navarch.gateway.v1.rs"));
            }
        }
    }
}

pub use generated::navarch::api::*;
pub use generated::navarch::gateway;

pub mod codec;
pub mod conversion;
pub mod defaults;
pub mod errors;
pub mod k8s_wire;
pub mod kinds;
pub mod object;
pub mod patch;
pub mod quantity;
pub mod selectors;
pub mod stored;
pub mod validation;

pub use errors::{ApiError, FieldError, Reason};
pub use object::Object;
pub use quantity::Quantity;
