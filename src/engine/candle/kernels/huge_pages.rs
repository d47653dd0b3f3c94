//! Weight storage on transparent huge pages (2 MiB), for pdsim's own kernels.
//!
//! Why: on the KVM guest this was measured on (a 2-vCPU Xeon with AMX), reading memory that sat
//! untouched for a while cost about 6 µs per 4 KiB page on first touch, and the share of pages that
//! pay grew with the pause: reading 160 MiB took 16 ms back to back, 34–36 ms after 1 s idle and
//! 165–244 ms after 8 s (the host appears to unmap idle guest pages from its page tables, so each
//! touch exits to it). On 2 MiB pages the same reads took 11 ms back to back and 20 ms after 8 s:
//! 512 times fewer pages to map back. A step reads every weight: in interleaved runs a one-thread
//! 64-token prefill after 2.8 s or more idle took 477–497 ms with the weights on 4 KiB pages and
//! 129–144 ms on huge pages (76–88 ms after 0.2 s). Serving engines keep their weights in memory
//! allocated once for the purpose (a GPU's), which does not pay this.
//!
//! The weights are copied at load time into a few large mappings (an [`Arena`]) advised with
//! `MADV_HUGEPAGE`: one per matrix would round each of the model's sub-2 MiB matrices up to a
//! whole huge page. Elsewhere than Linux, or when mapping fails, the arena's chunks are plain
//! heap allocations and everything works as before.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A transparent huge page.
const HUGE_PAGE: usize = 2 << 20;
/// An arena maps this much at a time (untouched huge pages take no memory).
const CHUNK: usize = 64 << 20;
/// Where each stored slice starts (a cache line: the kernels load whole vectors).
const ALIGN: usize = 64;

/// Memory a chunk holds: mapped (and advised to use huge pages) or from the heap.
pub struct Chunk {
    ptr: *mut u8,
    len: usize,
    mapped: bool,
}

// Safety: a chunk is plain memory; after `Arena::store` writes a slice, it is only read.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(len: usize) -> Chunk {
        #[cfg(target_os = "linux")]
        if let Some(ptr) = map_huge(len) {
            return Chunk { ptr, len, mapped: true };
        }
        let layout = std::alloc::Layout::from_size_align(len.max(1), ALIGN).expect("a valid chunk size");
        // Safety: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Chunk { ptr, len, mapped: false }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if self.mapped {
            // Safety: `map_huge` mapped exactly this range for this chunk alone.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
            return;
        }
        let layout = std::alloc::Layout::from_size_align(self.len.max(1), ALIGN).expect("a valid chunk size");
        // Safety: allocated in `Chunk::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

/// `len` bytes (a multiple of [`HUGE_PAGE`]) mapped at a huge page boundary and advised to use
/// huge pages; `None` when the kernel refuses the mapping. The advice may be refused too (THP
/// set to `never`): the memory then works on small pages.
#[cfg(target_os = "linux")]
fn map_huge(len: usize) -> Option<*mut u8> {
    // Map a huge page more than asked, and give back what lies outside the aligned range.
    let span = len + HUGE_PAGE;
    // Safety: an anonymous private mapping at an address the kernel chooses.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    // Safety: both ranges lie in the mapping just made and outside [aligned, aligned + len).
    unsafe {
        if aligned > start {
            libc::munmap(raw, aligned - start);
        }
        let tail = start + span - (aligned + len);
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    Some(aligned as *mut u8)
}

/// Where a model's weights are copied as it loads: slices packed one after another into large
/// chunks. Dropping the arena keeps every slice it gave: each holds its chunk.
#[derive(Default)]
pub struct Arena {
    /// The chunk being filled and how many of its bytes are taken.
    current: RefCell<Option<(Arc<Chunk>, usize)>>,
}

impl Arena {
    pub fn new() -> Arena {
        Arena::default()
    }

    /// A copy of `data` in the arena.
    pub fn store<T: Copy>(&self, data: &[T]) -> Stored<T> {
        assert!(std::mem::align_of::<T>() <= ALIGN);
        let bytes = std::mem::size_of_val(data);
        let mut current = self.current.borrow_mut();
        let fits = current.as_ref().is_some_and(|(chunk, used)| used + bytes <= chunk.len);
        if !fits {
            *current = Some((Arc::new(Chunk::new(bytes.max(CHUNK).next_multiple_of(HUGE_PAGE))), 0));
        }
        let (chunk, used) = current.as_mut().expect("a chunk with room");
        // Safety: [used, used + bytes) lies in the chunk (checked above) and no other slice
        // was given it; the source is a valid slice of `bytes` bytes, and the start is aligned
        // for T (ALIGN is a multiple of T's alignment).
        let ptr = unsafe {
            let dst = chunk.ptr.add(*used);
            std::ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), dst, bytes);
            dst.cast::<T>()
        };
        *used = (*used + bytes).next_multiple_of(ALIGN);
        Stored::Arena { ptr, len: data.len(), chunk: Arc::clone(chunk) }
    }

    /// Whether the chunk being filled is mapped for huge pages, and its size (for tests).
    #[cfg(test)]
    fn mapped(&self) -> (bool, usize) {
        self.current.borrow().as_ref().map_or((false, 0), |(c, _)| (c.mapped, c.len))
    }
}

/// A read-only slice of weights: in an [`Arena`], or a plain vector (as a matrix is built, and
/// for matrices that were never moved into one).
pub enum Stored<T> {
    Heap(Vec<T>),
    /// `len` values at `ptr`, inside `chunk` (which this keeps alive).
    Arena {
        ptr: *const T,
        len: usize,
        chunk: Arc<Chunk>,
    },
}

// Safety: the values are never written after they are stored, and a chunk is Send + Sync; the
// raw pointer is all that keeps the compiler from deriving these, as for a Vec<T>.
unsafe impl<T: Send + Sync> Send for Stored<T> {}
unsafe impl<T: Sync> Sync for Stored<T> {}

impl<T> From<Vec<T>> for Stored<T> {
    fn from(heap: Vec<T>) -> Stored<T> {
        Stored::Heap(heap)
    }
}

impl<T> Deref for Stored<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Stored::Heap(v) => v,
            // Safety: `ptr` and `len` describe the slice `Arena::store` copied into `chunk`,
            // which this value keeps alive.
            Stored::Arena { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl<T: Clone> Clone for Stored<T> {
    fn clone(&self) -> Stored<T> {
        match self {
            Stored::Heap(v) => Stored::Heap(v.clone()),
            Stored::Arena { ptr, len, chunk } => Stored::Arena { ptr: *ptr, len: *len, chunk: Arc::clone(chunk) },
        }
    }
}

impl<T> fmt::Debug for Stored<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if matches!(self, Stored::Arena { .. }) { "in an arena" } else { "on the heap" };
        write!(f, "{} values {place}", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_of<T>(s: &Stored<T>) -> *const Chunk {
        match s {
            Stored::Arena { chunk, .. } => Arc::as_ptr(chunk),
            Stored::Heap(_) => panic!("stored in an arena"),
        }
    }

    #[test]
    fn stored_slices_read_back_what_was_stored_and_outlive_the_arena() {
        let arena = Arena::new();
        let a: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
        let b: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
        let (sa, sb) = (arena.store(&a), arena.store(&b));
        // One chunk, the second slice aligned after the first.
        assert_eq!(chunk_of(&sa), chunk_of(&sb.clone()));
        assert_eq!(sb.as_ptr() as usize % ALIGN, 0);
        #[cfg(target_os = "linux")]
        assert_eq!(arena.mapped(), (true, CHUNK), "mapped for huge pages");
        // Larger than a chunk: a chunk of its own, rounded up to whole huge pages.
        let big = vec![7u16; CHUNK / 2 + 1];
        let sbig = arena.store(&big);
        assert_eq!(arena.mapped().1, (CHUNK + 2).next_multiple_of(HUGE_PAGE));
        drop(arena);
        let copy = sb.clone();
        drop(sb);
        assert_eq!(&*sa, &a[..]);
        assert_eq!(&*copy, &b[..]);
        assert_eq!(&*sbig, &big[..]);
        // A plain vector reads the same.
        assert_eq!(&*Stored::from(a.clone()), &a[..]);
        assert_eq!(&*Stored::from(a.clone()).clone(), &a[..]);
        assert!(Arena::new().store::<u8>(&[]).is_empty());
    }
}
