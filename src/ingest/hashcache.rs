//! The content hashes of input files a lake has already ingested, by path
//! and file-system stamp, so a re-run over an inbox that keeps its files
//! skips them without reading them again.
//!
//! An input's identity is the blake3 hash of its bytes (see [`super`]), and
//! an hourly `run` over an inbox that keeps a year of files would read all
//! of them every hour to learn that they are already in the lake: tens of
//! gigabytes, from disk once they leave the page cache. Instead, for each
//! file whose content is committed, `_evlake/input-hashes.json` keeps its
//! canonical path, device, inode, size, and modification and change times
//! (in nanoseconds), as git's index does. A file whose stat still matches
//! all of them, and whose hash the log still has, is skipped unread.
//!
//! The change time (`ctime`) cannot be set by a program (`touch -d` sets
//! the modification time and moves `ctime` to now), so rewriting a file in
//! place, even to the same size with its old modification time, misses.
//! A file changed within the file system's timestamp granularity of being
//! hashed would keep its times, so a stamp is recorded only once both
//! times are [`MIN_AGE`] older than the clock at the hash ("racily clean"
//! files are hashed again next time, then recorded). The cache only ever
//! lets a run skip a file the log says is ingested: a file that is to be
//! ingested is always hashed from its bytes. A missing or unreadable cache
//! is empty (the files are hashed again).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::lake::Lake;

/// The cache's file, under the lake.
pub const FILE: &str = "_evlake/input-hashes.json";

/// How much older than the clock a file's times must be when it is hashed
/// for its stamp to be recorded.
pub const MIN_AGE: Duration = Duration::from_secs(2);

const FORMAT: u32 = 1;

/// A file's identity on disk when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    pub fn of(md: &std::fs::Metadata) -> FileStamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileStamp {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        }
    }

    pub fn size(&self) -> u64 {
        self.len
    }

    /// Both times at least [`MIN_AGE`] before `clock`.
    fn settled(&self, clock: SystemTime) -> bool {
        let Ok(now) = clock.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = now.saturating_sub(MIN_AGE).as_nanos() as i64;
        self.mtime_ns <= limit && self.ctime_ns <= limit
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: FileStamp,
    hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    format: u32,
    files: BTreeMap<PathBuf, Entry>,
}

/// The lake's cache of input hashes, and what this run adds to it.
#[derive(Debug, Default)]
pub struct HashCache {
    files: BTreeMap<PathBuf, Entry>,
    changed: bool,
}

impl HashCache {
    /// The lake's cache (empty if there is none, or it does not parse).
    pub fn load(lake: &Lake) -> HashCache {
        let stored = std::fs::read(lake.path(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
            .filter(|s| s.format == FORMAT)
            .unwrap_or_default();
        HashCache {
            files: stored.files,
            changed: false,
        }
    }

    /// The hash recorded for the file at `canonical` if its stamp is still
    /// `stamp`.
    pub fn get(&self, canonical: &Path, stamp: &FileStamp) -> Option<&str> {
        self.files
            .get(canonical)
            .filter(|e| e.stamp == *stamp)
            .map(|e| e.hash.as_str())
    }

    /// Record that the file at `canonical`, with `stamp` when it was hashed
    /// at `clock`, has `hash` (unless its times are too recent to tell a
    /// later change from them).
    pub fn record(&mut self, canonical: PathBuf, stamp: FileStamp, hash: &str, clock: SystemTime) {
        if !stamp.settled(clock) {
            return;
        }
        if self.get(&canonical, &stamp) == Some(hash) {
            return;
        }
        self.files.insert(
            canonical,
            Entry {
                stamp,
                hash: hash.to_string(),
            },
        );
        self.changed = true;
    }

    /// Write the cache if this run added to it, first dropping the files
    /// that no longer exist. Written to a temporary file and renamed; not
    /// fsynced, as losing it only costs a re-hash.
    pub fn save(mut self, lake: &Lake) -> anyhow::Result<()> {
        if !self.changed {
            return Ok(());
        }
        self.files.retain(|p, _| p.exists());
        let path = lake.path(FILE);
        // One name: writers hold the lake's lock, and a crash's leftover
        // is overwritten by the next save.
        let tmp = path.with_extension("json.tmp");
        let stored = Stored {
            format: FORMAT,
            files: self.files,
        };
        std::fs::write(&tmp, serde_json::to_vec(&stored)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_s: i64, ctime_s: i64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: 2,
            len: 3,
            mtime_ns: mtime_s * 1_000_000_000,
            ctime_ns: ctime_s * 1_000_000_000,
        }
    }

    #[test]
    fn only_settled_stamps_are_recorded_and_any_difference_misses() {
        let clock = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut c = HashCache::default();
        // Changed within MIN_AGE of the hash: not recorded.
        c.record("/in/a".into(), stamp(999, 900), "h1", clock);
        c.record("/in/b".into(), stamp(900, 999), "h2", clock);
        assert!(!c.changed);
        c.record("/in/c".into(), stamp(900, 998), "h3", clock);
        assert!(c.changed);
        assert_eq!(c.get(Path::new("/in/c"), &stamp(900, 998)), Some("h3"));
        // Another path, change time, modification time, size or inode.
        assert_eq!(c.get(Path::new("/in/d"), &stamp(900, 998)), None);
        assert_eq!(c.get(Path::new("/in/c"), &stamp(900, 999)), None);
        assert_eq!(c.get(Path::new("/in/c"), &stamp(901, 998)), None);
        let mut other = stamp(900, 998);
        other.len = 4;
        assert_eq!(c.get(Path::new("/in/c"), &other), None);
        other = stamp(900, 998);
        other.ino = 5;
        assert_eq!(c.get(Path::new("/in/c"), &other), None);
    }
}
