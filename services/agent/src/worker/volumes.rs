//! ConfigMap, Secret, downward API and projected volumes: what files a volume holds (pure,
//! from the API objects) and writing them the way the kubelet's `AtomicWriter` does, so a
//! container never sees half an update: the files live in a timestamped directory,
//! `..data` is a symlink to it swapped with one `rename`, and each top-level name is a
//! symlink through `..data`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use navarch_api::core::v1::{ConfigMap, DownwardApiVolumeFile, KeyToPath, Pod, Secret, Volume};
use navarch_api::{ApiError, Reason};

use crate::api::PodApi;

/// A volume's files: path inside the volume → (contents, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The Kubernetes default for `defaultMode`.
const DEFAULT_MODE: i32 = 0o644;

/// Whether the agent fills this volume from API objects (and refreshes it).
pub fn is_projected(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// `data` placed by `items` (each key at its path, only those keys) or every key at its own
/// name; a missing key is an error unless the source is optional.
fn place(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: i32,
    optional: bool,
    out: &mut Files,
) -> Result<(), String> {
    if items.is_empty() {
        for (k, v) in data {
            out.insert(k.clone(), (v.clone(), default_mode as u32));
        }
        return Ok(());
    }
    for item in items {
        let key = item.key.clone().unwrap_or_default();
        let path = item.path.clone().unwrap_or_else(|| key.clone());
        check_path(&path)?;
        match data.get(&key) {
            Some(v) => {
                out.insert(path, (v.clone(), item.mode.unwrap_or(default_mode) as u32));
            }
            None if optional => {}
            None => {
                return Err(format!(
                    "configured to use key {key:?} of {what}, which is missing"
                ));
            }
        }
    }
    Ok(())
}

/// Item paths are relative, without `..`, as validation also requires.
fn check_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
        || path.starts_with("..")
    {
        return Err(format!("invalid volume item path {path:?}"));
    }
    Ok(())
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .binary_data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &cm.data {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> =
        s.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in &s.string_data {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// A downward API file's contents: one field, or labels/annotations as `key="value"` lines.
fn downward_value(pod: &Pod, file: &DownwardApiVolumeFile, pod_ip: &str) -> Result<String, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let Some(path) = file.field_ref.as_ref().and_then(|f| f.field_path.clone()) else {
        return Err(format!(
            "downward API file {:?}: only fieldRef is supported",
            file.path.clone().unwrap_or_default()
        ));
    };
    let lines = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    Ok(match path.as_str() {
        "metadata.labels" => lines(&meta.labels),
        "metadata.annotations" => lines(&meta.annotations),
        other => super::env::field_value(pod, other, pod_ip, "").map_err(|e| e.0)?,
    })
}

fn downward(
    pod: &Pod,
    items: &[DownwardApiVolumeFile],
    default_mode: i32,
    pod_ip: &str,
    out: &mut Files,
) -> Result<(), String> {
    for f in items {
        let path = f.path.clone().unwrap_or_default();
        check_path(&path)?;
        let value = downward_value(pod, f, pod_ip)?;
        out.insert(
            path,
            (value.into_bytes(), f.mode.unwrap_or(default_mode) as u32),
        );
    }
    Ok(())
}

/// Reads a ConfigMap or Secret; `Ok(None)` when it is missing and `optional`.
async fn fetch<T>(
    what: &str,
    optional: bool,
    get: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<Option<T>, String> {
    match get.await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.reason == Reason::NotFound && optional => Ok(None),
        Err(e) if e.reason == Reason::NotFound => Err(format!("{what} not found")),
        Err(e) => Err(format!("reading {what}: {e}")),
    }
}

/// The files `volume` of `pod` holds now (`None`: not a volume the agent fills).
pub async fn files(
    api: &dyn PodApi,
    pod: &Pod,
    volume: &Volume,
    pod_ip: &str,
) -> Option<Result<Files, String>> {
    if !is_projected(volume) {
        return None;
    }
    Some(files_of(api, pod, volume, pod_ip).await)
}

async fn files_of(api: &dyn PodApi, pod: &Pod, v: &Volume, pod_ip: &str) -> Result<Files, String> {
    let ns = pod
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.clone())
        .unwrap_or_default();
    let mut out = Files::new();
    if let Some(src) = &v.config_map {
        let name = src.name.clone().unwrap_or_default();
        let optional = src.optional.unwrap_or(false);
        let what = format!("configmap {name:?}");
        if let Some(cm) = fetch(&what, optional, api.config_map(&ns, &name)).await? {
            let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
            place(
                &what,
                &config_map_data(&cm),
                &src.items,
                mode,
                optional,
                &mut out,
            )?;
        }
    }
    if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let optional = src.optional.unwrap_or(false);
        let what = format!("secret {name:?}");
        if let Some(s) = fetch(&what, optional, api.secret(&ns, &name)).await? {
            let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
            place(
                &what,
                &secret_data(&s),
                &src.items,
                mode,
                optional,
                &mut out,
            )?;
        }
    }
    if let Some(src) = &v.downward_api {
        downward(
            pod,
            &src.items,
            src.default_mode.unwrap_or(DEFAULT_MODE),
            pod_ip,
            &mut out,
        )?;
    }
    if let Some(src) = &v.projected {
        let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
        for p in &src.sources {
            if let Some(c) = &p.config_map {
                let name = c.name.clone().unwrap_or_default();
                let optional = c.optional.unwrap_or(false);
                let what = format!("configmap {name:?}");
                if let Some(cm) = fetch(&what, optional, api.config_map(&ns, &name)).await? {
                    place(
                        &what,
                        &config_map_data(&cm),
                        &c.items,
                        mode,
                        optional,
                        &mut out,
                    )?;
                }
            }
            if let Some(s) = &p.secret {
                let name = s.name.clone().unwrap_or_default();
                let optional = s.optional.unwrap_or(false);
                let what = format!("secret {name:?}");
                if let Some(sec) = fetch(&what, optional, api.secret(&ns, &name)).await? {
                    place(
                        &what,
                        &secret_data(&sec),
                        &s.items,
                        mode,
                        optional,
                        &mut out,
                    )?;
                }
            }
            if let Some(d) = &p.downward_api {
                downward(pod, &d.items, mode, pod_ip, &mut out)?;
            }
            if let Some(t) = &p.service_account_token {
                let meta = pod.metadata.clone().unwrap_or_default();
                let want = crate::api::TokenFor {
                    namespace: ns.clone(),
                    account: pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    audience: t.audience.clone().unwrap_or_default(),
                    seconds: t.expiration_seconds.unwrap_or(3600),
                    pod_name: meta.name.unwrap_or_default(),
                    pod_uid: meta.uid.unwrap_or_default(),
                };
                let token = api
                    .service_account_token(&want)
                    .await
                    .map_err(|e| format!("failed to fetch token: {e}"))?;
                let path = t.path.clone().unwrap_or_else(|| "token".into());
                out.insert(path, (token.into_bytes(), mode as u32));
            }
        }
    }
    Ok(out)
}

/// What is in `dir` now, read through `..data` (empty when never written).
fn current(dir: &Path) -> Option<Files> {
    let data = dir.join("..data");
    let mut out = Files::new();
    fn walk(base: &Path, rel: &str, out: &mut Files) -> std::io::Result<()> {
        for e in std::fs::read_dir(base.join(rel))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = e.metadata()?;
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(path, (std::fs::read(e.path())?, mode));
            }
        }
        Ok(())
    }
    walk(&data, "", &mut out).ok()?;
    Some(out)
}

/// Makes `dir` hold exactly `files`, atomically for readers; `Ok(false)` when it already did.
pub fn write_atomic(dir: &Path, files: &Files) -> std::io::Result<bool> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    if current(dir).as_ref() == Some(files) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh)?;
    for (path, (bytes, mode)) in files {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode & 0o7777))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    // The user-visible names: one symlink per top-level entry, stale ones removed.
    let tops: BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakePodApi;
    use navarch_api::core::v1::{
        ConfigMapProjection, ConfigMapVolumeSource, DownwardApiVolumeSource, ObjectFieldSelector,
        ProjectedVolumeSource, SecretVolumeSource, VolumeProjection,
    };
    use navarch_api::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn api() -> FakePodApi {
        let api = FakePodApi::default();
        api.add_config_map(ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("cfg".into()),
                ..Default::default()
            }),
            data: [
                ("app.conf".to_string(), "port=80\n".to_string()),
                ("other".to_string(), "x".to_string()),
            ]
            .into(),
            ..Default::default()
        });
        api.add_secret(Secret {
            metadata: Some(ObjectMeta {
                name: Some("creds".into()),
                ..Default::default()
            }),
            data: [("password".to_string(), b"s3cret".to_vec())].into(),
            ..Default::default()
        });
        api
    }

    fn key(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: Some(key.into()),
            path: Some(path.into()),
            mode,
            ..Default::default()
        }
    }

    fn file(bytes: &str, mode: u32) -> (Vec<u8>, u32) {
        (bytes.as_bytes().to_vec(), mode)
    }

    #[tokio::test]
    async fn volume_files_from_objects() {
        let api = api();
        let pod = pod();
        let cm = |items: Vec<KeyToPath>, optional: Option<bool>, name: &str| Volume {
            name: Some("v".into()),
            config_map: Some(ConfigMapVolumeSource {
                name: Some(name.into()),
                items,
                default_mode: Some(0o600),
                optional,
                ..Default::default()
            }),
            ..Default::default()
        };
        let run = |v: Volume| {
            let api = &api;
            let pod = &pod;
            async move { files(api, pod, &v, "10.1.0.5").await.unwrap() }
        };
        assert_eq!(
            run(cm(vec![], None, "cfg")).await.unwrap(),
            Files::from([
                ("app.conf".into(), file("port=80\n", 0o600)),
                ("other".into(), file("x", 0o600)),
            ])
        );
        assert_eq!(
            run(cm(
                vec![key("app.conf", "conf/app.conf", Some(0o400))],
                None,
                "cfg"
            ))
            .await
            .unwrap(),
            Files::from([("conf/app.conf".into(), file("port=80\n", 0o400))])
        );
        let missing = run(cm(vec![], None, "nope")).await.unwrap_err();
        assert_eq!(missing, "configmap \"nope\" not found");
        assert_eq!(
            run(cm(vec![], Some(true), "nope")).await.unwrap(),
            Files::new()
        );
        let bad_key = run(cm(vec![key("absent", "a", None)], None, "cfg")).await;
        assert!(bad_key.unwrap_err().contains("\"absent\""));
        let escape = run(cm(vec![key("other", "../etc/passwd", None)], None, "cfg")).await;
        assert!(escape.unwrap_err().contains("invalid volume item path"));

        let secret = Volume {
            secret: Some(SecretVolumeSource {
                secret_name: Some("creds".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            run(secret).await.unwrap(),
            Files::from([("password".into(), file("s3cret", 0o644))])
        );

        let dapi = |path: &str, field: &str| DownwardApiVolumeFile {
            path: Some(path.into()),
            field_ref: Some(ObjectFieldSelector {
                field_path: Some(field.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let downward = Volume {
            downward_api: Some(DownwardApiVolumeSource {
                items: vec![
                    dapi("name", "metadata.name"),
                    dapi("labels", "metadata.labels"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            run(downward).await.unwrap(),
            Files::from([
                ("name".into(), file("web-1", 0o644)),
                ("labels".into(), file("app=\"web\"\n", 0o644)),
            ])
        );

        let projected = Volume {
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o440),
                sources: vec![
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: Some("cfg".into()),
                            items: vec![key("other", "other.txt", None)],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(navarch_api::core::v1::DownwardApiProjection {
                            items: vec![dapi("ns", "metadata.namespace")],
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            run(projected).await.unwrap(),
            Files::from([
                ("other.txt".into(), file("x", 0o440)),
                ("ns".into(), file("shop", 0o440)),
            ])
        );
        assert!(files(&api, &pod, &Volume::default(), "").await.is_none());
    }

    #[test]
    fn atomic_writes_swap_data_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("vol");
        let one = Files::from([
            ("a".into(), file("1", 0o644)),
            ("conf/b".into(), file("2", 0o600)),
        ]);
        assert!(write_atomic(&v, &one).unwrap());
        assert!(
            !write_atomic(&v, &one).unwrap(),
            "unchanged: nothing written"
        );
        assert_eq!(std::fs::read_to_string(v.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(v.join("conf/b")).unwrap(), "2");
        let mode = std::fs::metadata(v.join("conf/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::symlink_metadata(v.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let two = Files::from([("a".into(), file("updated", 0o644))]);
        assert!(write_atomic(&v, &two).unwrap());
        assert_eq!(std::fs::read_to_string(v.join("a")).unwrap(), "updated");
        assert!(
            !v.join("conf").exists(),
            "a name no longer projected is gone"
        );
        let stamps: Vec<_> = std::fs::read_dir(&v)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("..") && n != "..data")
            .collect();
        assert_eq!(stamps.len(), 1, "the old generation is removed: {stamps:?}");
    }
}
