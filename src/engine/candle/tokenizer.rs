//! The tokenizer, built from the GGUF file's own metadata (a `tokenizer.json` beside the model
//! is used instead when present).
//!
//! For `tokenizer.ggml.model = "gpt2"` (byte-level BPE, as SmolLM2): the vocabulary and merges
//! from the metadata, the GPT-2 byte-level pre-tokenizer with its regex and no prefix space,
//! the byte-level decoder, and every control token (token type 3) as a special added token,
//! matched in text even when encoding without adding special tokens.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::LoadError;

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`, …).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// Loads `tokenizer.json` from `model_dir` when present, else builds from `metadata`.
pub fn load(model_path: &Path, metadata: &HashMap<String, Value>) -> Result<Tokenizer, LoadError> {
    if let Some(json) = model_path.parent().map(|d| d.join("tokenizer.json")).filter(|p| p.exists()) {
        return Tokenizer::from_file(&json).map_err(|e| LoadError::Tokenizer(format!("{}: {e}", json.display())));
    }
    from_gguf(metadata)
}

pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Tokenizer, LoadError> {
    let err = |m: String| LoadError::Tokenizer(m);
    let model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer model `{model}` is not supported from GGUF metadata (byte-level BPE `gpt2` is); put a tokenizer.json beside the model"
        )));
    }
    let strings = |key: &str| -> Result<Vec<String>, LoadError> {
        let v = md.get(key).ok_or_else(|| err(format!("missing `{key}`")))?;
        v.to_vec()
            .map_err(|e| err(format!("`{key}`: {e}")))?
            .iter()
            .map(|x| x.to_string().cloned().map_err(|e| err(format!("`{key}`: {e}"))))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| err(format!("bad merge `{m}`")))
        })
        .collect::<Result<_, _>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| err(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type").and_then(|v| v.to_vec().ok()) {
        Some(v) => v.iter().map(|x| x.to_i32().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(&special);
    Ok(tok)
}

/// Token ids of `text`, without adding special tokens (special tokens written in the text are
/// still recognised).
pub fn encode(t: &Tokenizer, text: &str) -> Result<Vec<u32>, LoadError> {
    t.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| LoadError::Tokenizer(e.to_string()))
}

pub fn decode(t: &Tokenizer, ids: &[u32]) -> Result<String, LoadError> {
    t.decode(ids, false).map_err(|e| LoadError::Tokenizer(e.to_string()))
}
