//! Pure: splits a Confluent wire-format payload into its schema id and bare Avro body.

/// Why a payload is not in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum WireError {
    #[error("payload of {len} bytes is shorter than the 5-byte confluent header")]
    TooShort { len: usize },
    #[error("confluent magic byte is {byte:#04x}, expected 0x00")]
    BadMagic { byte: u8 },
    #[error("the confluent protobuf message-index array is malformed")]
    BadMessageIndexes,
}

/// Splits `payload` into (schema id, Avro body): magic byte 0, a big-endian u32 id, the body.
pub fn split_confluent(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match payload {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [magic, _, _, _, _, ..] => Err(WireError::BadMagic { byte: *magic }),
        _ => Err(WireError::TooShort { len: payload.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_classifies() {
        assert_eq!(
            split_confluent(&[0, 0, 0, 1, 2, 9, 9]),
            Ok((258, &[9u8, 9][..]))
        );
        assert_eq!(split_confluent(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        assert_eq!(
            split_confluent(&[0, 0, 0, 1]),
            Err(WireError::TooShort { len: 4 })
        );
        assert_eq!(split_confluent(&[]), Err(WireError::TooShort { len: 0 }));
        assert_eq!(
            split_confluent(&[1, 0, 0, 0, 1, 2]),
            Err(WireError::BadMagic { byte: 1 })
        );
        let name: &str = WireError::BadMagic { byte: 1 }.into();
        assert_eq!(name, "bad_magic");
    }
}
