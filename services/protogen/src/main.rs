//! `cargo run -p navarch-protogen` rewrites `proto/navarch/api/v1/*.proto` from the upstream
//! schemas, keeping existing field numbers.

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
    Ok(())
}
