//! I/O: resolves secret references to their values, from the worker's environment.
//!
//! In a cluster the operator wires each `SecretKeyRef` into the worker as a `secretKeyRef`
//! environment variable named by [`SecretKeyRef::env_var`]; locally `spillway run` reads the
//! same variables. Values never appear in logs, errors, progress or metrics.

use std::fmt;

use spillway_api::SecretKeyRef;

/// A secret value; its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret reference that cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[error("secret {name}/{key} is not available: set the environment variable {env_var}")]
pub struct SecretError {
    /// Secret name.
    pub name: String,
    /// Key in the secret.
    pub key: String,
    /// The variable that should carry it.
    pub env_var: String,
}

/// Where secret values come from.
pub trait SecretSource: Send + Sync {
    /// The value of one environment-style variable, if set.
    fn lookup(&self, env_var: &str) -> Option<String>;

    /// Resolves a reference.
    fn resolve(&self, r: &SecretKeyRef) -> Result<Secret, SecretError> {
        let env_var = r.env_var();
        self.lookup(&env_var)
            .map(Secret)
            .ok_or_else(|| SecretError {
                name: r.name.clone(),
                key: r.key.clone(),
                env_var,
            })
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn lookup(&self, env_var: &str) -> Option<String> {
        std::env::var(env_var).ok()
    }
}

/// A fixed map, for tests and embedded runs.
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(pub std::collections::BTreeMap<String, String>);

impl SecretSource for MapSecrets {
    fn lookup(&self, env_var: &str) -> Option<String> {
        self.0.get(env_var).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_hides() {
        let r = SecretKeyRef {
            name: "kafka".into(),
            key: "password".into(),
        };
        let src = MapSecrets(
            [(
                "SPILLWAY_SECRET_KAFKA_PASSWORD".to_string(),
                "hunter2".to_string(),
            )]
            .into(),
        );
        let s = src.resolve(&r).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let err = MapSecrets::default().resolve(&r).unwrap_err().to_string();
        assert!(err.contains("SPILLWAY_SECRET_KAFKA_PASSWORD") && !err.contains("hunter2"));
    }
}
