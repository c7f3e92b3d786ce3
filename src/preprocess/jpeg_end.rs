//! Whether a JPEG stream is complete. The JPEG decoder fills a cut-off file with grey and reports
//! success; Pillow (and so `transformers`) rejects such a file as truncated, and a cut-off upload
//! is almost always a broken transfer that should not be silently embedded.

const MARKER: u8 = 0xFF;
const END_OF_IMAGE: u8 = 0xD9;
const START_OF_SCAN: u8 = 0xDA;

/// Markers that stand alone, without a length field: TEM and the restart markers.
fn stands_alone(marker: u8) -> bool {
    marker == 0x01 || (0xD0..=0xD7).contains(&marker)
}

/// Walks the marker segments from the start of the image to its end-of-image marker, skipping
/// each segment by its length (so thumbnails inside APP segments are not mistaken for the end)
/// and each scan's entropy-coded data to the next marker. Anything after the end (trailers,
/// a second picture) is not read.
pub fn is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[MARKER, 0xD8]) {
        return false;
    }
    let mut pos = 2;
    loop {
        // Like libjpeg, skip stray bytes before a marker (it warns, decodes on), and any number
        // of fill bytes (0xFF).
        while bytes.get(pos).is_some_and(|&b| b != MARKER) {
            pos += 1;
        }
        while bytes.get(pos) == Some(&MARKER) && bytes.get(pos + 1) == Some(&MARKER) {
            pos += 1;
        }
        let (Some(&MARKER), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return false;
        };
        pos += 2;
        if marker == END_OF_IMAGE {
            return true;
        }
        if stands_alone(marker) {
            continue;
        }
        let Some(length) = bytes.get(pos..pos + 2) else {
            return false;
        };
        pos += usize::from(u16::from_be_bytes([length[0], length[1]]));
        if marker == START_OF_SCAN {
            // Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or a restart marker inside
            // it; any other marker ends it.
            loop {
                match (bytes.get(pos), bytes.get(pos + 1)) {
                    (Some(&MARKER), Some(&next))
                        if next != 0 && !stands_alone(next) && next != MARKER =>
                    {
                        break
                    }
                    (Some(_), Some(_)) => pos += 1,
                    _ => return false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const SOI: &[u8] = &[0xFF, 0xD8];
    const EOI: &[u8] = &[0xFF, 0xD9];
    const APP0: &[u8] = &[0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
    const SOS: &[u8] = &[0xFF, 0xDA, 0x00, 0x03, 0x01];
    const DATA: &[u8] = &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56];

    #[test]
    fn a_whole_stream_is_complete() {
        assert!(is_complete(&jpeg(&[SOI, APP0, SOS, DATA, EOI])));
        assert!(is_complete(&jpeg(&[
            SOI, APP0, SOS, DATA, SOS, DATA, EOI, b"trailer"
        ])));
    }

    #[test]
    fn a_stream_cut_anywhere_is_not() {
        let whole = jpeg(&[SOI, APP0, SOS, DATA, EOI]);
        for cut in 0..whole.len() {
            assert!(!is_complete(&whole[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn stray_bytes_between_segments_are_skipped_as_libjpeg_does() {
        assert!(is_complete(&jpeg(&[
            SOI,
            APP0,
            &[0x00, 0x17],
            SOS,
            DATA,
            EOI
        ])));
    }

    #[test]
    fn an_end_marker_inside_a_segment_does_not_count() {
        // An APP1 segment holding a thumbnail's end-of-image marker, then a cut-off scan.
        let app1: &[u8] = &[0xFF, 0xE1, 0x00, 0x04, 0xFF, 0xD9];
        assert!(!is_complete(&jpeg(&[SOI, app1, SOS, DATA])));
        assert!(is_complete(&jpeg(&[SOI, app1, SOS, DATA, EOI])));
    }
}
