//! Pure: parses Avro schema JSON into an arena of types, named references resolved to ids.
//!
//! Our own small parser rather than `apache_avro::Schema`: apache-avro 0.21 folds a
//! `fixed(16)` uuid into `Schema::Uuid`, which loses the wire encoding (16 raw bytes vs a
//! length-prefixed string), and we need the raw JSON defaults and aliases anyway. Invalid
//! logical types fall back to the underlying type, as the Avro specification says.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Index of a type in [`AvroSchema::nodes`].
pub type TypeId = usize;

/// A parsed Avro schema: an arena of nodes; named types appear once and are shared.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: TypeId,
}

/// One Avro type: its physical (wire) kind plus an optional logical annotation.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub logical: Option<Logical>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record {
        named: Named,
        fields: Vec<Field>,
    },
    Enum {
        named: Named,
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        named: Named,
        size: usize,
    },
    Array(TypeId),
    Map(TypeId),
    Union(Vec<TypeId>),
}

/// Logical types we map to dedicated Arrow types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logical {
    Decimal { precision: usize, scale: usize },
    Uuid,
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
    Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub fullname: String,
    pub aliases: Vec<String>,
}

impl Named {
    /// The unqualified name.
    pub fn name(&self) -> &str {
        self.fullname.rsplit('.').next().unwrap_or(&self.fullname)
    }

    /// Whether `other` (a full name) names this type, directly or through an alias.
    pub fn answers_to(&self, other: &Named) -> bool {
        self.fullname == other.fullname
            || self.name() == other.name()
            || self
                .aliases
                .iter()
                .any(|a| a == &other.fullname || short(a) == other.name())
    }
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub ty: TypeId,
    pub default: Option<Value>,
}

/// Why a schema text is not a valid Avro schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum AvroSchemaError {
    #[error("schema is not valid json: {0}")]
    Json(String),
    #[error("invalid avro schema at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("unknown avro type {name:?} at {path}")]
    UnknownType { path: String, name: String },
    #[error("avro type {name:?} is defined twice")]
    DuplicateName { name: String },
}

impl AvroSchema {
    /// Parses an Avro schema from its JSON text.
    pub fn parse(json: &str) -> Result<Self, AvroSchemaError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| AvroSchemaError::Json(e.to_string()))?;
        Self::from_json(&value)
    }

    /// Parses an Avro schema from a JSON value.
    pub fn from_json(value: &Value) -> Result<Self, AvroSchemaError> {
        let mut parser = Parser {
            nodes: Vec::new(),
            names: HashMap::new(),
        };
        let root = parser.parse(value, None, "$")?;
        Ok(Self {
            nodes: parser.nodes,
            root,
        })
    }

    pub(crate) fn node(&self, id: TypeId) -> Option<&Node> {
        self.nodes.get(id)
    }
}

struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, TypeId>,
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

fn invalid(path: &str, reason: impl Into<String>) -> AvroSchemaError {
    AvroSchemaError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

impl Parser {
    fn push(&mut self, kind: Kind, logical: Option<Logical>) -> TypeId {
        self.nodes.push(Node { kind, logical });
        self.nodes.len() - 1
    }

    fn parse(
        &mut self,
        v: &Value,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        match v {
            Value::String(name) => self.named_or_primitive(name, ns, path),
            Value::Array(branches) => {
                let mut ids = Vec::with_capacity(branches.len());
                let mut seen: Vec<String> = Vec::new();
                for (i, b) in branches.iter().enumerate() {
                    let id = self.parse(b, ns, &format!("{path}[{i}]"))?;
                    let key = self.union_key(id);
                    if matches!(self.nodes.get(id).map(|n| &n.kind), Some(Kind::Union(_))) {
                        return Err(invalid(path, "unions may not immediately contain unions"));
                    }
                    if seen.contains(&key) {
                        return Err(invalid(
                            path,
                            format!("union has two branches of type {key}"),
                        ));
                    }
                    seen.push(key);
                    ids.push(id);
                }
                Ok(self.push(Kind::Union(ids), None))
            }
            Value::Object(obj) => self.parse_object(obj, ns, path),
            _ => Err(invalid(path, "a schema is a string, an array or an object")),
        }
    }

    /// The identity of a union branch: the full name of named types, else the kind.
    fn union_key(&self, id: TypeId) -> String {
        match self.nodes.get(id).map(|n| &n.kind) {
            Some(
                Kind::Record { named, .. } | Kind::Enum { named, .. } | Kind::Fixed { named, .. },
            ) => named.fullname.clone(),
            Some(k) => kind_name(k).to_string(),
            None => String::new(),
        }
    }

    fn named_or_primitive(
        &mut self,
        name: &str,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        let kind = match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "int" => Kind::Int,
            "long" => Kind::Long,
            "float" => Kind::Float,
            "double" => Kind::Double,
            "bytes" => Kind::Bytes,
            "string" => Kind::String,
            _ => {
                let full = fullname(name, ns);
                return self
                    .names
                    .get(&full)
                    .or_else(|| self.names.get(name))
                    .copied()
                    .ok_or_else(|| AvroSchemaError::UnknownType {
                        path: path.to_string(),
                        name: name.to_string(),
                    });
            }
        };
        Ok(self.push(kind, None))
    }

    fn parse_object(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        let ty = obj
            .get("type")
            .ok_or_else(|| invalid(path, "object schema has no \"type\""))?;
        let id = match ty.as_str() {
            Some("record" | "error") => return self.parse_record(obj, ns, path),
            Some("enum") => return self.parse_enum(obj, ns, path),
            Some("fixed") => return self.parse_fixed(obj, ns, path),
            Some("array") => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| invalid(path, "array has no \"items\""))?;
                let items = self.parse(items, ns, &format!("{path}.items"))?;
                return Ok(self.push(Kind::Array(items), None));
            }
            Some("map") => {
                let values = obj
                    .get("values")
                    .ok_or_else(|| invalid(path, "map has no \"values\""))?;
                let values = self.parse(values, ns, &format!("{path}.values"))?;
                return Ok(self.push(Kind::Map(values), None));
            }
            // a primitive or a reference, possibly annotated with a logical type
            _ => self.parse(ty, ns, path)?,
        };
        match logical_of(obj, self.nodes.get(id).map(|n| &n.kind)) {
            Some(logical) => {
                let kind = self
                    .nodes
                    .get(id)
                    .map(|n| n.kind.clone())
                    .unwrap_or(Kind::Null);
                Ok(self.push(kind, Some(logical)))
            }
            None => Ok(id),
        }
    }

    /// Registers a named type's full name (and aliases) before its body is parsed, so
    /// recursive references resolve to the same id.
    fn named(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        path: &str,
    ) -> Result<(Named, Option<String>), AvroSchemaError> {
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(path, "named type has no \"name\""))?;
        let own_ns = obj.get("namespace").and_then(Value::as_str).or(ns);
        let full = fullname(name, own_ns);
        if !valid_fullname(&full) {
            return Err(invalid(path, format!("invalid name {full:?}")));
        }
        if PRIMITIVES.contains(&full.as_str()) || self.names.contains_key(&full) {
            return Err(AvroSchemaError::DuplicateName { name: full });
        }
        let type_ns = full.rsplit_once('.').map(|(n, _)| n.to_string());
        let aliases = obj
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| fullname(s, type_ns.as_deref()))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            Named {
                fullname: full,
                aliases,
            },
            type_ns,
        ))
    }

    fn register(&mut self, named: &Named, id: TypeId) {
        self.names.insert(named.fullname.clone(), id);
    }

    fn parse_record(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        let (named, type_ns) = self.named(obj, ns, path)?;
        let path = format!("{path}<{}>", named.fullname);
        let id = self.push(
            Kind::Record {
                named: named.clone(),
                fields: Vec::new(),
            },
            None,
        );
        self.register(&named, id);
        let raw = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(&path, "record has no \"fields\" array"))?;
        let mut fields: Vec<Field> = Vec::with_capacity(raw.len());
        for f in raw {
            let f = f
                .as_object()
                .ok_or_else(|| invalid(&path, "a field is not an object"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&path, "a field has no \"name\""))?;
            if !valid_name(name) || fields.iter().any(|x| x.name == name) {
                return Err(invalid(
                    &path,
                    format!("invalid or duplicate field name {name:?}"),
                ));
            }
            let fpath = format!("{path}.{name}");
            let ft = f
                .get("type")
                .ok_or_else(|| invalid(&fpath, "field has no \"type\""))?;
            let ty = self.parse(ft, type_ns.as_deref(), &fpath)?;
            let aliases = f
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            fields.push(Field {
                name: name.to_string(),
                aliases,
                ty,
                default: f.get("default").cloned(),
            });
        }
        if let Some(Node {
            kind: Kind::Record { fields: slot, .. },
            ..
        }) = self.nodes.get_mut(id)
        {
            *slot = fields;
        }
        Ok(id)
    }

    fn parse_enum(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        let (named, _) = self.named(obj, ns, path)?;
        let raw = obj
            .get("symbols")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(path, "enum has no \"symbols\" array"))?;
        let mut symbols: Vec<String> = Vec::with_capacity(raw.len());
        for s in raw {
            let s = s
                .as_str()
                .ok_or_else(|| invalid(path, "an enum symbol is not a string"))?;
            if !valid_name(s) || symbols.iter().any(|x| x == s) {
                return Err(invalid(
                    path,
                    format!("invalid or duplicate enum symbol {s:?}"),
                ));
            }
            symbols.push(s.to_string());
        }
        let default = obj
            .get("default")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(d) = &default
            && !symbols.contains(d)
        {
            return Err(invalid(path, format!("enum default {d:?} is not a symbol")));
        }
        let id = self.push(
            Kind::Enum {
                named: named.clone(),
                symbols,
                default,
            },
            None,
        );
        self.register(&named, id);
        Ok(id)
    }

    fn parse_fixed(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        path: &str,
    ) -> Result<TypeId, AvroSchemaError> {
        let (named, _) = self.named(obj, ns, path)?;
        let size = obj
            .get("size")
            .and_then(Value::as_u64)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|s| i32::try_from(*s).is_ok())
            .ok_or_else(|| invalid(path, "fixed has no valid \"size\""))?;
        let kind = Kind::Fixed {
            named: named.clone(),
            size,
        };
        let logical = logical_of(obj, Some(&kind));
        let id = self.push(kind, logical);
        self.register(&named, id);
        Ok(id)
    }
}

/// The logical type annotated on `obj`, if it is valid for the underlying `kind`.
fn logical_of(obj: &Map<String, Value>, kind: Option<&Kind>) -> Option<Logical> {
    let name = obj.get("logicalType")?.as_str()?;
    let kind = kind?;
    let l = match (name, kind) {
        ("decimal", Kind::Bytes | Kind::Fixed { .. }) => {
            let precision = usize::try_from(obj.get("precision")?.as_u64()?).ok()?;
            let scale = match obj.get("scale") {
                Some(s) => usize::try_from(s.as_u64()?).ok()?,
                None => 0,
            };
            let max = match kind {
                Kind::Fixed { size, .. } => max_fixed_precision(*size),
                _ => 76,
            };
            if precision == 0 || scale > precision || precision > max.min(76) {
                return None;
            }
            Logical::Decimal { precision, scale }
        }
        ("uuid", Kind::String) | ("uuid", Kind::Fixed { size: 16, .. }) => Logical::Uuid,
        ("date", Kind::Int) => Logical::Date,
        ("time-millis", Kind::Int) => Logical::TimeMillis,
        ("time-micros", Kind::Long) => Logical::TimeMicros,
        ("timestamp-millis", Kind::Long) => Logical::TimestampMillis,
        ("timestamp-micros", Kind::Long) => Logical::TimestampMicros,
        ("timestamp-nanos", Kind::Long) => Logical::TimestampNanos,
        ("local-timestamp-millis", Kind::Long) => Logical::LocalTimestampMillis,
        ("local-timestamp-micros", Kind::Long) => Logical::LocalTimestampMicros,
        ("local-timestamp-nanos", Kind::Long) => Logical::LocalTimestampNanos,
        ("duration", Kind::Fixed { size: 12, .. }) => Logical::Duration,
        _ => return None,
    };
    Some(l)
}

/// The largest decimal precision a two's complement integer of `size` bytes holds.
fn max_fixed_precision(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    // floor(log10(2^(8 * size - 1) - 1))
    let bits = (8 * size - 1) as f64;
    (bits * std::f64::consts::LOG10_2).floor() as usize
}

fn fullname(name: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.trim_start_matches('.').to_string(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_fullname(name: &str) -> bool {
    name.split('.').all(valid_name)
}

pub(crate) fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Boolean => "boolean",
        Kind::Int => "int",
        Kind::Long => "long",
        Kind::Float => "float",
        Kind::Double => "double",
        Kind::Bytes => "bytes",
        Kind::String => "string",
        Kind::Record { .. } => "record",
        Kind::Enum { .. } => "enum",
        Kind::Fixed { .. } => "fixed",
        Kind::Array(_) => "array",
        Kind::Map(_) => "map",
        Kind::Union(_) => "union",
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AvroSchema {
        match AvroSchema::parse(s) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn recursive_record_refers_to_itself() {
        let s = parse(
            r#"{"type":"record","name":"Node","namespace":"a.b","fields":[
                {"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#,
        );
        let Some(Node {
            kind: Kind::Record { named, fields },
            ..
        }) = s.node(s.root)
        else {
            panic!("not a record")
        };
        assert_eq!(named.fullname, "a.b.Node");
        let Some(Node {
            kind: Kind::Union(b),
            ..
        }) = s.node(fields[1].ty)
        else {
            panic!("not a union")
        };
        assert_eq!(b[1], s.root);
    }

    #[test]
    fn logical_types_and_invalid_fallbacks() {
        let s = parse(r#"{"type":"fixed","name":"u","size":16,"logicalType":"uuid"}"#);
        assert_eq!(s.node(s.root).and_then(|n| n.logical), Some(Logical::Uuid));
        let s = parse(r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":5}"#);
        assert!(
            s.node(s.root)
                .is_some_and(|n| n.logical.is_none() && matches!(n.kind, Kind::Bytes))
        );
        let s =
            parse(r#"{"type":"fixed","name":"d","size":4,"logicalType":"decimal","precision":10}"#);
        assert!(
            s.node(s.root).is_some_and(|n| n.logical.is_none()),
            "4 bytes hold 9 digits at most"
        );
        let s = parse(r#"{"type":"long","logicalType":"timestamp-micros"}"#);
        assert_eq!(
            s.node(s.root).and_then(|n| n.logical),
            Some(Logical::TimestampMicros)
        );
    }

    #[test]
    fn invalid_schemas_are_typed_errors() {
        for (text, name) in [
            ("{", "json"),
            (
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#,
                "unknown_type",
            ),
            (r#"["int","int"]"#, "invalid"),
            (r#"[["int"]]"#, "invalid"),
            (
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"enum","name":"R","symbols":["A"]}}]}"#,
                "duplicate_name",
            ),
            (
                r#"{"type":"enum","name":"E","symbols":["A","A"]}"#,
                "invalid",
            ),
        ] {
            let err = AvroSchema::parse(text).err();
            assert_eq!(
                err.as_ref().map(<&str>::from),
                Some(name),
                "{text}: {err:?}"
            );
        }
    }
}
