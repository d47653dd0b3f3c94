//! A request's KV cache: one K and one V tensor per layer, allocated once for the request's
//! whole life (prompt + output tokens), filled in place as tokens are processed. Nothing is
//! copied as the cache grows; attention reads a narrowed view.

use candle_core::{DType, Device, Result, Tensor};

use crate::engine::KvHandle;

/// The KV of one request, owned by whoever holds the request: the worker's engine, or a
/// `KvHandoff` message in flight.
#[derive(Debug)]
pub struct KvCache {
    /// Per layer: K and V, each `[kv_heads, capacity, head_dim]`.
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
    bytes_per_token: u64,
    /// Output tokens so far (the last one is the next decode step's input).
    pub generated: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<KvCache> {
        let mk = || Tensor::zeros((kv_heads, capacity, head_dim), DType::F32, device);
        let layers = (0..layers).map(|_| Ok((mk()?, mk()?))).collect::<Result<Vec<_>>>()?;
        let bytes_per_token = (2 * layers.len() * kv_heads * head_dim * DType::F32.size_in_bytes()) as u64;
        Ok(KvCache { layers, len: 0, capacity, bytes_per_token, generated: Vec::new() })
    }

    /// Tokens stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes `k`, `v` (`[kv_heads, n, head_dim]`) for `layer` at the current end, and returns
    /// views of the whole cache including them. Call [`KvCache::advance`] once all layers have.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(1)?;
        if self.len + n > self.capacity {
            candle_core::bail!("KV cache full: {} + {n} tokens > capacity {}", self.len, self.capacity);
        }
        let (ck, cv) = &self.layers[layer];
        ck.slice_set(k, 1, self.len)?;
        cv.slice_set(v, 1, self.len)?;
        Ok((ck.narrow(1, 0, self.len + n)?, cv.narrow(1, 0, self.len + n)?))
    }

    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

impl KvHandle for KvCache {
    fn bytes(&self) -> u64 {
        self.len as u64 * self.bytes_per_token
    }
}
