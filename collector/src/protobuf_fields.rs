//! The lowest layer of reading protobuf by hand: an iterator over the fields of one encoded
//! message, borrowing their bytes from the buffer. It knows nothing of which message it
//! reads; the access-log reader and the address reader give the field numbers meaning.
//! Hot: it runs for every field of every entry received, so its small functions are
//! inlined into their callers.

/// The message is not valid protobuf: the stream that sent it is ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated varint")]
    Varint,
    #[error("field runs past the end of its message")]
    Truncated,
    #[error("field number 0")]
    FieldZero,
    #[error("unsupported wire type {0}")]
    WireType(u8),
}

/// One field's value as the reader keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Varint(u64),
    /// Fixed-width values are skipped: no field the pipeline reads has one.
    Fixed,
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The varint's value; 0 for a field of another wire type.
    #[inline]
    pub(crate) fn varint(self) -> u64 {
        match self {
            Value::Varint(v) => v,
            _ => 0,
        }
    }

    /// The length-delimited field's bytes; empty for a field of another wire type.
    #[inline]
    pub(crate) fn bytes(self) -> &'a [u8] {
        match self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }
}

/// Iterates over the fields of one encoded message: each item is a field number and its
/// value, or the framing error that ends the message. After an error it yields nothing
/// more, so that a reader that skips errors (`filter_map(Result::ok)`) cannot read the
/// same bad bytes for ever.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of `buf`, read lazily from its start.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, lengths and most values fit in one or two bytes.
        match *self.buf {
            [b0, ref rest @ ..] if b0 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0))
            }
            [b0, b1, ref rest @ ..] if b1 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7))
            }
            _ => self.long_varint(),
        }
    }

    #[cold]
    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::Varint)
    }

    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        match self.buf.split_at_checked(len) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(WireError::Truncated),
        }
    }

    #[inline(always)]
    fn read_field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 {
            return Err(WireError::FieldZero);
        }
        let value = match (key & 7) as u8 {
            0 => Value::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            other => return Err(WireError::WireType(other)),
        };
        Ok((field, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let field = self.read_field();
        if field.is_err() {
            self.buf = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_the_last_item() {
        let mut fields = Fields::new(&[0x08, 0x01, 0x10, 0x96]);
        assert!(fields.next().unwrap().is_ok());
        assert_eq!(fields.next().unwrap().unwrap_err(), WireError::Varint);
        assert!(fields.next().is_none());
        assert_eq!(Fields::new(&[0x08, 0x96]).filter_map(Result::ok).count(), 0);
    }

    #[test]
    fn varints_and_framing_errors() {
        assert_eq!(
            Fields::new(&[0x08, 0x96, 0x01]).next().unwrap().unwrap().0,
            1
        );
        assert_eq!(
            Fields::new(&[0x08, 0x96]).next().unwrap().unwrap_err(),
            WireError::Varint
        );
        assert_eq!(
            Fields::new(&[0x12, 0x05, 0x01])
                .next()
                .unwrap()
                .unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Fields::new(&[0x00, 0x01]).next().unwrap().unwrap_err(),
            WireError::FieldZero
        );
        assert_eq!(
            Fields::new(&[0x0b]).next().unwrap().unwrap_err(),
            WireError::WireType(3)
        );
    }
}
