//! Log lines to stderr, gathered per worker thread and written a few milliseconds later.
//!
//! Every relayed message logs several lines; one `write` each cost a proxy under load a
//! syscall per line. A worker that calls [`batch_this_thread`] keeps its lines in a buffer,
//! and the task [`write_batches`] on its runtime wakes at the first line, waits
//! [`FLUSH_DELAY`] for more and writes them all in one call: a line reaches the log within
//! milliseconds (fail2ban reads it in seconds), an idle worker has no timer running, and a
//! buffer past [`FLUSH_AT`] bytes is written at once. Flushing each time the worker parked was
//! tried first: under load a worker parks between nearly every event, so it saved little.
//! Other threads write each line straight through.

use std::cell::RefCell;
use std::io::Write;
use std::task::{Poll, Waker};
use std::time::Duration;

/// A buffer this large is written at once.
pub const FLUSH_AT: usize = 16 << 10;
/// How long the first line waits for others to share its write.
pub const FLUSH_DELAY: Duration = Duration::from_millis(5);

/// A worker's waiting lines. Lines written after its runtime stopped running
/// [`write_batches`] are written by the [`BatchGuard`].
struct Batch {
    lines: Vec<u8>,
    /// [`write_batches`], waiting for a first line.
    writer: Option<Waker>,
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// From now on this thread's log lines wait for [`write_batches`]; the guard writes what is
/// left and stops batching when dropped (the worker ending, or unwinding).
#[must_use = "the guard writes what is left when dropped"]
pub fn batch_this_thread() -> BatchGuard {
    BATCH.with_borrow_mut(|b| {
        *b = Some(Batch {
            lines: Vec::new(),
            writer: None,
        })
    });
    BatchGuard(())
}

pub struct BatchGuard(());

impl Drop for BatchGuard {
    fn drop(&mut self) {
        flush_this_thread();
        BATCH.with_borrow_mut(|b| *b = None);
    }
}

/// Writes this thread's waiting lines, if any.
fn flush_this_thread() {
    BATCH.with_borrow_mut(|b| {
        if let Some(batch) = b {
            write_out(&batch.lines);
            batch.lines.clear();
            // A burst's buffer is not kept for the rest of the worker's life.
            if batch.lines.capacity() > FLUSH_AT * 2 {
                batch.lines.shrink_to(FLUSH_AT);
            }
        }
    });
}

/// Runs on a batching worker's runtime for its life: at each first line, waits
/// [`FLUSH_DELAY`] and writes what gathered. Returns at once on a thread that does not batch.
pub async fn write_batches() {
    loop {
        let batching = std::future::poll_fn(|cx| {
            BATCH.with_borrow_mut(|b| match b {
                None => Poll::Ready(false),
                Some(b) if !b.lines.is_empty() => Poll::Ready(true),
                Some(b) => {
                    b.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        if !batching {
            return;
        }
        tokio::time::sleep(FLUSH_DELAY).await;
        flush_this_thread();
    }
}

/// One write under stderr's lock: a batch longer than a pipe's atomic write is not split by
/// another thread's line.
fn write_out(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    #[cfg(test)]
    tests::WRITTEN.with_borrow_mut(|w| w.push(bytes.len()));
    #[cfg(not(test))]
    // Nowhere to report a failed log write to.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The `MakeWriter` for tracing-subscriber: batches on a batching thread, writes through
/// elsewhere.
#[derive(Clone, Copy, Default)]
pub struct StderrLines;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLines {
    type Writer = StderrLines;

    fn make_writer(&'a self) -> Self::Writer {
        StderrLines
    }
}

impl Write for StderrLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut first = None;
        let kept = BATCH.with_borrow_mut(|b| {
            let batch = b.as_mut()?;
            if batch.lines.is_empty() {
                first = batch.writer.take();
            }
            batch.lines.extend_from_slice(buf);
            Some(batch.lines.len() >= FLUSH_AT)
        });
        match kept {
            Some(true) => flush_this_thread(),
            Some(false) => {}
            None => write_out(buf),
        }
        // Woken outside the borrow: the writer task runs on this thread's runtime.
        if let Some(writer) = first {
            writer.wake();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// The length of each write that would have gone to stderr.
        pub(super) static WRITTEN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    fn writes() -> Vec<usize> {
        WRITTEN.with_borrow_mut(std::mem::take)
    }

    #[test]
    fn lines_wait_for_the_flush_or_the_size() {
        std::thread::spawn(|| {
            let mut out = StderrLines;
            let line = [b'x'; 99];
            // Not batching: each line written through.
            let _ = out.write(&line);
            let _ = out.write(&line);
            assert_eq!(writes(), [99, 99]);

            let guard = batch_this_thread();
            let _ = out.write(&line);
            let _ = out.write(&line);
            assert_eq!(writes(), [0usize; 0]);
            flush_this_thread();
            assert_eq!(writes(), [198]);
            flush_this_thread();
            assert_eq!(writes(), [0usize; 0], "nothing left to write");

            // Lines that fill the buffer are written without a flush.
            let fill = FLUSH_AT.div_ceil(line.len());
            for _ in 0..fill {
                let _ = out.write(&line);
            }
            assert_eq!(writes(), [fill * line.len()]);

            // The guard writes what is left and ends the batching.
            let _ = out.write(&line);
            drop(guard);
            assert_eq!(writes(), [99]);
            let _ = out.write(&line);
            assert_eq!(writes(), [99]);
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn the_writer_task_writes_the_lines_gathered_in_the_delay_in_one_call() {
        std::thread::spawn(|| {
            let _guard = batch_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                tokio::spawn(write_batches());
                let mut out = StderrLines;
                tokio::task::yield_now().await;
                let _ = out.write(&[b'x'; 10]);
                let _ = out.write(&[b'x'; 10]);
                tokio::time::sleep(FLUSH_DELAY / 2).await;
                assert_eq!(writes(), [0usize; 0], "still gathering");
                tokio::time::sleep(FLUSH_DELAY).await;
                assert_eq!(writes(), [20], "one write for both lines");
                // Nothing more to write, nothing written; the next line starts a new wait.
                tokio::time::sleep(FLUSH_DELAY * 10).await;
                assert_eq!(writes(), [0usize; 0]);
                let _ = out.write(&[b'x'; 5]);
                tokio::time::sleep(FLUSH_DELAY * 2).await;
                assert_eq!(writes(), [5]);
            });
        })
        .join()
        .expect("the test thread");
    }
}
