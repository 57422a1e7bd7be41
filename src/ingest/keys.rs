//! The run's event keys, `(event_id hash, event_date, content hash)` one
//! per event, from which ingest counts re-sends and id conflicts and
//! writes the run's id index (see `count_copies`).
//!
//! They are counted after every event is read, so they are kept until
//! then: in memory up to a fixed number of keys, beyond it in sorted runs
//! on disk (the run's staging directory), merged back in order when they
//! are read. So ingest's memory does not grow with its input: a run of
//! 50 million events holds no more keys in memory than one of 5 million.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use rayon::prelude::*;

/// `(event_id hash, event_date, content hash)`.
pub type Key = (u64, i32, u64);

/// Bytes of a key in memory (with padding).
pub const KEY_BYTES: usize = std::mem::size_of::<Key>();

/// Bytes of a key in a run file.
const RUN_KEY_BYTES: usize = 20;

/// Keys read from a run file at a time.
const READ_KEYS: usize = 16 * 1024;

/// Collects keys, spilling sorted runs to `dir` beyond `max` in memory.
///
/// A run is half of `max`, sorted and written on a thread of its own while
/// the next half fills, so the input is not held up while a run is
/// written, and at most `max` keys are in memory.
pub struct Spool {
    mem: Vec<Key>,
    /// Keys per run.
    half: usize,
    dir: PathBuf,
    runs: Vec<PathBuf>,
    /// The run being written.
    writing: Option<std::thread::JoinHandle<Result<PathBuf>>>,
    /// The smallest and largest date.
    dates: Option<(i32, i32)>,
}

impl Spool {
    /// `expected`: about how many keys the run brings (memory for them is
    /// reserved, up to `max`, so the list is not copied as it grows).
    pub fn new(dir: &Path, max: usize, expected: usize) -> Spool {
        let max = max.max(2);
        Spool {
            mem: Vec::with_capacity(if expected <= max { expected } else { max / 2 }),
            half: max / 2,
            dir: dir.to_path_buf(),
            runs: Vec::new(),
            writing: None,
            dates: None,
        }
    }

    pub fn extend(&mut self, keys: impl IntoIterator<Item = Key>) -> Result<()> {
        for k in keys {
            // All `max` keys fit; beyond, runs of half as many.
            let full = if self.runs.is_empty() && self.writing.is_none() {
                self.half * 2
            } else {
                self.half
            };
            if self.mem.len() >= full {
                self.spill()?;
            }
            if self.mem.len() == self.mem.capacity() {
                // Grow by doubling, but never past a full list.
                let want = (self.mem.capacity() * 2).max(1024).min(full);
                self.mem.reserve_exact(want - self.mem.len());
            }
            self.dates = Some(match self.dates {
                Some((lo, hi)) => (lo.min(k.1), hi.max(k.1)),
                None => (k.1, k.1),
            });
            self.mem.push(k);
        }
        Ok(())
    }

    /// Hand the keys in memory to a thread that writes them as a run, once
    /// the run before is written. The first, full list is two runs: its
    /// first half written here, so that the keys in memory never exceed
    /// `max` (a pause once per run of more than `max` events).
    fn spill(&mut self) -> Result<()> {
        self.wait()?;
        let mut keys = std::mem::replace(&mut self.mem, Vec::with_capacity(self.half));
        if keys.len() > self.half {
            let path = self.next_path();
            self.runs.push(write_run(&mut keys[..self.half], path)?);
            // In place: no second list while the first is still held.
            keys.drain(..self.half);
            keys.shrink_to_fit();
        }
        let path = self.next_path();
        self.writing = Some(std::thread::spawn(move || write_run(&mut keys, path)));
        Ok(())
    }

    /// A new run's file (no run is being written).
    fn next_path(&self) -> PathBuf {
        self.dir.join(format!("keys-{:05}.run", self.runs.len()))
    }

    /// Wait for the run being written.
    fn wait(&mut self) -> Result<()> {
        if let Some(w) = self.writing.take() {
            self.runs
                .push(w.join().expect("a key run writer panicked")?);
        }
        Ok(())
    }

    /// Every key collected, ready to be read in order.
    pub fn finish(mut self) -> Result<Sorted> {
        self.wait()?;
        self.mem.par_sort_unstable();
        Ok(Sorted {
            mem: self.mem,
            runs: self.runs,
            dates: self.dates,
            error: Mutex::new(None),
        })
    }
}

/// Sort `keys` and write them to `path`.
fn write_run(keys: &mut [Key], path: PathBuf) -> Result<PathBuf> {
    keys.par_sort_unstable();
    let write = || -> std::io::Result<()> {
        // Scratch: removed with the staging directory, never fsynced.
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        for (id, date, content) in keys.iter() {
            w.write_all(&id.to_le_bytes())?;
            w.write_all(&date.to_le_bytes())?;
            w.write_all(&content.to_le_bytes())?;
        }
        w.flush()
    };
    write().with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(path)
}

/// The keys of a run, sorted: those in memory, and any runs on disk.
pub struct Sorted {
    mem: Vec<Key>,
    runs: Vec<PathBuf>,
    dates: Option<(i32, i32)>,
    /// The first error a reader of a run met (its iterator then ended).
    error: Mutex<Option<anyhow::Error>>,
}

impl Sorted {
    /// The smallest and largest date of the keys (None: no keys).
    pub fn dates(&self) -> Option<(i32, i32)> {
        self.dates
    }

    /// Runs written to disk.
    pub fn spilled(&self) -> usize {
        self.runs.len()
    }

    /// Every key, in order (repeats kept). A run that cannot be read ends
    /// the iteration early: check [`Sorted::error`] after reading.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Key> + Send + '_> {
        if self.runs.is_empty() {
            return Box::new(self.mem.iter().copied());
        }
        let mut sources: Vec<Box<dyn Iterator<Item = Key> + Send + '_>> =
            vec![Box::new(self.mem.iter().copied())];
        for path in &self.runs {
            sources.push(Box::new(RunReader::open(path, &self.error)));
        }
        Box::new(merge(sources))
    }

    /// The distinct keys, in order (a run's id index entries).
    pub fn distinct(&self) -> impl Iterator<Item = Key> + Send + '_ {
        let mut last = None;
        self.iter().filter(move |k| last.replace(*k) != Some(*k))
    }

    /// The error that ended an iteration early, if any.
    pub fn error(&self) -> Result<()> {
        match self.error.lock().expect("not poisoned").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The keys of one run file, in order.
struct RunReader<'a> {
    path: &'a Path,
    file: Option<BufReader<File>>,
    buf: Vec<u8>,
    at: usize,
    error: &'a Mutex<Option<anyhow::Error>>,
}

impl<'a> RunReader<'a> {
    fn open(path: &'a Path, error: &'a Mutex<Option<anyhow::Error>>) -> RunReader<'a> {
        let mut r = RunReader {
            path,
            file: None,
            buf: Vec::new(),
            at: 0,
            error,
        };
        match File::open(path) {
            Ok(f) => r.file = Some(BufReader::with_capacity(1 << 16, f)),
            Err(e) => r.fail(e),
        }
        r
    }

    fn fail(&mut self, e: std::io::Error) {
        self.file = None;
        let mut slot = self.error.lock().expect("not poisoned");
        slot.get_or_insert_with(|| {
            anyhow::Error::new(e).context(format!("failed to read `{}`", self.path.display()))
        });
    }

    /// Read the next keys into `buf`; false at the end (or on an error).
    fn refill(&mut self) -> bool {
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        self.buf.resize(READ_KEYS * RUN_KEY_BYTES, 0);
        let mut filled = 0;
        while filled < self.buf.len() {
            match file.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e);
                    return false;
                }
            }
        }
        if filled % RUN_KEY_BYTES != 0 {
            self.fail(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "cut short",
            ));
            return false;
        }
        self.buf.truncate(filled);
        self.at = 0;
        if filled == 0 {
            self.file = None;
        }
        filled > 0
    }
}

impl Iterator for RunReader<'_> {
    type Item = Key;

    fn next(&mut self) -> Option<Key> {
        if self.at == self.buf.len() && !self.refill() {
            return None;
        }
        let b = &self.buf[self.at..self.at + RUN_KEY_BYTES];
        self.at += RUN_KEY_BYTES;
        Some((
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            i32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            u64::from_le_bytes(b[12..].try_into().expect("8 bytes")),
        ))
    }
}

/// The sorted merge of sorted sources, repeats kept.
fn merge<'a>(
    mut sources: Vec<Box<dyn Iterator<Item = Key> + Send + 'a>>,
) -> impl Iterator<Item = Key> + Send + 'a {
    use std::cmp::Reverse;
    let mut heads: std::collections::BinaryHeap<Reverse<(Key, usize)>> = sources
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| s.next().map(|k| Reverse((k, i))))
        .collect();
    std::iter::from_fn(move || {
        let mut top = heads.peek_mut()?;
        let Reverse((key, i)) = *top;
        match sources[i].next() {
            Some(next) => *top = Reverse((next, i)),
            None => {
                std::collections::binary_heap::PeekMut::pop(top);
            }
        }
        Some(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u64) -> Vec<Key> {
        // Repeats of ids, dates and contents, in no order.
        (0..n)
            .map(|i| {
                let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (x % 97, (x % 5) as i32 - 2, x % 3)
            })
            .collect()
    }

    #[test]
    fn spilled_keys_read_back_in_order_with_their_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let all = keys(10_000);
        let mut spool = Spool::new(dir.path(), 700, 0);
        spool.extend(all.iter().copied()).unwrap();
        let sorted = spool.finish().unwrap();
        // Runs of 350 (the first 700 as two), 1 to 350 left in memory.
        assert_eq!(sorted.spilled(), (10_000 - 1) / 350);
        let mut want = all.clone();
        want.sort_unstable();
        assert_eq!(sorted.iter().collect::<Vec<_>>(), want);
        // Read twice, as ingest does (index and counts).
        assert_eq!(sorted.iter().count(), want.len());
        sorted.error().unwrap();
        let mut distinct = want.clone();
        distinct.dedup();
        assert_eq!(sorted.distinct().collect::<Vec<_>>(), distinct);
    }

    #[test]
    fn keys_within_the_limit_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), 1000, 10);
        spool.extend(keys(1000)).unwrap();
        let sorted = spool.finish().unwrap();
        assert_eq!(sorted.spilled(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(sorted.iter().count(), 1000);
    }

    #[test]
    fn a_run_cut_short_is_an_error_not_fewer_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), 100, 0);
        spool.extend(keys(250)).unwrap();
        let sorted = spool.finish().unwrap();
        let run = dir.path().join("keys-00000.run");
        let len = std::fs::metadata(&run).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&run).unwrap();
        f.set_len(len - 7).unwrap();
        let n = sorted.iter().count();
        assert!(n < 250, "{n}");
        let e = sorted.error().unwrap_err();
        assert!(format!("{e:#}").contains("keys-00000.run"), "{e:#}");
    }
}
