//! The little-endian binary encoding shared by the write-ahead log and snapshots.

use super::store::{Item, Metadata};

/// Appends values to a byte buffer.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    pub fn floats(&mut self, values: &[f32]) {
        self.bytes.reserve(values.len() * 4);
        for v in values {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn metadata(&mut self, metadata: &Metadata) {
        self.u32(metadata.len() as u32);
        for (k, v) in metadata {
            self.str(k);
            self.str(v);
        }
    }

    pub fn item(&mut self, item: &Item) {
        self.str(&item.id);
        self.metadata(&item.metadata);
        self.floats(&item.vector);
        match &item.text {
            Some(text) => {
                self.u8(1);
                self.str(text);
            }
            None => self.u8(0),
        }
    }
}

/// Reads values back; every read fails cleanly on truncated or malformed input.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed(format!(
                "{n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn str(&mut self) -> Result<String, Malformed> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| Malformed(e.to_string()))
    }

    pub fn floats(&mut self, count: usize) -> Result<Vec<f32>, Malformed> {
        let bytes = self.take(count.checked_mul(4).ok_or(Malformed("length".into()))?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    pub fn metadata(&mut self) -> Result<Metadata, Malformed> {
        let count = self.u32()?;
        (0..count).map(|_| Ok((self.str()?, self.str()?))).collect()
    }

    pub fn item(&mut self, dim: usize) -> Result<Item, Malformed> {
        let mut item = self.item_without_text(dim)?;
        item.text = match self.u8()? {
            0 => None,
            1 => Some(self.str()?),
            other => return Err(Malformed(format!("text flag {other}"))),
        };
        Ok(item)
    }

    /// An item as clipd wrote it before items kept their text (WAL record kind 1, snapshots
    /// `CLIPDSN1`), so that collections written then still open.
    pub fn item_without_text(&mut self, dim: usize) -> Result<Item, Malformed> {
        Ok(Item {
            id: self.str()?,
            metadata: self.metadata()?,
            vector: self.floats(dim)?,
            text: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_truncation_is_an_error() {
        for text in [None, Some("a cat".to_string())] {
            let item = Item {
                id: "a/b.jpg".into(),
                metadata: [("k".to_string(), "é".to_string())].into(),
                vector: vec![0.6, -0.8],
                text,
            };
            let mut w = Writer::default();
            w.item(&item);
            w.u64(7);
            let mut r = Reader::new(&w.bytes);
            assert_eq!(r.item(2).unwrap(), item);
            assert_eq!(r.u64().unwrap(), 7);
            assert!(r.is_empty());
            for cut in 0..w.bytes.len() - 8 {
                assert!(
                    Reader::new(&w.bytes[..cut]).item(2).is_err(),
                    "cut at {cut}"
                );
            }
        }
    }

    /// The layout before texts were kept: id, metadata, vector, nothing after.
    #[test]
    fn items_written_before_texts_were_kept_still_read() {
        let mut w = Writer::default();
        w.str("old");
        w.metadata(&Metadata::new());
        w.floats(&[1.0, 0.0]);
        let mut r = Reader::new(&w.bytes);
        let item = r.item_without_text(2).unwrap();
        assert_eq!((item.id.as_str(), item.text), ("old", None));
        assert!(r.is_empty());
    }
}
