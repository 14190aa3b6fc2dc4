//! Pure: reads Avro binary primitives from one body, every read bounds-checked with a typed error.

use super::error::DecodeError;

/// Array and map items allowed in one datum beyond one per remaining byte, for items that
/// take no bytes (arrays of `null` or of empty records).
pub(crate) const ZERO_WIDTH_ITEMS: usize = 1 << 16;

/// A read position in one record body.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// How many more array/map items this datum may hold.
    items: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            items: buf.len().saturating_add(ZERO_WIDTH_ITEMS),
        }
    }

    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// A zig-zag varint of at most 10 bytes.
    #[inline(always)]
    pub fn long(&mut self) -> Result<i64, DecodeError> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(unzigzag(u64::from(b)));
        }
        self.long_multi()
    }

    fn long_multi(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let mut z: u64 = 0;
        let mut shift = 0u32;
        while shift < 70 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated { position: start });
            };
            self.pos += 1;
            z |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b < 0x80 {
                return Ok(unzigzag(z));
            }
            shift += 7;
        }
        Err(DecodeError::InvalidVarint { position: start })
    }

    /// A zig-zag varint that must fit in 32 bits.
    #[inline(always)]
    pub fn int(&mut self) -> Result<i32, DecodeError> {
        let start = self.pos;
        i32::try_from(self.long()?).map_err(|_| DecodeError::InvalidVarint { position: start })
    }

    #[inline(always)]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(DecodeError::Truncated { position: self.pos }),
        }
    }

    /// A length prefix: non-negative and no larger than the bytes left.
    #[inline(always)]
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let start = self.pos;
        let n = self.long()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining())
            .ok_or(DecodeError::InvalidLength {
                length: n,
                position: start,
            })
    }

    #[inline(always)]
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline(always)]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    #[inline(always)]
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        let position = self.pos;
        match self.take(1)?.first() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            b => Err(DecodeError::InvalidBool {
                byte: b.copied().unwrap_or(0),
                position,
            }),
        }
    }

    /// The item count of the next array/map block (0 ends the array), checked against
    /// the datum's item budget; a negative count's byte size is read and bounded.
    pub fn block(&mut self) -> Result<usize, DecodeError> {
        let start = self.pos;
        let n = self.long()?;
        let bad = DecodeError::InvalidLength {
            length: n,
            position: start,
        };
        let count = if n < 0 {
            let size_pos = self.pos;
            let size = self.long()?;
            if usize::try_from(size).map_or(true, |s| s > self.remaining()) {
                return Err(DecodeError::InvalidLength {
                    length: size,
                    position: size_pos,
                });
            }
            n.checked_neg().ok_or(bad.clone())?
        } else {
            n
        };
        let count = usize::try_from(count).map_err(|_| bad.clone())?;
        self.items = self.items.checked_sub(count).ok_or(bad)?;
        Ok(count)
    }
}

#[inline]
fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// A big-endian two's complement integer of any length as i128, if it fits.
pub(crate) fn be_i128(b: &[u8]) -> Option<i128> {
    let s = strip_sign(b, 16)?;
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut out = [fill; 16];
    out.get_mut(16 - s.len()..)?.copy_from_slice(s);
    Some(i128::from_be_bytes(out))
}

/// A big-endian two's complement integer of any length as i256, if it fits.
pub(crate) fn be_i256(b: &[u8]) -> Option<arrow_buffer::i256> {
    let s = strip_sign(b, 32)?;
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut out = [fill; 32];
    out.get_mut(32 - s.len()..)?.copy_from_slice(s);
    Some(arrow_buffer::i256::from_be_bytes(out))
}

/// Drops redundant leading sign bytes until `b` fits in `width` bytes; `None` if it
/// cannot without changing the value.
fn strip_sign(b: &[u8], width: usize) -> Option<&[u8]> {
    let neg = b.first().is_some_and(|x| x & 0x80 != 0);
    let fill = if neg { 0xff } else { 0 };
    let mut s = b;
    while s.len() > width {
        match s {
            [first, rest @ ..]
                if *first == fill && rest.first().is_some_and(|x| (x & 0x80 != 0) == neg) =>
            {
                s = rest;
            }
            _ => return None,
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(Cursor::new(&[0x01]).long(), Ok(-1));
        assert_eq!(Cursor::new(&[0x80, 0x01]).long(), Ok(64));
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Cursor::new(&max).long(), Ok(i64::MAX));
        assert_eq!(
            Cursor::new(&[0xff; 11]).long(),
            Err(DecodeError::InvalidVarint { position: 0 })
        );
        assert_eq!(
            Cursor::new(&[0x80]).long(),
            Err(DecodeError::Truncated { position: 0 })
        );
        assert_eq!(
            Cursor::new(&max).int(),
            Err(DecodeError::InvalidVarint { position: 0 })
        );
    }

    #[test]
    fn decimals_sign_extend_and_overflow() {
        assert_eq!(be_i128(&[]), Some(0));
        assert_eq!(be_i128(&[0xff, 0x38]), Some(-200));
        let mut long = vec![0xff; 20];
        long[19] = 0x38;
        assert_eq!(be_i128(&long), Some(-200));
        let mut big = vec![0; 17];
        big[1] = 0x80;
        assert_eq!(be_i128(&big), None);
        assert_eq!(
            be_i256(&big).map(|v| v > arrow_buffer::i256::ZERO),
            Some(true)
        );
    }
}
