//! navarch-gateway
