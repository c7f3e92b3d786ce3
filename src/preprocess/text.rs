//! Text to CLIP token ids with the checkpoint's `tokenizer.json`, as `transformers`'
//! `tokenizer(text, truncation=True, max_length=context_length)` produces them.

use std::path::Path;

use tch::Tensor;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::InputError;
use crate::files::FileError;

/// Token ids of one text, start and end tokens included, not padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<i64>,
    /// The text had more tokens than the model's context length; the tail was cut, the end-of-text
    /// token kept.
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    context_length: usize,
    max_text_bytes: usize,
    pad_id: i64,
}

/// CLIP pads with its end-of-text token; the model never reads past the first one.
const END_OF_TEXT: &str = "<|endoftext|>";

impl ClipTokenizer {
    pub fn from_file(
        path: &Path,
        context_length: usize,
        max_text_bytes: usize,
    ) -> Result<Self, FileError> {
        let error = |reason: String| FileError::Invalid {
            path: path.to_owned(),
            reason: format!("cannot load the tokenizer: {reason}"),
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| error(e.to_string()))?;
        tokenizer.with_padding(None);
        // Truncation before the start/end tokens are added, so that the end token survives.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| error(e.to_string()))?;
        let pad_id = tokenizer
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| error(format!("the vocabulary has no {END_OF_TEXT} token")))?;
        Ok(Self {
            tokenizer,
            context_length,
            max_text_bytes,
            pad_id: i64::from(pad_id),
        })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The highest token id the tokenizer can produce, added tokens included.
    pub fn max_token_id(&self) -> u32 {
        self.tokenizer
            .get_vocab(true)
            .into_values()
            .max()
            .unwrap_or(0)
    }

    pub fn encode(&self, text: &str) -> Result<TokenizedText, InputError> {
        if text.len() > self.max_text_bytes {
            return Err(InputError::TextTooLong {
                size: text.len(),
                limit: self.max_text_bytes,
            });
        }
        self.encode_without_limit(text)
    }

    /// As `encode`, for the server's own texts, which the limit on requests does not apply to.
    pub fn encode_without_limit(&self, text: &str) -> Result<TokenizedText, InputError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| InputError::Tokenize(e.to_string()))?;
        Ok(TokenizedText {
            ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }

    /// `[batch, longest]` int64 ids, right-padded.
    pub fn batch(&self, texts: &[&TokenizedText]) -> Tensor {
        let longest = texts.iter().map(|t| t.ids.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; texts.len() * longest];
        for (row, text) in ids.chunks_exact_mut(longest.max(1)).zip(texts) {
            row[..text.ids.len()].copy_from_slice(&text.ids);
        }
        Tensor::from_slice(&ids).view([texts.len() as i64, longest as i64])
    }
}
