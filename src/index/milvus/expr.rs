//! Milvus boolean expressions built from request data so that no value can change the
//! expression: every id, metadata key and value is written as a string literal in which quotes,
//! backslashes, control characters and every non-ASCII character are escaped, so the parser
//! reads each one back as data and nothing else. Milvus unquotes literals as Go does: `\uXXXX`
//! for a character of the Basic Multilingual Plane, `\UXXXXXXXX` beyond it (a UTF-16 surrogate
//! pair, as JSON writes it, is refused as invalid syntax).

use crate::index::Metadata;

/// The field that holds an item's metadata (a JSON object).
pub const METADATA: &str = "metadata";
/// The primary key.
pub const ID: &str = "id";

/// `text` as a double-quoted literal of Milvus' expression language: printable ASCII as it is
/// (but `"` and `\\`), everything else as its code point.
pub fn literal(text: &str) -> String {
    quoted(text, true)
}

/// A metadata key inside `metadata[...]`: Milvus takes the characters of a JSON path's key as
/// they are written, without unquoting code points (measured on 2.3.5: `metadata["\u00e9"]`
/// never matches the key "é"), so non-ASCII characters stay as they are; quotes, backslashes
/// and control characters are escaped as in values, which keeps the key one token.
fn key_literal(key: &str) -> String {
    quoted(key, false)
}

fn quoted(text: &str, escape_non_ascii: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if !escape_non_ascii && !c.is_control() => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// Items whose metadata holds every pair of `filter`; None for an empty filter.
pub fn metadata_filter(filter: &Metadata) -> Option<String> {
    let clauses: Vec<String> = filter
        .iter()
        .map(|(key, value)| format!("{METADATA}[{}] == {}", key_literal(key), literal(value)))
        .collect();
    (!clauses.is_empty()).then(|| clauses.join(" && "))
}

/// Items with one of these ids.
pub fn ids_in(ids: &[String]) -> String {
    let listed: Vec<String> = ids.iter().map(|id| literal(id)).collect();
    format!("{ID} in [{}]", listed.join(", "))
}

/// Both expressions, either of which may be absent.
pub fn and(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("({a}) && ({b})")),
        (one, None) | (None, one) => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a literal back as Go's strconv.Unquote (which Milvus uses) does, for the escapes
    /// `literal` writes.
    fn unquote(literal: &str) -> String {
        let inner = literal
            .strip_prefix('"')
            .unwrap()
            .strip_suffix('"')
            .unwrap();
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            assert_ne!(
                c, '"',
                "an unescaped quote ends the literal early: {literal}"
            );
            if c != '\\' {
                out.push(c);
                continue;
            }
            let hex = |n: usize, chars: &mut std::str::Chars| {
                let digits: String = chars.take(n).collect();
                char::from_u32(u32::from_str_radix(&digits, 16).unwrap()).unwrap()
            };
            match chars.next().unwrap() {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'u' => out.push(hex(4, &mut chars)),
                'U' => out.push(hex(8, &mut chars)),
                other => panic!("an escape Milvus may not read: \\{other}"),
            }
        }
        out
    }

    #[test]
    fn literals_escape_everything_that_could_end_them() {
        assert_eq!(literal("plain"), "\"plain\"");
        assert_eq!(literal("x\" || id != \""), "\"x\\\" || id != \\\"\"");
        assert_eq!(literal("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(literal("new\nline"), "\"new\\u000aline\"");
        assert_eq!(literal("é"), "\"\\u00e9\"");
        assert_eq!(literal("🍎"), "\"\\U0001f34e\"");
        assert_eq!(literal("a' or 1==1"), "\"a' or 1==1\"");
    }

    #[test]
    fn a_literal_reads_back_as_its_text() {
        for text in [
            "x\" || id != \"",
            "]) || (",
            "\\\"",
            "tab\there",
            "日本",
            "🍎\u{0}",
            "",
        ] {
            assert_eq!(unquote(&literal(text)), text);
        }
    }

    #[test]
    fn filters_and_id_lists_quote_every_piece() {
        let filter: Metadata = [("k\"]".to_owned(), "v".to_owned())].into_iter().collect();
        assert_eq!(
            metadata_filter(&filter).unwrap(),
            "metadata[\"k\\\"]\"] == \"v\""
        );
        assert_eq!(metadata_filter(&Metadata::new()), None);
        assert_eq!(
            ids_in(&["a".into(), "b\"".into()]),
            "id in [\"a\", \"b\\\"\"]"
        );
        assert_eq!(and(Some("a".into()), None).unwrap(), "a");
        assert_eq!(
            and(Some("a".into()), Some("b".into())).unwrap(),
            "(a) && (b)"
        );
    }
}
