//! The read buffer: one per worker thread, shared by every connection the
//! thread drives, so an idle connection holds no read buffer at all.

use std::cell::RefCell;

/// Size of a worker thread's read buffer: big enough that a busy stream
/// is read in few system calls.
pub(crate) const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's read buffer. The borrow never crosses an
/// `.await` (callers are synchronous); should it ever be re-entered, a
/// temporary buffer is used instead of panicking.
pub(crate) fn with<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < SCRATCH_SIZE {
                buf.resize(SCRATCH_SIZE, 0);
            }
            f(&mut buf)
        }
        Err(_) => f(&mut vec![0; SCRATCH_SIZE]),
    })
}
