//! Pure: translates a JSON Schema object into the Avro record schema it describes, so a
//! JSON row schema maps to Arrow exactly as the Avro one would (the table in `json`).
//!
//! Properties keep the order they are written in (the schema text is read with its own
//! small ordered reader: `serde_json::Map` without `preserve_order` sorts keys). What is
//! read: `type` (one type, or one type and `"null"`), `properties`, `required`, `items`,
//! `additionalProperties` (a schema: a map), `format` (`date-time`, `date`, `time`, `uuid`,
//! `int32`, `int64`, `float`, `double`, and `decimal` with `precision`/`scale`, our
//! extension), `contentEncoding: base64` (bytes) and `title` (the record's name).
//! Composition and references (`$ref`, `oneOf`, `anyOf`, `allOf`, `not`, `if`) are refused
//! with their JSON pointer.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use crate::SchemaError;

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone)]
pub(crate) enum Ordered {
    Null,
    Bool,
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Ordered::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Ordered::String(s)) => Some(s),
            _ => None,
        }
    }

    fn u64(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Ordered::Number(n)) => n.as_u64(),
            _ => None,
        }
    }

    /// Whether this is an object with `key` (the marks of a JSON Schema object).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Ordered, E> {
        Ok(Ordered::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ordered, E> {
        Ok(Ordered::Bool)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ordered, E> {
        Ok(Ordered::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ordered, E> {
        Ok(Ordered::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ordered, E> {
        serde_json::Number::from_f64(v)
            .map(Ordered::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ordered, E> {
        Ok(Ordered::String(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Ordered::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
            out.push((k, v));
        }
        Ok(Ordered::Object(out))
    }
}

/// The Avro record schema a JSON Schema object describes.
pub(crate) fn to_avro(schema: &Ordered) -> Result<Value, SchemaError> {
    let mut t = Translator { records: 0 };
    match t.ty(schema, "#", "Row")? {
        (avro, false) if avro.get("type") == Some(&json!("record")) => Ok(avro),
        _ => Err(refuse(
            "#",
            "the row schema must be an object with properties (not nullable)",
        )),
    }
}

fn refuse(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Json {
        path: path.to_string(),
        reason: reason.into(),
    }
}

const UNSUPPORTED: [&str; 8] = [
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "if",
    "patternProperties",
    "dependentSchemas",
];

struct Translator {
    records: usize,
}

impl Translator {
    /// The Avro type of one schema (without its null branch) and whether it allows null.
    fn ty(&mut self, s: &Ordered, path: &str, name: &str) -> Result<(Value, bool), SchemaError> {
        if !matches!(s, Ordered::Object(_)) {
            return Err(refuse(path, "a schema must be an object"));
        }
        if let Some(k) = UNSUPPORTED.iter().find(|k| s.has(k)) {
            return Err(refuse(&format!("{path}/{k}"), "is not supported"));
        }
        let (ty, nullable) = match s.get("type") {
            Some(Ordered::String(t)) => (t.as_str(), false),
            Some(Ordered::Array(types)) => {
                let mut nullable = false;
                let mut others = Vec::new();
                for t in types {
                    match t {
                        Ordered::String(n) if n == "null" => nullable = true,
                        Ordered::String(n) => others.push(n.as_str()),
                        _ => return Err(refuse(&format!("{path}/type"), "must list type names")),
                    }
                }
                match others.as_slice() {
                    [one] => (*one, nullable),
                    [] => ("null", true),
                    _ => {
                        return Err(refuse(
                            &format!("{path}/type"),
                            "one type (and \"null\") only: a column has one type",
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(refuse(
                    &format!("{path}/type"),
                    "must be a string or a list",
                ));
            }
            None if s.has("properties") || s.has("additionalProperties") => ("object", false),
            None if s.has("items") => ("array", false),
            None => return Err(refuse(path, "needs a type")),
        };
        let avro = match ty {
            "null" => json!("null"),
            "boolean" => json!("boolean"),
            "integer" => match s.str("format") {
                Some("int32") => json!("int"),
                _ => json!("long"),
            },
            "number" => match s.str("format") {
                Some("float") => json!("float"),
                Some("decimal") => decimal(s, path)?,
                _ => json!("double"),
            },
            "string" => string(s, path)?,
            "array" => {
                let items = s
                    .get("items")
                    .ok_or_else(|| refuse(path, "an array needs items"))?;
                let item = self.nullable(items, &format!("{path}/items"), name)?;
                json!({"type": "array", "items": item})
            }
            "object" => self.object(s, path, name)?,
            other => {
                return Err(refuse(
                    &format!("{path}/type"),
                    format!("unknown type {other:?}"),
                ));
            }
        };
        Ok((avro, nullable || ty == "null"))
    }

    fn nullable(&mut self, s: &Ordered, path: &str, name: &str) -> Result<Value, SchemaError> {
        Ok(match self.ty(s, path, name)? {
            (t, true) if t == json!("null") => t,
            (t, true) => json!(["null", t]),
            (t, false) => t,
        })
    }

    fn object(&mut self, s: &Ordered, path: &str, name: &str) -> Result<Value, SchemaError> {
        let Some(props) = s.get("properties") else {
            return match s.get("additionalProperties") {
                Some(v @ Ordered::Object(_)) => {
                    let value = self.nullable(v, &format!("{path}/additionalProperties"), name)?;
                    Ok(json!({"type": "map", "values": value}))
                }
                _ => Err(refuse(
                    path,
                    "an object needs properties, or additionalProperties with a schema (a map)",
                )),
            };
        };
        let Ordered::Object(props) = props else {
            return Err(refuse(&format!("{path}/properties"), "must be an object"));
        };
        let required: Vec<&str> = match s.get("required") {
            Some(Ordered::Array(r)) => r
                .iter()
                .filter_map(|v| match v {
                    Ordered::String(n) => Some(n.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut fields = Vec::with_capacity(props.len());
        for (key, sub) in props {
            let p = format!("{path}/properties/{key}");
            if !column_name(key) {
                return Err(refuse(
                    &p,
                    "a property name must be a column name: letters, digits and _, not starting with a digit",
                ));
            }
            let (t, nullable) = self.ty(sub, &p, key)?;
            let field = if nullable || !required.contains(&key.as_str()) {
                let t = if t == json!("null") {
                    t
                } else {
                    json!(["null", t])
                };
                json!({"name": key, "type": t, "default": null})
            } else {
                json!({"name": key, "type": t})
            };
            fields.push(field);
        }
        self.records += 1;
        let base = s.str("title").unwrap_or(name);
        let record: String = base
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let record = match record.chars().next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => record,
            _ => format!("_{record}"),
        };
        // every record type needs a name of its own
        let record = format!("{record}_{}", self.records);
        Ok(json!({"type": "record", "name": record, "fields": fields}))
    }
}

fn column_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn string(s: &Ordered, path: &str) -> Result<Value, SchemaError> {
    if s.str("contentEncoding") == Some("base64") {
        return Ok(json!("bytes"));
    }
    Ok(match s.str("format") {
        Some("date-time") => json!({"type": "long", "logicalType": "timestamp-micros"}),
        Some("date") => json!({"type": "int", "logicalType": "date"}),
        Some("time") => json!({"type": "long", "logicalType": "time-micros"}),
        Some("uuid") => json!({"type": "string", "logicalType": "uuid"}),
        Some("decimal") => decimal(s, path)?,
        _ => json!("string"),
    })
}

fn decimal(s: &Ordered, path: &str) -> Result<Value, SchemaError> {
    let precision = s
        .u64("precision")
        .filter(|p| (1..=76).contains(p))
        .ok_or_else(|| refuse(path, "format decimal needs precision (1 to 76)"))?;
    let scale = s.u64("scale").unwrap_or(0);
    if scale > precision {
        return Err(refuse(path, "scale must not exceed precision"));
    }
    Ok(json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(text: &str) -> Result<Value, SchemaError> {
        to_avro(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn properties_keep_their_order_and_optional_ones_are_nullable() {
        let a = avro(
            r#"{"type":"object","title":"Order","required":["z","a"],"properties":{
                "z":{"type":"integer"},"a":{"type":"string","format":"date-time"},
                "m":{"type":["number","null"]},"tags":{"type":"array","items":{"type":"string"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            json!({"type":"record","name":"Order_1","fields":[
                {"name":"z","type":"long"},
                {"name":"a","type":{"type":"long","logicalType":"timestamp-micros"}},
                {"name":"m","type":["null","double"],"default":null},
                {"name":"tags","type":["null",{"type":"array","items":"string"}],"default":null}]})
        );
    }

    #[test]
    fn what_cannot_be_a_column_is_refused_with_its_pointer() {
        let cases = [
            (
                r#"{"type":"object","properties":{"a":{"oneOf":[{"type":"string"}]}}}"#,
                "#/properties/a/oneOf",
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":["string","integer"]}}}"#,
                "#/properties/a/type",
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":"number","format":"decimal"}}}"#,
                "#/properties/a",
            ),
            (r#"{"type":"string"}"#, "#"),
            (r#"{"type":"object"}"#, "#"),
        ];
        for (schema, at) in cases {
            match avro(schema) {
                Err(SchemaError::Json { path, .. }) => assert_eq!(path, at, "{schema}"),
                other => panic!("{schema}: {other:?}"),
            }
        }
    }
}
