//! Object-store settings: options (delta-rs / object_store keys) from `spec.storage` and
//! resolved secrets (pure), URI normalisation (local paths become `file://` URLs), and the
//! one constructor of every object store the worker opens besides the Delta table itself
//! (checkpoint, Parquet dataset), so all of them take credentials the same way as Delta.
//!
//! Credentials: from `credentialsSecretRef` when given; otherwise the standard AWS chain —
//! environment (`AWS_ACCESS_KEY_ID`, …), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` +
//! `AWS_ROLE_ARN`, i.e. IRSA), container credentials (EKS Pod Identity, ECS), profile and
//! instance metadata — through delta-rs's S3 factory for every store alike.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStore;

use spillway_api::StorageSpec;
use url::Url;

use crate::secrets::{SecretError, SecretSource};

/// Errors of storage settings.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A credential reference could not be resolved.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The URI is not usable.
    #[error("invalid uri {uri}: {message}")]
    Uri {
        /// The URI.
        uri: String,
        /// Why.
        message: String,
    },
}

/// The object_store key of the conditional-put mode (`etag` unless `storage.options` says
/// otherwise).
pub const CONDITIONAL_PUT: &str = "aws_conditional_put";

/// The options object_store and delta-rs understand, from the spec.
pub fn options(
    spec: Option<&StorageSpec>,
    secrets: &dyn SecretSource,
) -> Result<HashMap<String, String>, StorageError> {
    // Delta commits on S3 are put-if-absent (`If-None-Match`), never an unsafe rename.
    let mut o = HashMap::from([(CONDITIONAL_PUT.to_string(), "etag".to_string())]);
    let Some(s) = spec else { return Ok(o) };
    if let Some(opts) = &s.options {
        o.extend(opts.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(r) = &s.region {
        o.insert("aws_region".into(), r.clone());
    }
    if let Some(e) = &s.endpoint {
        o.insert("aws_endpoint".into(), e.clone());
    }
    if s.path_style {
        o.insert("aws_virtual_hosted_style_request".into(), "false".into());
    }
    if s.allow_http {
        o.insert("aws_allow_http".into(), "true".into());
    }
    if let Some(c) = &s.credentials_secret_ref {
        o.insert(
            "aws_access_key_id".into(),
            secrets.resolve(&c.access_key_id)?.expose().into(),
        );
        o.insert(
            "aws_secret_access_key".into(),
            secrets.resolve(&c.secret_access_key)?.expose().into(),
        );
        if let Some(t) = &c.session_token {
            o.insert(
                "aws_session_token".into(),
                secrets.resolve(t)?.expose().into(),
            );
        }
    }
    Ok(o)
}

/// The object store of `url` and the path of `url` inside it: `s3://`/`s3a://` through
/// delta-rs's S3 factory (the credential chain of the Delta sink), other schemes (`file://`,
/// `memory://`) through object_store.
pub fn object_store(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), object_store::Error> {
    deltalake::aws::register_handlers(None);
    let generic = |e: deltalake::DeltaTableError| match e {
        deltalake::DeltaTableError::ObjectStore { source } => source,
        other => object_store::Error::Generic {
            store: "object store",
            source: Box::new(other),
        },
    };
    let scheme =
        Url::parse(&format!("{}://", url.scheme())).map_err(|e| object_store::Error::Generic {
            store: "object store",
            source: Box::new(e),
        })?;
    match deltalake::logstore::object_store_factories().get(&scheme) {
        Some(factory) => {
            let config = deltalake::logstore::StorageConfig::parse_options(options.iter())
                .map_err(generic)?;
            factory
                .value()
                .parse_url_opts(url, &config)
                .map_err(generic)
        }
        None => object_store::parse_url_opts(url, options.iter())
            .map(|(store, path)| (Arc::from(store), path)),
    }
}

/// Pure: the object `rel` (slash-separated) under `root`, its segments used as they are.
/// `object_store`'s `Path::from` would percent-encode every `%` and non-ASCII byte of them
/// once more: a Hive partition directory `user=a%2Fb` would be stored as `user=a%252Fb` and
/// read back as `a%2Fb`. Segments here never hold `/` or control characters (partition
/// values are escaped before), so parsing cannot fail; if it did, `Path::from` is the answer.
pub fn join(root: &object_store::path::Path, rel: &str) -> object_store::path::Path {
    let root = root.as_ref().trim_end_matches('/');
    let raw = if root.is_empty() {
        rel.trim_start_matches('/').to_string()
    } else {
        format!("{root}/{}", rel.trim_start_matches('/'))
    };
    object_store::path::Path::parse(&raw).unwrap_or_else(|_| object_store::path::Path::from(raw))
}

/// A URL for a spec URI: `s3://…` and `file://…` as they are, a local path (relative to
/// `base`) as an absolute `file://` URL to a directory.
pub fn url(uri: &str, base: &std::path::Path) -> Result<Url, StorageError> {
    let err = |m: String| StorageError::Uri {
        uri: uri.to_string(),
        message: m,
    };
    if uri.contains("://") {
        let mut u = Url::parse(uri).map_err(|e| err(e.to_string()))?;
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        return Ok(u);
    }
    let path = std::path::Path::new(uri);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    std::fs::create_dir_all(&abs).map_err(|e| err(e.to_string()))?;
    let abs = abs.canonicalize().map_err(|e| err(e.to_string()))?;
    Url::from_directory_path(&abs).map_err(|()| err("not an absolute path".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MapSecrets;

    #[test]
    fn join_keeps_escaped_segments_as_they_are() {
        use object_store::path::Path;
        let root = Path::from("lake/t");
        let p = join(&root, "user=a%2Fb%25/é/part-1.parquet");
        assert_eq!(p.as_ref(), "lake/t/user=a%2Fb%25/é/part-1.parquet");
        assert_eq!(join(&Path::ROOT, "x/y.json").as_ref(), "x/y.json");
        // What it replaces: `Path::from` escapes `%` and non-ASCII bytes once more.
        assert_eq!(
            Path::from("lake/t/user=a%2Fb").as_ref(),
            "lake/t/user=a%252Fb"
        );
    }

    #[test]
    fn options_from_spec() {
        let spec: StorageSpec = serde_yaml::from_str(
            "{region: eu-west-1, endpoint: 'http://127.0.0.1:9000', pathStyle: true, allowHttp: true, \
             credentialsSecretRef: {accessKeyId: {name: s, key: id}, secretAccessKey: {name: s, key: key}}}",
        )
        .unwrap();
        let secrets = MapSecrets(
            [
                ("SPILLWAY_SECRET_S_ID".into(), "AK".into()),
                ("SPILLWAY_SECRET_S_KEY".into(), "SK".into()),
            ]
            .into(),
        );
        let o = options(Some(&spec), &secrets).unwrap();
        assert_eq!(o["aws_region"], "eu-west-1");
        assert_eq!(o["aws_endpoint"], "http://127.0.0.1:9000");
        assert_eq!(o["aws_allow_http"], "true");
        assert_eq!(o["aws_virtual_hosted_style_request"], "false");
        assert_eq!(o["aws_access_key_id"], "AK");
        assert_eq!(o["aws_secret_access_key"], "SK");
    }

    #[test]
    fn local_paths_become_file_urls() {
        let dir = std::env::temp_dir().join(format!("spillway-storage-{}", std::process::id()));
        let u = url("t/x", &dir).unwrap();
        assert_eq!(u.scheme(), "file");
        assert!(u.path().ends_with("/t/x/"));
        assert_eq!(url("s3://b/t", &dir).unwrap().as_str(), "s3://b/t/");
    }
}
