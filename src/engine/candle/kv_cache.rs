//! A request's KV cache: one K and one V buffer per layer, allocated once for the request's
//! whole life (prompt + output tokens), filled in place as tokens are processed. Nothing is
//! copied as the cache grows.

use candle_core::Result;

use crate::engine::KvHandle;

/// The KV of one request, owned by whoever holds the request: the worker's engine, or a
/// `KvHandoff` message in flight.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: K and V, each `[kv_heads × capacity × head_dim]` f32.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> KvCache {
        let size = kv_heads * capacity * head_dim;
        let layers = (0..layers).map(|_| (vec![0f32; size], vec![0f32; size])).collect();
        KvCache { layers, kv_heads, head_dim, len: 0, capacity }
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

    /// Writes `n` tokens' K and V rows (`[n × kv_heads·head_dim]`, token-major) for `layer` at
    /// positions `len..len+n`. Call [`KvCache::advance`] once every layer has its rows.
    pub fn write(&mut self, layer: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (h, d) = (self.kv_heads, self.head_dim);
        let n = k.len() / (h * d);
        if self.len + n > self.capacity {
            candle_core::bail!("KV cache full: {} + {n} tokens > capacity {}", self.len, self.capacity);
        }
        let (ck, cv) = &mut self.layers[layer];
        for t in 0..n {
            for head in 0..h {
                let src = (t * h + head) * d;
                let dst = (head * self.capacity + self.len + t) * d;
                ck[dst..dst + d].copy_from_slice(&k[src..src + d]);
                cv[dst..dst + d].copy_from_slice(&v[src..src + d]);
            }
        }
        Ok(())
    }

    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The raw buffers of `layer`.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }
}

impl KvHandle for KvCache {
    fn bytes(&self) -> u64 {
        (self.len * 2 * self.layers.len() * self.kv_heads * self.head_dim * std::mem::size_of::<f32>()) as u64
    }
}
