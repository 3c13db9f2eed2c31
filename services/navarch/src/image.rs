//! `navarch image push`: the `navarch` OCI image, built without a container engine (the
//! binary, plus its shared libraries unless it is static, in one layer) and pushed to a
//! registry. The Helm chart runs this image.

use std::path::PathBuf;

use anyhow::Context;
use navarch_agent::image_build::{ImageFile, LayerBuilder, program_files, push};

/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "/usr/local/bin/navarch";

#[derive(clap::Args, Clone, Debug)]
pub struct ImagePushArgs {
    /// Where to push, e.g. `registry.example.com/navarch:0.1.0` or `127.0.0.1:5000/navarch:dev`.
    pub reference: String,
    /// The binary to package. Default: this one. A static build
    /// (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target
    /// x86_64-unknown-linux-gnu -p navarch`) makes an image of one file; a dynamic one brings
    /// the shared libraries `ldd` lists.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Speak plain HTTP to the registry (always, for registries on 127.0.0.0/8).
    #[arg(long)]
    pub plain_http: bool,
}

pub async fn run(args: ImagePushArgs) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().context("locating this binary")?,
    };
    let started = std::time::Instant::now();
    let files = program_files(&binary, BINARY_PATH)?;
    let mut layer = LayerBuilder::new();
    for dir in ["tmp", "var/lib/navarch", "etc"] {
        layer.dir(dir)?;
    }
    let size: usize = files.iter().map(|f| f.bytes.len()).sum();
    for file in &files {
        layer.file(file)?;
    }
    layer.file(&ImageFile::plain(
        "etc/passwd",
        b"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            .to_vec(),
    ))?;
    let layer = layer.finish()?;
    tracing::info!(
        binary = %binary.display(),
        files = files.len(),
        bytes = size,
        compressed = layer.gzip.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "image layer built; pushing"
    );
    let loopback = args
        .reference
        .split('/')
        .next()
        .is_some_and(|host| host.starts_with("127.") || host.starts_with("localhost"));
    let version = env!("CARGO_PKG_VERSION");
    let url = push(
        &args.reference,
        layer,
        serde_json::json!({
            "Entrypoint": [BINARY_PATH],
            "Cmd": ["server", "--data-dir", "/var/lib/navarch"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "NAVARCH_DATA_DIR=/var/lib/navarch"],
            "WorkingDir": "/var/lib/navarch",
            "ExposedPorts": {"6443/tcp": {}, "6444/tcp": {}, "9464/tcp": {}},
        }),
        serde_json::json!({
            "org.opencontainers.image.title": "navarch",
            "org.opencontainers.image.description": "A container orchestrator that speaks the Kubernetes API",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        }),
        args.plain_http || loopback,
    )
    .await?;
    tracing::info!(reference = %args.reference, manifest = %url, elapsed_ms = started.elapsed().as_millis() as u64, "image pushed");
    println!("{}", args.reference);
    Ok(())
}
