//! pdsim's own CPU kernels where candle's are the bottleneck.
//!
//! - [`q8`]: an 8-bit weight matrix multiplied by 8-bit quantized activations, weight-stationary:
//!   each weight row is read from memory once per step and used against every activation row,
//!   so a decode batch of 16 costs little more memory traffic than a batch of 1 (candle's
//!   quantized matmul streams the whole matrix once per activation row).
//! - [`bf16`]: a bf16 weight matrix for prompt rows (AVX-512 BF16 dot products).
//! - [`attention`]: decode attention (one query per sequence) over the per-request caches, all
//!   sequences and heads in one parallel pass instead of a dozen small tensor ops per sequence.
//! - [`prompt_attention`]: causal attention of prompt tokens over the same caches, in register
//!   tiles (candle's tensor path took a third of a long prefill).
//! - [`exp`]: the exponential on 16 lanes (AVX-512) or 8 (AVX2), for attention's softmax and
//!   the SwiGLU activation.
//! - [`tiles`]: the parallel driver the matrix kernels share; [`cpu`]: which path the CPU takes.
//! - [`huge_pages`]: where the matrices keep their weights once loaded (an arena on 2 MiB pages).

pub mod attention;
pub mod bf16;
pub mod cpu;
pub mod exp;
pub mod huge_pages;
pub mod prompt_attention;
pub mod q8;
pub mod tiles;
