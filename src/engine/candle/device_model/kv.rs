//! A request's KV cache as device tensors: per layer one K and one V tensor of
//! `[kv_heads, capacity, head_dim]`, allocated once for the request's whole life on the device of
//! the worker that admitted it and filled in place (`slice_set`), never regrown or copied.

use candle_core::{DType, Device, Result, Tensor};

use super::super::config::LlamaConfig;
use super::super::device::DeviceSpec;
use crate::engine::KvHandle;

#[derive(Debug)]
pub struct DeviceKv {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
    /// Bytes per token over all layers (K and V).
    bytes_per_token: usize,
}

impl DeviceKv {
    pub fn new(c: &LlamaConfig, capacity: usize, dtype: DType, device: &Device) -> Result<DeviceKv> {
        let zeros = || Tensor::zeros((c.kv_heads, capacity, c.head_dim), dtype, device);
        let k = (0..c.layers).map(|_| zeros()).collect::<Result<Vec<_>>>()?;
        let v = (0..c.layers).map(|_| zeros()).collect::<Result<Vec<_>>>()?;
        let bytes_per_token = c.kv_bytes_per_token(dtype.size_in_bytes()) as usize;
        Ok(DeviceKv { k, v, len: 0, capacity, bytes_per_token })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the cache lives.
    pub fn device(&self) -> DeviceSpec {
        self.k.first().map_or(DeviceSpec::Cpu, |t| DeviceSpec::of(t.device()))
    }

    /// Writes `k` and `v` (`[kv_heads, n, head_dim]`) of `layer` at positions `len..len+n`.
    /// Call [`DeviceKv::advance`] once every layer has its rows.
    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = k.dim(1)?;
        if self.len + n > self.capacity {
            candle_core::bail!("KV cache full: {} + {n} tokens > capacity {}", self.len, self.capacity);
        }
        self.k[layer].slice_set(k, 1, self.len)?;
        self.v[layer].slice_set(v, 1, self.len)
    }

    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// K and V of `layer`'s first `len` positions (views, no copy): `[kv_heads, len, head_dim]`.
    pub fn layer(&self, layer: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.k[layer].narrow(1, 0, len)?, self.v[layer].narrow(1, 0, len)?))
    }

    /// The same cache on `device`: a copy when that is another GPU or the other side of the
    /// CPU–GPU line, the cache itself otherwise (streams of one GPU share its memory).
    pub fn moved_to(self, device: &Device) -> Result<DeviceKv> {
        if self.device() == DeviceSpec::of(device) {
            return Ok(self);
        }
        let copy = |ts: &[Tensor]| ts.iter().map(|t| t.to_device(device)).collect::<Result<Vec<_>>>();
        Ok(DeviceKv { k: copy(&self.k)?, v: copy(&self.v)?, ..self })
    }
}

impl KvHandle for DeviceKv {
    fn bytes(&self) -> u64 {
        (self.len * self.bytes_per_token) as u64
    }
}
