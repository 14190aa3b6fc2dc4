//! Pure: skips a writer value the reader does not read, checking its framing as it goes.

use super::avro::{AvroSchema, Kind, TypeId};
use super::error::DecodeError;
use super::read::Cursor;

/// Nesting limit for recursive writer types (a linked list skipped field by field).
pub(crate) const MAX_DEPTH: usize = 256;

/// Skips (and checks the framing of) a writer value the reader does not read.
pub(crate) fn skip(
    w: &AvroSchema,
    id: TypeId,
    cur: &mut Cursor<'_>,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep {
            position: cur.pos(),
        });
    }
    let Some(node) = w.node(id) else {
        return Ok(());
    };
    match &node.kind {
        Kind::Null => Ok(()),
        Kind::Boolean => cur.bool().map(drop),
        Kind::Int => cur.int().map(drop),
        Kind::Long => cur.long().map(drop),
        Kind::Float => cur.take(4).map(drop),
        Kind::Double => cur.take(8).map(drop),
        Kind::Bytes | Kind::String => cur.bytes().map(drop),
        Kind::Fixed { size, .. } => cur.take(*size).map(drop),
        Kind::Enum { symbols, .. } => {
            let position = cur.pos();
            let index = cur.int()?;
            if usize::try_from(index).is_ok_and(|i| i < symbols.len()) {
                Ok(())
            } else {
                Err(DecodeError::EnumIndexOutOfRange {
                    index,
                    symbols: symbols.len(),
                    position,
                })
            }
        }
        Kind::Array(items) => loop {
            let n = cur.block()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                skip(w, *items, cur, depth + 1)?;
            }
        },
        Kind::Map(values) => loop {
            let n = cur.block()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                cur.bytes()?;
                skip(w, *values, cur, depth + 1)?;
            }
        },
        Kind::Record { fields, .. } => {
            for f in fields {
                skip(w, f.ty, cur, depth + 1)?;
            }
            Ok(())
        }
        Kind::Union(branches) => {
            let position = cur.pos();
            let index = cur.long()?;
            match usize::try_from(index).ok().and_then(|i| branches.get(i)) {
                Some(b) => skip(w, *b, cur, depth + 1),
                None => Err(DecodeError::InvalidUnionIndex { index, position }),
            }
        }
    }
}
