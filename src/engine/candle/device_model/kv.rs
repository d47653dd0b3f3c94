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

    /// The same cache on `device` in `dtype`: a copy when that is another GPU or the other side
    /// of the CPU–GPU line (converted when the receiving model computes in another type, as a
    /// bf16 GPU prefill feeding an f32 CPU decode does), the cache itself otherwise (streams of
    /// one GPU share its memory).
    pub fn moved_to(self, device: &Device, dtype: DType) -> Result<DeviceKv> {
        let same_type = self.k.first().is_none_or(|t| t.dtype() == dtype);
        if self.device() == DeviceSpec::of(device) && same_type {
            return Ok(self);
        }
        let copy = |ts: &[Tensor]| ts.iter().map(|t| t.to_device(device)?.to_dtype(dtype)).collect::<Result<Vec<_>>>();
        let bytes_per_token = self.bytes_per_token / self.k[0].dtype().size_in_bytes() * dtype.size_in_bytes();
        Ok(DeviceKv { k: copy(&self.k)?, v: copy(&self.v)?, bytes_per_token, ..self })
    }
}

impl KvHandle for DeviceKv {
    fn bytes(&self) -> u64 {
        (self.len * self.bytes_per_token) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::candle::synthetic::SyntheticSpec;

    #[test]
    fn fills_in_place_and_converts_only_when_the_receiver_needs_it() {
        let c = SyntheticSpec::new("smollm2-135m", Some(2), 0).unwrap().config();
        let mut kv = DeviceKv::new(&c, 8, DType::F16, &Device::Cpu).unwrap();
        let rows = Tensor::arange(0f32, (3 * 3 * 64) as f32, &Device::Cpu).unwrap().reshape((3, 3, 64)).unwrap();
        let rows = rows.to_dtype(DType::F16).unwrap();
        for layer in 0..2 {
            kv.write(layer, &rows, &rows).unwrap();
        }
        kv.advance(3);
        assert_eq!(kv.bytes(), 3 * c.kv_bytes_per_token(2));
        // 3 + 6 positions > 8.
        let full = Tensor::zeros((3, 6, 64), DType::F16, &Device::Cpu).unwrap();
        assert!(kv.write(0, &full, &full).unwrap_err().to_string().contains("KV cache full"));
        let same = kv.moved_to(&Device::Cpu, DType::F16).unwrap();
        assert_eq!(same.k[0].dtype(), DType::F16);
        let f32 = same.moved_to(&Device::Cpu, DType::F32).unwrap();
        assert_eq!(f32.bytes(), 3 * c.kv_bytes_per_token(4));
        let (k, _) = f32.layer(1, 3).unwrap();
        assert_eq!(k.dtype(), DType::F32);
        let want = rows.to_dtype(DType::F32).unwrap();
        assert_eq!(
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
