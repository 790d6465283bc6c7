//! A sketch's byte form: a format byte, the totals, then each non-empty bin as its key's
//! distance from the previous key and its count, both as varints. Encoded sketches are
//! merged and removed without building them first, and checked whole before anything
//! is taken from them.

use super::{LatencySketch, MAX_KEY, MIN_KEY};
use crate::error::{Error, Result};

/// First byte of the encoding; a later layout gets another number.
const FORMAT_V1: u8 = 1;

impl LatencySketch {
    /// The smallest and largest values of an encoded sketch, `None` when it is empty.
    pub fn extremes_of(bytes: &[u8]) -> Result<Option<(f64, f64)>> {
        Ok(Header::read(bytes)?.map(|header| (header.min, header.max)))
    }

    /// Takes out an encoded sketch that was merged in earlier, for a window that moves on:
    /// the counts, the zero count and the bins subtract exactly, and so does the sum up to
    /// rounding. A minimum and a maximum do not come apart: the caller sets them for what
    /// is left with `set_extremes`. Refused, leaving `self` as it was, when `bytes` hold
    /// observations `self` does not.
    pub fn remove_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(header) = Header::read(bytes)? else {
            return Ok(());
        };
        let mut fits = header.count <= self.count && header.zero <= self.zero;
        header.bins.visit(|key, n| {
            fits = fits && self.bins.count_at(key) >= n;
            fits
        })?;
        if !fits {
            return Err(invalid(
                "a latency sketch cannot lose observations it does not hold".into(),
            ));
        }
        header.bins.visit(|key, n| {
            self.bins.take(key, n);
            true
        })?;
        self.count -= header.count;
        self.zero -= header.zero;
        if self.count == 0 {
            *self = LatencySketch::new();
        } else {
            self.sum = (self.sum - header.sum).max(0.0);
        }
        Ok(())
    }

    /// A compact encoding: a format byte, the totals, then each non-empty bin as its key's
    /// distance from the previous key and its count, both as varints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        self.write_bytes(&mut out);
        out
    }

    /// `to_bytes` into a reused buffer, which is cleared first.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(FORMAT_V1);
        put_varint(out, self.count);
        if self.count == 0 {
            return;
        }
        put_varint(out, self.zero);
        for figure in [self.sum, self.min, self.max] {
            out.extend_from_slice(&figure.to_le_bytes());
        }
        let mut previous = MIN_KEY;
        self.bins.visit(|key, n| {
            put_varint(out, (key - previous) as u64);
            put_varint(out, n);
            previous = key;
            true
        });
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut sketch = Self::new();
        sketch.merge_bytes(bytes)?;
        Ok(sketch)
    }

    /// Merges an encoded sketch without building it first: reads fold thousands of rows
    /// into one total, and this spares a sketch per row. The bytes are checked whole
    /// before anything is added, so a refused encoding leaves `self` as it was.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(header) = Header::read(bytes)? else {
            return Ok(());
        };
        DECODED.with_borrow_mut(|decoded| {
            decoded.clear();
            let mut binned: u64 = 0;
            header.bins.visit(|key, n| {
                binned = binned.saturating_add(n);
                decoded.push((key, n));
                true
            })?;
            if header.zero.checked_add(binned) != Some(header.count) {
                return Err(invalid("latency sketch counts do not add up".into()));
            }
            self.bins.merge_sorted(decoded);
            Ok(())
        })?;
        if self.count == 0 {
            self.min = header.min;
            self.max = header.max;
        } else {
            self.min = self.min.min(header.min);
            self.max = self.max.max(header.max);
        }
        self.count += header.count;
        self.zero += header.zero;
        self.sum += header.sum;
        Ok(())
    }
}

thread_local! {
    /// Bins decoded by `merge_bytes`, reused: a fold decodes a sketch per row.
    static DECODED: std::cell::RefCell<Vec<(i32, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The totals at the head of an encoded sketch, and a reader over its bins.
struct Header<'a> {
    count: u64,
    zero: u64,
    sum: f64,
    min: f64,
    max: f64,
    bins: EncodedBins<'a>,
}

impl<'a> Header<'a> {
    /// `None` for an empty sketch.
    fn read(bytes: &'a [u8]) -> Result<Option<Self>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut input = Reader { bytes, at: 0 };
        match input.byte()? {
            FORMAT_V1 => {}
            other => {
                return Err(invalid(format!(
                    "unknown latency sketch format {other}; it was written by another \
                     version of meshscope"
                )));
            }
        }
        let count = input.varint()?;
        if count == 0 {
            return input.end().map(|()| None);
        }
        let zero = input.varint()?;
        let sum = input.f64()?;
        let min = input.f64()?;
        let max = input.f64()?;
        Ok(Some(Header {
            count,
            zero,
            sum,
            min,
            max,
            bins: EncodedBins {
                bytes: &bytes[input.at..],
            },
        }))
    }
}

#[derive(Clone, Copy)]
struct EncodedBins<'a> {
    bytes: &'a [u8],
}

impl EncodedBins<'_> {
    /// Calls `f` with each bin in key order, refusing bins out of order or range.
    fn visit(&self, mut f: impl FnMut(i32, u64) -> bool) -> Result<()> {
        let mut input = Reader {
            bytes: self.bytes,
            at: 0,
        };
        let mut key = MIN_KEY;
        let mut first = true;
        while !input.done() {
            let step = input.varint()?;
            let n = input.varint()?;
            if (!first && step == 0) || n == 0 || step > (MAX_KEY - MIN_KEY) as u64 {
                return Err(invalid("latency sketch bins out of order".into()));
            }
            key += step as i32;
            if key > MAX_KEY {
                return Err(invalid("latency sketch bin out of range".into()));
            }
            first = false;
            if !f(key, n) {
                break;
            }
        }
        Ok(())
    }
}

fn invalid(reason: String) -> Error {
    Error::Sketch { reason }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn end(&self) -> Result<()> {
        if self.done() {
            Ok(())
        } else {
            Err(invalid("latency sketch has trailing bytes".into()))
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| invalid("latency sketch is cut short".into()))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(invalid("latency sketch varint too long".into()))
    }

    fn f64(&mut self) -> Result<f64> {
        let end = self.at + 8;
        let raw = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| invalid("latency sketch is cut short".into()))?;
        self.at = end;
        Ok(f64::from_le_bytes(raw.try_into().expect("eight bytes")))
    }
}
