//! Reading and atomically writing PKI files with the right permissions.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{PkiError, Result};

/// Mode of private key files.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificate files.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) if needed; directories created here are private (0700).
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// Reads a file as text, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Tightens an existing private key file to 0600 if it is readable by others.
pub(crate) fn restrict_private(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format_args!("{:o}", mode & 0o777), "private key readable by others; restricting to 0600");
        fs::set_permissions(path, Permissions::from_mode(PRIVATE_MODE)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename) with the given mode.
pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = temporary_path(path);
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    // The umask may have cleared bits of `mode`; set it exactly.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_error(&tmp))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(parent) = path.parent() {
        // Make the rename durable; failure here only weakens crash safety.
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
