//! Pure: encodes a reader field's JSON default as an Avro binary datum of the reader type.
//!
//! The plan stores a missing field's default as these bytes and the decoder appends them
//! with the reader's own (identity) plan, so defaults share the one append path.

use serde_json::Value;

use super::avro::{AvroSchema, Kind, TypeId};

/// Nesting limit: a record whose field defaults refer back to the record must not recurse
/// forever.
const MAX_DEPTH: usize = 64;

/// Appends the Avro binary encoding of `v`, read as type `id` of `schema`, to `out`.
pub(crate) fn encode_default(
    schema: &AvroSchema,
    id: TypeId,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    encode(schema, id, v, out, 0)
}

/// Appends `n` as a zig-zag varint.
pub fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn encode(
    s: &AvroSchema,
    id: TypeId,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("default nests too deeply".to_string());
    }
    let node = s.node(id).ok_or("dangling type reference")?;
    let mismatch = || format!("{v} is not a valid {}", super::avro::kind_name(&node.kind));
    match &node.kind {
        Kind::Null => v.is_null().then_some(()).ok_or_else(mismatch),
        Kind::Boolean => {
            out.push(u8::from(v.as_bool().ok_or_else(mismatch)?));
            Ok(())
        }
        Kind::Int => {
            let n = v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(mismatch)?;
            write_long(out, i64::from(n));
            Ok(())
        }
        Kind::Long => {
            write_long(out, v.as_i64().ok_or_else(mismatch)?);
            Ok(())
        }
        Kind::Float => {
            out.extend_from_slice(&(float(v).ok_or_else(mismatch)? as f32).to_le_bytes());
            Ok(())
        }
        Kind::Double => {
            out.extend_from_slice(&float(v).ok_or_else(mismatch)?.to_le_bytes());
            Ok(())
        }
        Kind::Bytes => {
            let b = byte_string(v).ok_or_else(mismatch)?;
            write_long(out, b.len() as i64);
            out.extend_from_slice(&b);
            Ok(())
        }
        Kind::String => {
            let t = v.as_str().ok_or_else(mismatch)?;
            write_long(out, t.len() as i64);
            out.extend_from_slice(t.as_bytes());
            Ok(())
        }
        Kind::Fixed { size, .. } => {
            let b = byte_string(v)
                .filter(|b| b.len() == *size)
                .ok_or_else(mismatch)?;
            out.extend_from_slice(&b);
            Ok(())
        }
        Kind::Enum { symbols, .. } => {
            let t = v.as_str().ok_or_else(mismatch)?;
            let i = symbols.iter().position(|x| x == t).ok_or_else(mismatch)?;
            write_long(out, i as i64);
            Ok(())
        }
        Kind::Array(items) => {
            let a = v.as_array().ok_or_else(mismatch)?;
            if !a.is_empty() {
                write_long(out, a.len() as i64);
                for x in a {
                    encode(s, *items, x, out, depth + 1)?;
                }
            }
            out.push(0);
            Ok(())
        }
        Kind::Map(values) => {
            let m = v.as_object().ok_or_else(mismatch)?;
            if !m.is_empty() {
                write_long(out, m.len() as i64);
                for (k, x) in m {
                    write_long(out, k.len() as i64);
                    out.extend_from_slice(k.as_bytes());
                    encode(s, *values, x, out, depth + 1)?;
                }
            }
            out.push(0);
            Ok(())
        }
        Kind::Record { fields, .. } => {
            let m = v.as_object().ok_or_else(mismatch)?;
            for f in fields {
                let x = m
                    .get(&f.name)
                    .or(f.default.as_ref())
                    .ok_or_else(|| format!("no value for field {}", f.name))?;
                encode(s, f.ty, x, out, depth + 1)?;
            }
            Ok(())
        }
        Kind::Union(branches) => {
            // The specification ties a union default to the first branch; we also accept a
            // later branch that fits, as several writers emit such schemas.
            let mut scratch = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                scratch.clear();
                if encode(s, *b, v, &mut scratch, depth + 1).is_ok() {
                    write_long(out, i as i64);
                    out.extend_from_slice(&scratch);
                    return Ok(());
                }
            }
            Err(mismatch())
        }
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Avro writes byte defaults as JSON strings whose code points 0–255 are the bytes.
fn byte_string(v: &Value) -> Option<Vec<u8>> {
    v.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(schema: &str, v: Value) -> Result<Vec<u8>, String> {
        let s = AvroSchema::parse(schema).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        encode_default(&s, s.root, &v, &mut out)?;
        Ok(out)
    }

    #[test]
    fn encodes_defaults_of_each_kind() {
        assert_eq!(enc(r#""int""#, json!(-2)), Ok(vec![3]));
        assert_eq!(enc(r#""long""#, json!(64)), Ok(vec![0x80, 0x01]));
        assert_eq!(enc(r#""string""#, json!("ab")), Ok(vec![4, b'a', b'b']));
        assert_eq!(enc(r#""bytes""#, json!("\u{00ff}")), Ok(vec![2, 0xff]));
        assert_eq!(enc(r#"["null","int"]"#, json!(null)), Ok(vec![0]));
        assert_eq!(enc(r#"["null","int"]"#, json!(1)), Ok(vec![2, 2]));
        assert_eq!(
            enc(r#"{"type":"array","items":"int"}"#, json!([1])),
            Ok(vec![2, 2, 0])
        );
        assert_eq!(
            enc(
                r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
                json!("B")
            ),
            Ok(vec![2])
        );
        assert_eq!(
            enc(
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":5},{"name":"b","type":"boolean"}]}"#,
                json!({"b": true})
            ),
            Ok(vec![10, 1])
        );
        assert!(enc(r#""int""#, json!("x")).is_err());
        assert!(enc(r#"{"type":"fixed","name":"F","size":2}"#, json!("a")).is_err());
    }
}
