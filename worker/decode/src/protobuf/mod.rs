//! Protobuf → Arrow: a message descriptor compiled once ([`ProtoPlan`]), then each body
//! read straight into the column buffers ([`ProtoDecoder`]; no `DynamicMessage`).
//!
//! | Field                                   | Column                                            |
//! |-----------------------------------------|---------------------------------------------------|
//! | double, float                           | Float64, Float32                                  |
//! | int32, sint32, sfixed32                 | Int32                                             |
//! | int64, sint64, sfixed64, uint32, fixed32 | Int64                                            |
//! | uint64, fixed64                         | Decimal128(20, 0) (no value changes sign)         |
//! | bool, string, bytes                     | Boolean, Utf8, Binary                             |
//! | enum                                    | Utf8, the symbol (an unknown number: its digits)  |
//! | message                                 | Struct (null when absent)                         |
//! | repeated T                              | List of T (empty when absent)                     |
//! | map<K, V>                               | Map(Utf8 → V); integer and bool keys as text      |
//! | google.protobuf.Timestamp               | Timestamp(µs, UTC)                                |
//! | google.protobuf.Duration                | Interval(MonthDayNano), as Avro's duration        |
//! | google.protobuf.*Value (wrappers)       | the wrapped type, null when absent                |
//!
//! A field with presence (proto3 `optional`, a oneof member, proto2 `optional`) is
//! nullable; one without is never null — absent is its default (proto3 zero, proto2's
//! declared default). Unknown fields are skipped; a singular field given twice keeps the
//! last value and a message given twice merges, as protobuf's parsers do. So evolution is
//! protobuf's own: a reader descriptor decodes every writer version that kept its field
//! numbers and types. Recursive messages and proto2 groups cannot be columns and are
//! refused when the plan is built.

mod decoder;
mod plan;

pub use decoder::ProtoDecoder;
pub use plan::ProtoPlan;

use prost_reflect::DescriptorPool;

use crate::{SchemaError, WireError};

/// Reads the message-index array that follows the schema id in Confluent's protobuf
/// framing (a zig-zag varint count, then that many zig-zag varint indexes; a single 0 byte
/// means `[0]`, the first message) into `out`, and returns the message body after it.
pub fn split_message_indexes<'a>(
    payload: &'a [u8],
    out: &mut Vec<i32>,
) -> Result<&'a [u8], WireError> {
    out.clear();
    let mut pos = 0;
    let count = zigzag(payload, &mut pos)?;
    if count == 0 {
        out.push(0);
    }
    if !(0..=64).contains(&count) {
        return Err(WireError::BadMessageIndexes);
    }
    for _ in 0..count {
        let i = zigzag(payload, &mut pos)?;
        out.push(i32::try_from(i).map_err(|_| WireError::BadMessageIndexes)?);
    }
    payload.get(pos..).ok_or(WireError::BadMessageIndexes)
}

fn zigzag(b: &[u8], pos: &mut usize) -> Result<i64, WireError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(WireError::BadMessageIndexes)?;
        *pos += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((out >> 1) as i64 ^ -((out & 1) as i64));
        }
    }
    Err(WireError::BadMessageIndexes)
}

/// Compiles `.proto` source text (and the files it imports: `imports` by name, plus
/// protobuf's well-known types) into a descriptor pool.
pub fn compile_proto(
    name: &str,
    source: &str,
    imports: &[(String, String)],
) -> Result<DescriptorPool, SchemaError> {
    let mut files = vec![(name.to_string(), source.to_string())];
    files.extend(imports.iter().cloned());
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(Sources(files));
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(name)
        .map_err(|e| SchemaError::Protobuf {
            path: name.to_string(),
            reason: e.to_string(),
        })?;
    Ok(compiler.descriptor_pool())
}

/// The message a Confluent message-index path names in the schema's first file.
pub fn message_at(pool: &DescriptorPool, file: &str, indexes: &[i32]) -> Option<String> {
    let file = pool.get_file_by_name(file)?;
    let (first, rest) = indexes.split_first()?;
    let mut m = file.messages().nth(usize::try_from(*first).ok()?)?;
    for i in rest {
        let child = m.child_messages().nth(usize::try_from(*i).ok()?)?;
        m = child;
    }
    Some(m.full_name().to_string())
}

/// The messages of one `.proto` file, parsed without resolving its imports: enough to
/// tell which message a Confluent message-index path names.
#[derive(Debug, Clone)]
pub struct ProtoFileOutline(prost_types::FileDescriptorProto);

impl ProtoFileOutline {
    /// Parses `.proto` source text.
    pub fn parse(source: &str) -> Result<Self, SchemaError> {
        protox_parse::parse("writer.proto", source)
            .map(Self)
            .map_err(|e| SchemaError::Protobuf {
                path: "writer.proto".into(),
                reason: e.to_string(),
            })
    }

    /// Whether `indexes` name the message `full_name` (no leading dot).
    pub fn names(&self, indexes: &[i32], full_name: &str) -> bool {
        let mut rest = full_name;
        if let Some(pkg) = self.0.package.as_deref().filter(|p| !p.is_empty()) {
            match rest.strip_prefix(pkg).and_then(|r| r.strip_prefix('.')) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        let Some((first, tail)) = indexes.split_first() else {
            return false;
        };
        fn pick(
            list: &[prost_types::DescriptorProto],
            i: i32,
        ) -> Option<&prost_types::DescriptorProto> {
            usize::try_from(i).ok().and_then(|i| list.get(i))
        }
        let mut m = pick(&self.0.message_type, *first);
        let mut segment = |m: Option<&prost_types::DescriptorProto>| -> bool {
            let Some(name) = m.and_then(|m| m.name.as_deref()) else {
                return false;
            };
            match rest.strip_prefix(name) {
                Some("") => {
                    rest = "";
                    true
                }
                Some(r) if r.starts_with('.') => {
                    rest = &r[1..];
                    true
                }
                _ => false,
            }
        };
        if !segment(m) {
            return false;
        }
        for i in tail {
            m = m.and_then(|m| pick(&m.nested_type, *i));
            if !segment(m) {
                return false;
            }
        }
        rest.is_empty()
    }
}

/// `.proto` files held in memory, by name.
struct Sources(Vec<(String, String)>);

impl protox::file::FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.iter().find(|(n, _)| n == name) {
            Some((n, text)) => protox::file::File::from_source(n, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests;
