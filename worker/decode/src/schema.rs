//! Pure: compiles writer + reader Avro schemas into a resolution plan and the Arrow schema.
//!
//! Resolution follows the Avro specification: reader fields missing from the writer take
//! their defaults, writer fields missing from the reader are skipped, fields match by name
//! or reader alias in any order, numeric promotions int→long→float→double, string↔bytes,
//! enum symbols map by name (unknown ones to the reader's default), and unions resolve
//! branch by branch. Names of records, enums and fixed types are only used to pick union
//! branches; a named writer type resolves against a reader type of the same kind whatever
//! its name. Both sides' logical types must agree when both have one; when only one side
//! has one, the physical types resolve and the reader's logical type gives the Arrow type.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::arrow_types::{Shape, arrow_err, data_type, node, shape};
use super::avro::{AvroSchema, AvroSchemaError, Kind, Logical, Node, TypeId, kind_name};
use super::defaults::encode_default;

/// Why a writer/reader schema pair cannot be decoded into Arrow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SchemaError {
    #[error(transparent)]
    Parse(#[from] AvroSchemaError),
    #[error("writer type {writer} cannot be read as reader type {reader} at {path}")]
    Incompatible {
        path: String,
        writer: String,
        reader: String,
    },
    #[error("reader field {path} is not in the writer schema and has no default")]
    MissingDefault { path: String },
    #[error("invalid default for reader field {path}: {reason}")]
    InvalidDefault { path: String, reason: String },
    #[error("recursive type {name} cannot be represented as an arrow type")]
    Recursive { name: String },
    #[error("invalid arrow type at {path}: {reason}")]
    Arrow { path: String, reason: String },
    #[error("row schema at {path}: {reason}")]
    Json { path: String, reason: String },
    #[error("protobuf schema at {path}: {reason}")]
    Protobuf { path: String, reason: String },
}

/// A compiled writer → reader resolution: what the decoder runs for every body.
#[derive(Debug)]
pub struct DecodePlan {
    pub(crate) writer: AvroSchema,
    pub(crate) root: Op,
    /// The Arrow type of the whole datum; a `Struct` whose fields are the batch columns
    /// when the reader schema is a record.
    pub(crate) root_type: DataType,
    pub(crate) record_root: bool,
    schema: SchemaRef,
}

/// One step of the decode program; each variant names the writer encoding it reads and
/// the column kind it appends to.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Writer `null`: appends a null (or a slot to a `Null` column).
    Null,
    Bool,
    Int,
    IntToLong,
    IntToFloat,
    IntToDouble,
    Long,
    LongToFloat,
    LongToDouble,
    Float,
    FloatToDouble,
    Double,
    /// Length-prefixed bytes; `utf8` when the reader column is `Utf8`.
    Bytes {
        utf8: bool,
    },
    Fixed {
        size: usize,
    },
    /// Writer symbol index → reader symbol index (`None`: unknown symbol, no default).
    Enum {
        map: Box<[Option<u32>]>,
        symbols: Box<[Box<str>]>,
    },
    /// Big-endian two's complement bytes into a `Decimal128` or `Decimal256` column.
    DecimalBytes,
    DecimalFixed {
        size: usize,
    },
    UuidFixed,
    Duration,
    Record(Box<RecordOp>),
    Array(Box<Op>),
    Map(Box<Op>),
    /// Reads the writer's branch index; `None`: that branch has no reader match.
    WriterUnion(Box<[Option<Op>]>),
    /// Appends to branch `branch` of a reader (dense) union column.
    ReaderBranch {
        branch: i8,
        op: Box<Op>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct RecordOp {
    pub steps: Box<[Step]>,
    pub defaults: Box<[DefaultFill]>,
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Decodes a writer field into reader column `col` of the struct.
    Read { col: usize, op: Op },
    /// Skips a writer field the reader does not have.
    Skip(TypeId),
}

/// A reader field absent from the writer: its default, encoded, and the reader's plan.
#[derive(Debug, Clone)]
pub(crate) struct DefaultFill {
    pub col: usize,
    pub op: Op,
    pub bytes: Box<[u8]>,
}

impl DecodePlan {
    /// Compiles the plan from schema texts; `reader` defaults to the writer schema.
    pub fn from_json(writer: &str, reader: Option<&str>) -> Result<Self, SchemaError> {
        let writer = AvroSchema::parse(writer)?;
        let reader = reader.map(AvroSchema::parse).transpose()?;
        Self::compile(writer, reader.as_ref())
    }

    /// Compiles the plan from parsed schemas; `reader` defaults to the writer schema.
    pub fn compile(writer: AvroSchema, reader: Option<&AvroSchema>) -> Result<Self, SchemaError> {
        let reader = reader.unwrap_or(&writer);
        let (root_type, nullable) = data_type(reader, reader.root, &mut Vec::new(), "$")?;
        let root = Resolver {
            w: &writer,
            r: reader,
        }
        .resolve(writer.root, reader.root, "$")?;
        let record_root = matches!(root_type, DataType::Struct(_)) && !nullable;
        let schema = match &root_type {
            DataType::Struct(fields) if record_root => Schema::new(fields.clone()),
            other => Schema::new(vec![Field::new("value", other.clone(), nullable)]),
        };
        Ok(Self {
            writer,
            root,
            root_type,
            record_root,
            schema: Arc::new(schema),
        })
    }

    /// The Arrow schema of the batches the decoder produces.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.schema
    }
}

struct Resolver<'a> {
    w: &'a AvroSchema,
    r: &'a AvroSchema,
}

impl Resolver<'_> {
    fn incompatible(&self, w: TypeId, r: TypeId, path: &str) -> SchemaError {
        SchemaError::Incompatible {
            path: path.to_string(),
            writer: describe(self.w, w),
            reader: describe(self.r, r),
        }
    }

    fn resolve(&self, w: TypeId, r: TypeId, path: &str) -> Result<Op, SchemaError> {
        let wn = node(self.w, w)?;
        if let Kind::Union(branches) = &wn.kind {
            let mut ops = Vec::with_capacity(branches.len());
            let mut first_err = None;
            for b in branches {
                match self.resolve(*b, r, path) {
                    Ok(op) => ops.push(Some(op)),
                    Err(e) => {
                        first_err.get_or_insert(e);
                        ops.push(None);
                    }
                }
            }
            if ops.iter().all(Option::is_none) {
                return Err(first_err.unwrap_or_else(|| self.incompatible(w, r, path)));
            }
            return Ok(Op::WriterUnion(ops.into()));
        }
        match shape(self.r, r) {
            Shape::Nullable(_) if matches!(wn.kind, Kind::Null) => Ok(Op::Null),
            Shape::Nullable(t) => self.resolve(w, t, path),
            Shape::Plain(t) => self.resolve_plain(w, t, path),
            Shape::Union(branches) => {
                // branches of the same kind (and name) first, then any that resolves
                let same: Vec<usize> = (0..branches.len())
                    .filter(|i| self.same_kind(w, branches[*i]))
                    .collect();
                let order = same
                    .iter()
                    .copied()
                    .chain((0..branches.len()).filter(|i| !same.contains(i)));
                for i in order {
                    if let Ok(op) = self.resolve(w, branches[i], path) {
                        let branch = i8::try_from(i).map_err(|e| arrow_err(path, e))?;
                        return Ok(Op::ReaderBranch {
                            branch,
                            op: Box::new(op),
                        });
                    }
                }
                Err(self.incompatible(w, r, path))
            }
        }
    }

    fn same_kind(&self, w: TypeId, r: TypeId) -> bool {
        match (
            self.w.node(w).map(|n| &n.kind),
            self.r.node(r).map(|n| &n.kind),
        ) {
            (Some(Kind::Record { named: a, .. }), Some(Kind::Record { named: b, .. }))
            | (Some(Kind::Enum { named: a, .. }), Some(Kind::Enum { named: b, .. }))
            | (Some(Kind::Fixed { named: a, .. }), Some(Kind::Fixed { named: b, .. })) => {
                b.answers_to(a)
            }
            (Some(a), Some(b)) => kind_name(a) == kind_name(b),
            _ => false,
        }
    }

    /// Resolves two non-union types.
    fn resolve_plain(&self, w: TypeId, r: TypeId, path: &str) -> Result<Op, SchemaError> {
        let (wn, rn) = (node(self.w, w)?, node(self.r, r)?);
        if let (Some(a), Some(b)) = (wn.logical, rn.logical)
            && a != b
        {
            return Err(self.incompatible(w, r, path));
        }
        let op = match (rn.logical, &wn.kind, &rn.kind) {
            (Some(Logical::Decimal { .. }), Kind::Bytes, Kind::Bytes) => Op::DecimalBytes,
            (
                Some(Logical::Decimal { .. }),
                Kind::Fixed { size: a, .. },
                Kind::Fixed { size: b, .. },
            ) if a == b => Op::DecimalFixed { size: *a },
            (Some(Logical::Uuid), Kind::String | Kind::Bytes, Kind::String) => {
                Op::Bytes { utf8: true }
            }
            (Some(Logical::Uuid), Kind::Fixed { size: 16, .. }, Kind::Fixed { size: 16, .. }) => {
                Op::UuidFixed
            }
            (
                Some(Logical::Duration),
                Kind::Fixed { size: 12, .. },
                Kind::Fixed { size: 12, .. },
            ) => Op::Duration,
            (Some(Logical::Date | Logical::TimeMillis), Kind::Int, Kind::Int) => Op::Int,
            (Some(l), Kind::Int, Kind::Long) if !matches!(l, Logical::Decimal { .. }) => {
                Op::IntToLong
            }
            (Some(l), Kind::Long, Kind::Long) if !matches!(l, Logical::Decimal { .. }) => Op::Long,
            (Some(_), _, _) => return Err(self.incompatible(w, r, path)),
            (None, Kind::Null, Kind::Null) => Op::Null,
            (None, Kind::Boolean, Kind::Boolean) => Op::Bool,
            (None, Kind::Int, Kind::Int) => Op::Int,
            (None, Kind::Int, Kind::Long) => Op::IntToLong,
            (None, Kind::Int, Kind::Float) => Op::IntToFloat,
            (None, Kind::Int, Kind::Double) => Op::IntToDouble,
            (None, Kind::Long, Kind::Long) => Op::Long,
            (None, Kind::Long, Kind::Float) => Op::LongToFloat,
            (None, Kind::Long, Kind::Double) => Op::LongToDouble,
            (None, Kind::Float, Kind::Float) => Op::Float,
            (None, Kind::Float, Kind::Double) => Op::FloatToDouble,
            (None, Kind::Double, Kind::Double) => Op::Double,
            (None, Kind::Bytes | Kind::String, Kind::Bytes) => Op::Bytes { utf8: false },
            (None, Kind::Bytes | Kind::String, Kind::String) => Op::Bytes { utf8: true },
            (None, Kind::Fixed { size: a, .. }, Kind::Fixed { size: b, .. }) if a == b => {
                Op::Fixed { size: *a }
            }
            (
                None,
                Kind::Enum { symbols: ws, .. },
                Kind::Enum {
                    symbols: rs,
                    default,
                    ..
                },
            ) => {
                let fallback = default
                    .as_ref()
                    .and_then(|d| rs.iter().position(|s| s == d));
                let map = ws
                    .iter()
                    .map(|s| {
                        rs.iter()
                            .position(|x| x == s)
                            .or(fallback)
                            .and_then(|i| u32::try_from(i).ok())
                    })
                    .collect();
                Op::Enum {
                    map,
                    symbols: rs.iter().map(|s| s.as_str().into()).collect(),
                }
            }
            (None, Kind::Array(wi), Kind::Array(ri)) => {
                Op::Array(Box::new(self.resolve(*wi, *ri, &format!("{path}[]"))?))
            }
            (None, Kind::Map(wv), Kind::Map(rv)) => {
                Op::Map(Box::new(self.resolve(*wv, *rv, &format!("{path}{{}}"))?))
            }
            (None, Kind::Record { fields: wf, .. }, Kind::Record { fields: rf, .. }) => {
                let mut matched = vec![false; rf.len()];
                let mut steps = Vec::with_capacity(wf.len());
                for f in wf {
                    let hit = rf.iter().enumerate().position(|(j, x)| {
                        !matched[j] && (x.name == f.name || x.aliases.iter().any(|a| a == &f.name))
                    });
                    steps.push(match hit {
                        Some(j) => {
                            matched[j] = true;
                            let fpath = format!("{path}.{}", rf[j].name);
                            Step::Read {
                                col: j,
                                op: self.resolve(f.ty, rf[j].ty, &fpath)?,
                            }
                        }
                        None => Step::Skip(f.ty),
                    });
                }
                let mut defaults = Vec::new();
                for (j, f) in rf.iter().enumerate().filter(|(j, _)| !matched[*j]) {
                    let fpath = format!("{path}.{}", f.name);
                    let json = f
                        .default
                        .as_ref()
                        .ok_or_else(|| SchemaError::MissingDefault {
                            path: fpath.clone(),
                        })?;
                    let mut bytes = Vec::new();
                    encode_default(self.r, f.ty, json, &mut bytes).map_err(|reason| {
                        SchemaError::InvalidDefault {
                            path: fpath.clone(),
                            reason,
                        }
                    })?;
                    let op = Resolver {
                        w: self.r,
                        r: self.r,
                    }
                    .resolve(f.ty, f.ty, &fpath)?;
                    defaults.push(DefaultFill {
                        col: j,
                        op,
                        bytes: bytes.into(),
                    });
                }
                Op::Record(Box::new(RecordOp {
                    steps: steps.into(),
                    defaults: defaults.into(),
                }))
            }
            _ => return Err(self.incompatible(w, r, path)),
        };
        Ok(op)
    }
}

fn describe(s: &AvroSchema, id: TypeId) -> String {
    match s.node(id) {
        Some(Node {
            kind,
            logical: Some(l),
        }) => format!("{}({l:?})", kind_name(kind)),
        Some(Node {
            kind: Kind::Record { named, .. } | Kind::Enum { named, .. } | Kind::Fixed { named, .. },
            ..
        }) => named.fullname.clone(),
        Some(Node { kind, .. }) => kind_name(kind).to_string(),
        None => "?".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use arrow_schema::{TimeUnit, UnionMode};

    fn plan(w: &str, r: Option<&str>) -> Result<DecodePlan, SchemaError> {
        DecodePlan::from_json(w, r)
    }

    #[test]
    fn arrow_types_of_all_kinds() {
        let p = plan(
            r#"{"type":"record","name":"R","fields":[
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},
            {"name":"n","type":["null","long"]},
            {"name":"u","type":["int","string","null"]},
            {"name":"m","type":{"type":"map","values":"int"}},
            {"name":"a","type":{"type":"array","items":["null","string"]}},
            {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":2}},
            {"name":"f","type":{"type":"fixed","name":"F","size":3}},
            {"name":"t","type":{"type":"long","logicalType":"local-timestamp-nanos"}}]}"#,
            None,
        );
        let p = match p {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let s = p.arrow_schema();
        let dt = |i: usize| s.field(i).data_type().clone();
        assert_eq!(dt(0), DataType::Utf8);
        assert_eq!(dt(1), DataType::Int64);
        assert!(s.field(1).is_nullable() && !s.field(0).is_nullable());
        assert!(matches!(dt(2), DataType::Union(f, UnionMode::Dense) if f.len() == 3));
        assert!(matches!(dt(3), DataType::Map(_, false)));
        assert!(
            matches!(dt(4), DataType::List(f) if f.is_nullable() && f.data_type() == &DataType::Utf8)
        );
        assert_eq!(dt(5), DataType::Decimal256(40, 2));
        assert_eq!(dt(6), DataType::FixedSizeBinary(3));
        assert_eq!(dt(7), DataType::Timestamp(TimeUnit::Nanosecond, None));
    }

    #[test]
    fn incompatible_pairs_are_typed_errors() {
        let rec = |t: &str| {
            format!(r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":{t}}}]}}"#)
        };
        for (w, r, want) in [
            (rec(r#""long""#), rec(r#""int""#), "incompatible"),
            (rec(r#""double""#), rec(r#""float""#), "incompatible"),
            (rec(r#""string""#), rec(r#""int""#), "incompatible"),
            (rec(r#"["null","string"]"#), rec(r#""int""#), "incompatible"),
            (rec(r#"{"type":"long","logicalType":"timestamp-millis"}"#), rec(r#"{"type":"long","logicalType":"timestamp-micros"}"#), "incompatible"),
            (rec(r#"{"type":"fixed","name":"F","size":2}"#), rec(r#"{"type":"fixed","name":"F","size":3}"#), "incompatible"),
            (rec(r#""int""#), r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#.to_string(), "missing_default"),
            (rec(r#""int""#), r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":"x"}]}"#.to_string(), "invalid_default"),
            (r#"{"type":"record","name":"L","fields":[{"name":"n","type":["null","L"]}]}"#.to_string(), r#"{"type":"record","name":"L","fields":[{"name":"n","type":["null","L"]}]}"#.to_string(), "recursive"),
        ] {
            let err = plan(&w, Some(&r)).err();
            assert_eq!(err.as_ref().map(<&str>::from), Some(want), "{w} -> {r}: {err:?}");
        }
    }

    #[test]
    fn recursive_writer_fields_can_be_skipped() {
        let w = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
            {"name":"l","type":{"type":"record","name":"L","fields":[{"name":"n","type":["null","L"]}]}}]}"#;
        let r = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
        assert!(plan(w, Some(r)).is_ok());
    }
}
