//! The `.proto` files are the contract for services that integrate over gRPC: a Python client
//! (grpcio, stubs generated from proto/ at test time) creates, watches and deletes an object
//! against a real `navarch up`.

use std::process::Command;

use navarch_e2e::{Navarch, repo_root};

#[test]
fn python_grpc_client_creates_watches_and_deletes() {
    let navarch = Navarch::up().expect("navarch up");
    let out = Command::new("python3")
        .arg(repo_root().join("tests/python/grpc_contract.py"))
        .arg(repo_root().join("proto"))
        .arg(navarch.grpc_authority())
        .arg(&navarch.ca_file)
        .arg(&navarch.token)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\nstdout: {stdout}\nstderr: {stderr}\nnavarch log:\n{}",
        navarch.log()
    );
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
}
