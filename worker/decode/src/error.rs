//! Pure: why one record body could not be decoded (shared by the decoder, the byte readers
//! and the skipper, so none of them imports another for it).

/// Why one record body could not be decoded; `position` is the byte offset in the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DecodeError {
    #[error("body truncated at byte {position}")]
    Truncated { position: usize },
    #[error("invalid varint at byte {position}")]
    InvalidVarint { position: usize },
    #[error("invalid length {length} at byte {position}")]
    InvalidLength { length: i64, position: usize },
    #[error("invalid utf-8 in string at byte {position}")]
    InvalidUtf8 { position: usize },
    #[error("invalid boolean byte {byte:#04x} at byte {position}")]
    InvalidBool { byte: u8, position: usize },
    #[error("invalid union branch index {index} at byte {position}")]
    InvalidUnionIndex { index: i64, position: usize },
    #[error("union branch {index} at byte {position} has no match in the reader schema")]
    UnresolvedUnionBranch { index: i64, position: usize },
    #[error("enum index {index} out of range of {symbols} symbols at byte {position}")]
    EnumIndexOutOfRange {
        index: i32,
        symbols: usize,
        position: usize,
    },
    #[error(
        "enum symbol {index} at byte {position} is unknown to the reader, which has no default"
    )]
    UnknownEnumSymbol { index: i32, position: usize },
    #[error("decimal of {bytes} bytes at byte {position} overflows its arrow type")]
    DecimalOverflow { bytes: usize, position: usize },
    #[error("value nests too deeply at byte {position}")]
    TooDeep { position: usize },
    #[error("{trailing} trailing bytes after the datum at byte {position}")]
    TrailingBytes { trailing: usize, position: usize },
    #[error("internal error: decode plan does not match its columns at byte {position}")]
    PlanMismatch { position: usize },
    #[error("failed to build the arrow batch: {reason}")]
    BuildBatch { reason: String },
    #[error("json value does not fit the row schema: {reason}")]
    Json { reason: String },
    #[error("protobuf message does not decode: {reason}")]
    Protobuf { reason: String },
}

impl DecodeError {
    /// The byte offset in the body where decoding failed (none for batch errors).
    pub fn position(&self) -> Option<usize> {
        match self {
            Self::Truncated { position }
            | Self::InvalidVarint { position }
            | Self::InvalidLength { position, .. }
            | Self::InvalidUtf8 { position }
            | Self::InvalidBool { position, .. }
            | Self::InvalidUnionIndex { position, .. }
            | Self::UnresolvedUnionBranch { position, .. }
            | Self::EnumIndexOutOfRange { position, .. }
            | Self::UnknownEnumSymbol { position, .. }
            | Self::DecimalOverflow { position, .. }
            | Self::TooDeep { position }
            | Self::TrailingBytes { position, .. }
            | Self::PlanMismatch { position } => Some(*position),
            Self::BuildBatch { .. } | Self::Json { .. } | Self::Protobuf { .. } => None,
        }
    }
}
