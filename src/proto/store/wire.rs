//! The field codecs of the record payloads: length-prefixed strings and byte strings
//! (`str16`, `bytes32`, `bytes8`) and little-endian integers, each read with its length
//! checked against the bytes actually there before anything is allocated.

use super::record::RecordError;

pub(super) fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), RecordError> {
    let n = u16::try_from(s.len()).map_err(|_| RecordError::FieldTooLong)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

pub(super) fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) -> Result<(), RecordError> {
    let n = u32::try_from(b.len()).map_err(|_| RecordError::FieldTooLong)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A cursor over a payload; every read checks the bytes are there before taking them.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn text(&mut self, n: usize) -> Result<String, RecordError> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| RecordError::BadUtf8)?;
        Ok(s.to_owned())
    }

    pub(super) fn str16(&mut self) -> Result<String, RecordError> {
        let n = usize::from(u16::from_le_bytes(self.array()?));
        self.text(n)
    }

    pub(super) fn str32(&mut self) -> Result<String, RecordError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.text(n)
    }
}
