//! Pure: partition directories — how a value is escaped into a path segment by each sink,
//! and which rows have a value no sink can write (its `column=value` segment is longer
//! than a path segment may be), so that they become bad records instead of failing every
//! write and every replay.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, DataType};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// The longest `column=value` path segment a partition directory may have, in bytes: the
/// limit of local file systems (`NAME_MAX`) and HDFS's default
/// (`dfs.namenode.fs-limits.max-component-length`). Object stores allow longer keys, but a
/// table must stay readable and copyable wherever it goes.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// How a sink turns a partition value into a directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// Hive and Spark (`ExternalCatalogUtils.escapePathName`): control characters and
    /// `"#%'*/:=?\{[]^` as `%XX`, everything else (non-ASCII included) as is.
    Hive,
    /// Delta Lake (the protocol's URL encoding of partition values, as delta-rs writes it):
    /// RFC 3986 reserved characters, controls and every non-ASCII byte as `%XX`.
    Delta,
}

/// The characters the Delta protocol encodes in partition values (delta-rs's set).
const DELTA_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'!')
    .add(b'"')
    .add(b'#')
    .add(b'$')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Whether Hive escapes `c` in a path name.
fn hive_escapes(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        )
}

/// A Hive partition directory value: escaped as Hive and Spark escape path names, null as
/// Hive's default partition.
pub fn hive_value(v: Option<&str>) -> String {
    let Some(v) = v else {
        return "__HIVE_DEFAULT_PARTITION__".into();
    };
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if hive_escapes(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The length in bytes of `v` escaped for a directory name.
pub fn escaped_len(v: &str, escaping: Escaping) -> usize {
    match escaping {
        Escaping::Hive => v
            .chars()
            .map(|c| {
                if hive_escapes(c) {
                    3 * c.len_utf8()
                } else {
                    c.len_utf8()
                }
            })
            .sum(),
        Escaping::Delta => utf8_percent_encode(v, DELTA_SET).map(str::len).sum(),
    }
}

/// A row whose partition directory cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    /// Row index in the batch.
    pub row: usize,
    /// The partition column.
    pub column: String,
    /// Why, for the bad record's message (the value itself is not repeated).
    pub message: String,
}

/// The rows of `batch` whose `column=value` segment, escaped, is longer than
/// [`MAX_SEGMENT_BYTES`] for a string partition column (other types print short).
pub fn unwritable_rows(
    batch: &RecordBatch,
    partition_by: &[String],
    escaping: Escaping,
) -> Result<Vec<Unwritable>, ArrowError> {
    let mut out = Vec::new();
    for column in partition_by {
        let array = batch.column(batch.schema().index_of(column)?).clone();
        // Bytes left for the value once `column=` is written.
        let room = MAX_SEGMENT_BYTES.saturating_sub(column.len() + 1);
        let mut check = |row: usize, v: &str| {
            // Escaping at most triples a value: most values need no exact count.
            if 3 * v.len() <= room {
                return;
            }
            let len = escaped_len(v, escaping);
            if len > room {
                out.push(Unwritable {
                    row,
                    column: column.clone(),
                    message: format!(
                        "partition column {column}: its value is {} bytes escaped \
                         ({} raw), over the {MAX_SEGMENT_BYTES}-byte limit of a \
                         `{column}=value` directory name",
                        len,
                        v.len()
                    ),
                });
            }
        };
        match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                for row in (0..a.len()).filter(|r| a.is_valid(*r)) {
                    check(row, a.value(row));
                }
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                for row in (0..a.len()).filter(|r| a.is_valid(*r)) {
                    check(row, a.value(row));
                }
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                for row in (0..a.len()).filter(|r| a.is_valid(*r)) {
                    check(row, a.value(row));
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|u| u.row);
    out.dedup_by_key(|u| u.row);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn hive_escapes_what_spark_escapes() {
        assert_eq!(hive_value(Some("a/b=c%")), "a%2Fb%3Dc%25");
        assert_eq!(hive_value(Some("x\u{1}y")), "x%01y");
        assert_eq!(hive_value(Some("*{[]^")), "%2A%7B%5B%5D%5E");
        assert_eq!(hive_value(Some("été ok-1.2")), "été ok-1.2");
        assert_eq!(hive_value(None), "__HIVE_DEFAULT_PARTITION__");
        for v in ["a/b=c%", "x\u{1}y", "*{[]^", "été ok-1.2"] {
            assert_eq!(escaped_len(v, Escaping::Hive), hive_value(Some(v)).len());
        }
    }

    #[test]
    fn delta_lengths_count_every_escaped_byte() {
        assert_eq!(escaped_len("abc", Escaping::Delta), 3);
        assert_eq!(escaped_len("a b/", Escaping::Delta), 1 + 3 + 1 + 3);
        // Non-ASCII: every byte escaped (é is 2 bytes).
        assert_eq!(escaped_len("é", Escaping::Delta), 6);
        assert_eq!(escaped_len("é", Escaping::Hive), 2);
    }

    #[test]
    fn only_values_too_long_for_a_directory_name_are_unwritable() {
        let long = "a".repeat(300);
        let fits = "b".repeat(255 - "user=".len());
        let accents = "é".repeat(100); // 200 bytes: fits raw, 600 escaped for Delta
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("user", DataType::Utf8, true),
                Field::new("n", DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("ok"),
                    Some(long.as_str()),
                    None,
                    Some(fits.as_str()),
                    Some(accents.as_str()),
                    Some("a/b\u{1}"),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
            ],
        )
        .unwrap();
        let by = ["user".to_string(), "n".to_string()];
        let rows = |e| {
            unwritable_rows(&batch, &by, e)
                .unwrap()
                .into_iter()
                .map(|u| u.row)
                .collect::<Vec<_>>()
        };
        assert_eq!(rows(Escaping::Hive), vec![1]);
        assert_eq!(rows(Escaping::Delta), vec![1, 4]);
        let u = &unwritable_rows(&batch, &by, Escaping::Hive).unwrap()[0];
        assert!(u.message.contains("300 raw"), "{}", u.message);
        assert!(!u.message.contains("aaaa"), "the value is not repeated");
    }
}
