//! What a [`super::engine::CandleEngine`] computes with, behind one trait: the CPU model with
//! pdsim's own kernels ([`Model`]), or the tensor model on a worker's device ([`DeviceNet`]
//! with the worker's own stream, [`WorkerNet`]).

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Result};

use super::device::DeviceSpec;
use super::device_model::kv::DeviceKv;
use super::device_model::{DeviceLlama, DeviceSeq};
use super::kv_cache::KvCache;
use super::model::{rows, SeqInput};
use super::synthetic::SyntheticSpec;
use super::{LoadError, Model};
use crate::engine::KvHandle;

pub trait Forward: Send + Sync + Unpin + 'static {
    type Kv: KvHandle + Debug;

    /// A cache for one request of up to `capacity` tokens.
    fn new_kv(&self, capacity: usize) -> Result<Self::Kv>;

    /// Runs each sequence's tokens, appending to its cache; the logits after each one's last token.
    fn forward(&self, seqs: &mut [(&[u32], &mut Self::Kv)]) -> Result<Vec<Vec<f32>>>;

    fn eos(&self) -> Option<u32>;

    /// The text of generated ids; `None` for a model without a tokenizer (synthetic).
    fn text(&self, ids: &[u32]) -> Option<String>;

    /// Makes a cache received from another worker usable here (a copy only across devices).
    fn receive(&self, kv: Self::Kv) -> Result<Self::Kv> {
        Ok(kv)
    }
}

/// Workers share a model through an `Arc`.
impl<F: Forward> Forward for Arc<F> {
    type Kv = F::Kv;

    fn new_kv(&self, capacity: usize) -> Result<F::Kv> {
        (**self).new_kv(capacity)
    }

    fn forward(&self, seqs: &mut [(&[u32], &mut F::Kv)]) -> Result<Vec<Vec<f32>>> {
        (**self).forward(seqs)
    }

    fn eos(&self) -> Option<u32> {
        (**self).eos()
    }

    fn text(&self, ids: &[u32]) -> Option<String> {
        (**self).text(ids)
    }

    fn receive(&self, kv: F::Kv) -> Result<F::Kv> {
        (**self).receive(kv)
    }
}

/// The CPU model ([`super::model::Llama`], pdsim's own kernels) with its tokenizer.
impl Forward for Model {
    type Kv = KvCache;

    fn new_kv(&self, capacity: usize) -> Result<KvCache> {
        self.llama.new_kv(capacity)
    }

    fn forward(&self, seqs: &mut [(&[u32], &mut KvCache)]) -> Result<Vec<Vec<f32>>> {
        let mut inputs: Vec<SeqInput> = seqs.iter_mut().map(|(tokens, kv)| SeqInput { tokens, kv }).collect();
        rows(&self.llama.forward(&mut inputs)?)
    }

    fn eos(&self) -> Option<u32> {
        self.llama.config.eos
    }

    fn text(&self, ids: &[u32]) -> Option<String> {
        self.decode(ids).ok()
    }
}

/// A tensor model on one device, shared by the workers there, with its tokenizer (none for a
/// synthetic model).
pub struct DeviceNet {
    pub llama: DeviceLlama,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// What the model is: a file, or `synthetic <shape>`.
    pub label: String,
}

/// A worker's view of a [`DeviceNet`]: the worker's own device handle (its CUDA stream).
#[derive(Clone)]
pub struct WorkerNet {
    pub net: Arc<DeviceNet>,
    pub device: Device,
}

impl WorkerNet {
    /// A worker on `spec` (a stream of its own there) computing with `net`.
    pub fn open(net: Arc<DeviceNet>, spec: DeviceSpec) -> Result<WorkerNet> {
        Ok(WorkerNet { net, device: spec.open()? })
    }
}

impl Forward for WorkerNet {
    type Kv = DeviceKv;

    fn new_kv(&self, capacity: usize) -> Result<DeviceKv> {
        self.net.llama.new_kv(capacity, &self.device)
    }

    fn forward(&self, seqs: &mut [(&[u32], &mut DeviceKv)]) -> Result<Vec<Vec<f32>>> {
        let mut inputs: Vec<DeviceSeq> = seqs.iter_mut().map(|(tokens, kv)| DeviceSeq { tokens, kv }).collect();
        self.net.llama.forward(&self.device, &mut inputs)
    }

    fn eos(&self) -> Option<u32> {
        self.net.llama.config.eos
    }

    fn text(&self, ids: &[u32]) -> Option<String> {
        super::tokenizer::decode(self.net.tokenizer.as_ref()?, ids).ok()
    }

    fn receive(&self, kv: DeviceKv) -> Result<DeviceKv> {
        kv.moved_to(&self.device, self.net.llama.dtype)
    }
}

impl DeviceNet {
    /// A GGUF file's model in `dtype` on `home`, with its tokenizer.
    pub fn from_file(path: &Path, dtype: DType, home: DeviceSpec) -> std::result::Result<DeviceNet, LoadError> {
        let (llama, content) = DeviceLlama::from_gguf(path, dtype, home)?;
        let tokenizer = super::tokenizer::load(path, &content.metadata)?;
        Ok(DeviceNet { llama, tokenizer: Some(tokenizer), label: path.display().to_string() })
    }

    /// Seeded random weights of `spec`'s shape in `dtype` on `home`: no tokenizer, no text.
    pub fn synthetic(spec: &SyntheticSpec, dtype: DType, home: DeviceSpec) -> Result<DeviceNet> {
        let llama = DeviceLlama::synthetic(spec, dtype, home)?;
        Ok(DeviceNet { llama, tokenizer: None, label: spec.describe() })
    }

    /// e.g. `synthetic llama-2-7b, bf16 on cuda:0`.
    pub fn describe(&self) -> String {
        format!("{}, {} on {}", self.label, dtype_name(self.llama.dtype), self.llama.home)
    }
}

pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        _ => "other",
    }
}
