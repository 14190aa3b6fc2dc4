//! What the fuzz targets share: the schemas they decode with (every Avro type and logical
//! type, recursion, a writer/reader pair that needs resolution) and a generator of valid
//! Avro bodies for any of them, driven by the fuzzer's bytes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arbitrary::Unstructured;
use serde_json::Value;
use spillway_decode::{DecodePlan, write_long};

/// The test event of the project's benchmarks.
pub const HSU_TEST_EVENT: &str = spillway_decode::bench::HSU_TEST_EVENT;

/// Every primitive, complex and logical type the decoder maps.
pub const EVERY_TYPE: &str = r#"{"type":"record","name":"Every","fields":[
 {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
 {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"by","type":"bytes"},
 {"name":"s","type":"string"},{"name":"n","type":"null"},
 {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},
 {"name":"fx","type":{"type":"fixed","name":"Four","size":4}},
 {"name":"arr","type":{"type":"array","items":"long"}},
 {"name":"m","type":{"type":"map","values":"string"}},
 {"name":"opt","type":["null","string"]},
 {"name":"u","type":["int","string","null"]},
 {"name":"nested","type":{"type":"record","name":"Inner","fields":[
   {"name":"x","type":"int"},{"name":"tags","type":{"type":"array","items":"string"}}]}},
 {"name":"inners","type":{"type":"array","items":"Inner"}},
 {"name":"deep","type":{"type":"map","values":{"type":"array","items":["null","double"]}}},
 {"name":"date","type":{"type":"int","logicalType":"date"}},
 {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
 {"name":"tsm","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"tsn","type":{"type":"long","logicalType":"timestamp-nanos"}},
 {"name":"lts","type":{"type":"long","logicalType":"local-timestamp-micros"}},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
 {"name":"decf","type":{"type":"fixed","name":"D8","size":8,"logicalType":"decimal","precision":18,"scale":4}},
 {"name":"big","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":0}},
 {"name":"id","type":{"type":"string","logicalType":"uuid"}},
 {"name":"dur","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}}
]}"#;

/// A recursive type: a linked list. Arrow has no recursive type, so its reader keeps only
/// `v`: the decoder skips the list's tail, however deep (up to its nesting limit).
pub const LIST: &str = r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#;
/// The reader of [`LIST`].
pub const LIST_READER: &str =
    r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"}]}"#;

/// A writer and the reader it resolves to: promotions, a dropped field, a field added with
/// a default, enum symbols added.
pub const WRITER: &str = r#"{"type":"record","name":"R","fields":[
 {"name":"a","type":"int"},{"name":"b","type":"string"},{"name":"c","type":"float"},
 {"name":"gone","type":{"type":"array","items":"long"}},
 {"name":"k","type":{"type":"enum","name":"K","symbols":["X","Y"]}},
 {"name":"p","type":"long"}]}"#;
/// The reader of [`WRITER`].
pub const READER: &str = r#"{"type":"record","name":"R","fields":[
 {"name":"a","type":"long"},{"name":"b","type":"bytes"},{"name":"c","type":"double"},
 {"name":"k","type":{"type":"enum","name":"K","symbols":["X","Y","Z"]}},
 {"name":"p","type":"double"},
 {"name":"added","type":"string","default":"x"}]}"#;

/// The (writer, reader) pairs the targets decode with.
pub const PAIRS: [(&str, Option<&str>); 4] = [
    (HSU_TEST_EVENT, None),
    (EVERY_TYPE, None),
    (LIST, Some(LIST_READER)),
    (WRITER, Some(READER)),
];

/// Each pair of [`PAIRS`]: the writer schema as JSON and the compiled plan, built once.
pub fn corpus() -> &'static [(Value, Arc<DecodePlan>)] {
    static CORPUS: OnceLock<Vec<(Value, Arc<DecodePlan>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        PAIRS
            .iter()
            .map(|(w, r)| {
                let plan = DecodePlan::from_json(w, *r)
                    .unwrap_or_else(|e| panic!("a corpus schema does not compile: {e}"));
                let writer = serde_json::from_str(w).unwrap_or_else(|e| panic!("{e}"));
                (writer, Arc::new(plan))
            })
            .collect()
    })
}

/// Writes valid Avro bodies of a schema, every choice drawn from the fuzzer's bytes.
pub struct Generator<'a, 'b, 's> {
    u: &'b mut Unstructured<'a>,
    named: HashMap<&'s str, &'s Value>,
}

impl<'a, 'b, 's> Generator<'a, 'b, 's> {
    /// A generator drawing from `u`.
    pub fn new(u: &'b mut Unstructured<'a>) -> Self {
        Self {
            u,
            named: HashMap::new(),
        }
    }

    /// Appends one valid body of `schema` to `out`.
    pub fn body(&mut self, schema: &'s Value, out: &mut Vec<u8>) -> arbitrary::Result<()> {
        self.value(schema, out, 0)
    }

    fn value(
        &mut self,
        schema: &'s Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> arbitrary::Result<()> {
        match schema {
            Value::String(name) => self.named_or_primitive(name, out, depth),
            Value::Array(branches) => {
                // Deep down, take the null branch where there is one (ends recursion).
                let null = branches.iter().position(|b| b == "null");
                let index = match null {
                    Some(n) if depth > 6 => n,
                    _ => self.u.choose_index(branches.len())?,
                };
                write_long(out, index as i64);
                self.value(&branches[index], out, depth + 1)
            }
            Value::Object(o) => {
                let ty = o.get("type").unwrap_or(&Value::Null);
                if let Some(logical) = o.get("logicalType").and_then(Value::as_str)
                    && self.logical(logical, o, out)?
                {
                    return Ok(());
                }
                match ty.as_str() {
                    Some("record") => {
                        self.remember(o, schema);
                        for f in o
                            .get("fields")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            self.value(f.get("type").unwrap_or(&Value::Null), out, depth + 1)?;
                        }
                        Ok(())
                    }
                    Some("enum") => {
                        self.remember(o, schema);
                        let n = o
                            .get("symbols")
                            .and_then(Value::as_array)
                            .map_or(1, Vec::len);
                        write_long(out, self.u.choose_index(n.max(1))? as i64);
                        Ok(())
                    }
                    Some("fixed") => {
                        self.remember(o, schema);
                        let size = o.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
                        for _ in 0..size {
                            out.push(self.u.arbitrary()?);
                        }
                        Ok(())
                    }
                    Some("array") => {
                        let items = o.get("items").unwrap_or(&Value::Null);
                        self.blocks(out, depth, |g, out| g.value(items, out, depth + 1))
                    }
                    Some("map") => {
                        let values = o.get("values").unwrap_or(&Value::Null);
                        self.blocks(out, depth, |g, out| {
                            g.string(out)?;
                            g.value(values, out, depth + 1)
                        })
                    }
                    Some(_) | None => self.value(ty, out, depth),
                }
            }
            _ => Ok(()),
        }
    }

    fn remember(&mut self, o: &'s serde_json::Map<String, Value>, schema: &'s Value) {
        if let Some(name) = o.get("name").and_then(Value::as_str) {
            self.named.insert(name, schema);
        }
    }

    fn named_or_primitive(
        &mut self,
        name: &'s str,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> arbitrary::Result<()> {
        match name {
            "null" => {}
            "boolean" => out.push(u8::from(self.u.arbitrary::<bool>()?)),
            "int" => write_long(out, i64::from(self.u.arbitrary::<i32>()?)),
            "long" => write_long(out, self.u.arbitrary::<i64>()?),
            "float" => out.extend_from_slice(&self.u.arbitrary::<f32>()?.to_le_bytes()),
            "double" => out.extend_from_slice(&self.u.arbitrary::<f64>()?.to_le_bytes()),
            "bytes" => {
                let b: &[u8] = self.u.arbitrary()?;
                write_long(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            "string" => self.string(out)?,
            other => {
                if let Some(s) = self.named.get(other).copied() {
                    self.value(s, out, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn string(&mut self, out: &mut Vec<u8>) -> arbitrary::Result<()> {
        let s: &str = self.u.arbitrary()?;
        write_long(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// Items in blocks, as Avro writes arrays and maps: some blocks with a negative count
    /// and their size in bytes, then the empty block.
    fn blocks(
        &mut self,
        out: &mut Vec<u8>,
        depth: usize,
        mut item: impl FnMut(&mut Self, &mut Vec<u8>) -> arbitrary::Result<()>,
    ) -> arbitrary::Result<()> {
        let blocks = if depth > 6 {
            0
        } else {
            self.u.int_in_range(0..=2)?
        };
        for _ in 0..blocks {
            let n = self.u.int_in_range(1..=3)?;
            let mut block = Vec::new();
            for _ in 0..n {
                item(self, &mut block)?;
            }
            if self.u.arbitrary()? {
                write_long(out, -i64::from(n));
                write_long(out, block.len() as i64);
            } else {
                write_long(out, i64::from(n));
            }
            out.extend_from_slice(&block);
        }
        write_long(out, 0);
        Ok(())
    }

    /// A valid value of a logical type; `false` when the underlying type's value will do.
    fn logical(
        &mut self,
        logical: &str,
        o: &serde_json::Map<String, Value>,
        out: &mut Vec<u8>,
    ) -> arbitrary::Result<bool> {
        match logical {
            "decimal" => {
                let precision = o.get("precision").and_then(Value::as_u64).unwrap_or(1);
                let fixed = o.get("size").and_then(Value::as_u64).map(|s| s as usize);
                // |value| < 10^precision, and it fits the fixed size.
                let digits = precision.min(18) as u32;
                let mut limit = 10i64.pow(digits) - 1;
                if let Some(size) = fixed.filter(|s| *s < 8) {
                    limit = limit.min((1i64 << (8 * size - 1)) - 1);
                }
                let v = self.u.int_in_range(-limit..=limit)?;
                let be = v.to_be_bytes();
                match fixed {
                    Some(size) => {
                        let fill = if v < 0 { 0xff } else { 0 };
                        for _ in 8..size {
                            out.push(fill);
                        }
                        out.extend_from_slice(&be[8usize.saturating_sub(size)..]);
                    }
                    None => {
                        write_long(out, 8);
                        out.extend_from_slice(&be);
                    }
                }
                Ok(true)
            }
            "uuid" if o.get("type").and_then(Value::as_str) == Some("string") => {
                let b: [u8; 16] = self.u.arbitrary()?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                let s = format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                );
                write_long(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
                Ok(true)
            }
            "time-millis" => {
                write_long(out, self.u.int_in_range(0..=86_399_999i64)?);
                Ok(true)
            }
            "time-micros" => {
                write_long(out, self.u.int_in_range(0..=86_399_999_999i64)?);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
