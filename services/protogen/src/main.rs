//! `cargo run -p navarch-protogen` rewrites `proto/navarch/api/v1/*.proto` from the upstream
//! schemas, keeping existing field numbers, and the table of Kubernetes wire field numbers.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join(navarch_protogen::PROTO_DIR);
    std::fs::create_dir_all(&dir)?;
    let files = navarch_protogen::generate(&|stem| {
        std::fs::read_to_string(dir.join(format!("{stem}.proto"))).ok()
    })?;
    for (stem, text) in &files {
        std::fs::write(dir.join(format!("{stem}.proto")), text)?;
    }
    eprintln!("wrote {} files to {}", files.len(), dir.display());
    let k8s_pb = navarch_protogen::k8s_pb_src(&root)?;
    let (table, unmatched) = navarch_protogen::wire_numbers(&files, &k8s_pb)?;
    std::fs::write(root.join(navarch_protogen::WIRE_NUMBERS_FILE), table)?;
    eprintln!(
        "wrote {} ({} fields without a Kubernetes tag: {unmatched:?})",
        navarch_protogen::WIRE_NUMBERS_FILE,
        unmatched.len()
    );
    Ok(())
}
