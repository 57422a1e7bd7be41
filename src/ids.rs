//! The lake's event-id index: every `(event_id, event_date, content)` of
//! bronze (`bronze_events` and the side output `bronze_late`), so ingest
//! can tell, without reading bronze, whether a new event's id is already on
//! its date with the same content (a re-send), with other content, or on
//! another date (DESIGN.md §5: not merged by silver, counted as an id
//! conflict).
//!
//! Each ingest writes one immutable file `_evlake/ids/<run>.ids` of its
//! entries, sorted by id hash, and commits it with its bronze files; it is
//! a table of the log (`_event_ids`, not queryable) like any other, so a
//! crash leaves it as consistent as bronze. Files of similar size are
//! merged (size-tiered: four files of one tier become one file of the
//! next), so a lookup probes a few files however long the history, and
//! every entry is rewritten about log4(lake / batch) times over its life.
//!
//! A file: [`MAGIC`], the entry count (u64 LE), then the entries, each
//! the id's [`crate::bronze::event_id_hash`] (u64 LE), the date (days
//! since 1970-01-01, i32 LE) and the row's [`crate::bronze::Content`]
//! hash (u64 LE), sorted and without repeats. The hashes are XXH3-64
//! (seed 0): a published, fixed function, since the files outlive the
//! process. Two ids with one hash would look like one id (a re-send or a
//! conflict counted that is not one): about one chance in 3,000 over 100
//! million ids.
//!
//! The index is derived data: a lake without one (written by an older
//! evlake), with a file in the older format (format 1 held no content
//! hashes), or with a file that cannot be read, gets it rebuilt from
//! bronze by its next ingest.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::lake::Lake;
use crate::log::{FileAction, LakeState};

/// Logical name of the index in the log (never registered for `query`).
pub const TABLE: &str = "_event_ids";
/// Directory of the index files, relative to the lake root.
pub const DIR: &str = "_evlake/ids";
/// First bytes of an index file (format 2).
pub const MAGIC: &[u8; 8] = b"EVLIDX2\n";
/// First bytes of a format-1 file (no content hashes), rebuilt on sight.
const MAGIC_1: &[u8; 8] = b"EVLIDX1\n";
const HEADER: usize = 16;
const ENTRY: usize = 20;

/// `(event_id hash, date, content hash)`.
pub type Entry = (u64, i32, u64);
/// Files of one tier (entries in `[4^k, 4^(k+1))`) are merged once there
/// are this many.
const TIER_FILES: usize = 4;

/// Write `entries` (sorted, distinct) to `path` and fsync it. Returns
/// how many there were and the file's size. Streams: memory stays small
/// however many there are.
pub fn write_sorted(path: &Path, entries: impl Iterator<Item = Entry>) -> Result<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let mut f =
        File::create(path).with_context(|| format!("failed to create `{}`", path.display()))?;
    let mut n = 0u64;
    let write = || -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(HEADER + ENTRY * 8192);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&0u64.to_le_bytes()); // the count, below
        for (h, d, c) in entries {
            bytes.extend_from_slice(&h.to_le_bytes());
            bytes.extend_from_slice(&d.to_le_bytes());
            bytes.extend_from_slice(&c.to_le_bytes());
            n += 1;
            if bytes.len() >= ENTRY * 8192 {
                f.write_all(&bytes)?;
                bytes.clear();
            }
        }
        f.write_all(&bytes)?;
        f.write_all_at(&n.to_le_bytes(), 8)?;
        f.sync_all()
    };
    write().with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok((n, HEADER as u64 + ENTRY as u64 * n))
}

/// The sorted union of sorted, distinct lists of entries, without repeats.
pub fn union<'a>(
    mut sources: Vec<Box<dyn Iterator<Item = Entry> + Send + 'a>>,
) -> impl Iterator<Item = Entry> + Send + 'a {
    let mut heads: Vec<Option<Entry>> = sources.iter_mut().map(|s| s.next()).collect();
    std::iter::from_fn(move || {
        // A handful of sources: the smallest head by a scan.
        let min = heads.iter().flatten().min().copied()?;
        for (head, source) in heads.iter_mut().zip(sources.iter_mut()) {
            if *head == Some(min) {
                *head = source.next();
            }
        }
        Some(min)
    })
}

/// One index file, memory-mapped (files are never changed in place).
pub struct IndexFile {
    map: memmap2::Mmap,
    len: usize,
}

impl IndexFile {
    pub fn open(path: &Path) -> Result<IndexFile> {
        let f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
        let size = f.metadata()?.len() as usize;
        if size < HEADER {
            bail!("`{}`: not an evlake id index (too short)", path.display());
        }
        // SAFETY: lake files are written once and never modified in place
        // (see README, "Commits, re-runs and crashes").
        let map = unsafe { memmap2::Mmap::map(&f) }
            .with_context(|| format!("failed to map `{}`", path.display()))?;
        if &map[..8] == MAGIC_1 {
            bail!(
                "`{}`: an id index written by an older evlake (without content hashes)",
                path.display()
            );
        }
        if &map[..8] != MAGIC {
            bail!("`{}`: not an evlake id index", path.display());
        }
        let len = u64::from_le_bytes(map[8..16].try_into().expect("8 bytes")) as usize;
        // A damaged header may count more entries than memory could hold.
        if ENTRY.checked_mul(len).and_then(|b| b.checked_add(HEADER)) != Some(size) {
            bail!(
                "`{}`: says {len} entries but holds {} bytes",
                path.display(),
                size
            );
        }
        Ok(IndexFile { map, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bytes(&self, i: usize) -> &[u8] {
        &self.map[HEADER + ENTRY * i..HEADER + ENTRY * (i + 1)]
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + Send + '_ {
        (0..self.len).map(|i| self.entry(i))
    }

    fn hash(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.bytes(i)[..8].try_into().expect("8 bytes"))
    }

    pub fn entry(&self, i: usize) -> Entry {
        let b = self.bytes(i);
        (
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            i32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            u64::from_le_bytes(b[12..].try_into().expect("8 bytes")),
        )
    }

    /// The first position at or after `from` whose hash is `>= h`
    /// (galloping: probes for ascending hashes touch few pages).
    fn seek(&self, from: usize, h: u64) -> usize {
        let (mut lo, mut step) = (from, 1usize);
        let mut hi = from;
        while hi < self.len && self.hash(hi) < h {
            lo = hi + 1;
            hi = from.saturating_add(step).min(self.len);
            step *= 2;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.hash(mid) < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The committed index files of the lake.
pub fn committed(state: &LakeState) -> Vec<&FileAction> {
    state
        .partitions(TABLE)
        .flat_map(|(_, p)| p.files.values())
        .collect()
}

/// Looks ids up, in ascending order, in index files (or, for a lake
/// whose index is being rebuilt, in its entries from bronze): a cursor per
/// source, moving forward only, so a lookup of every id of a run reads
/// each source once.
pub struct Probe<'a> {
    sources: Vec<(Source<'a>, usize)>,
    found: Vec<(i32, u64)>,
}

enum Source<'a> {
    File(&'a IndexFile),
    Stream(std::iter::Peekable<Box<dyn Iterator<Item = Entry> + 'a>>),
}

impl<'a> Probe<'a> {
    /// Over index `files`, and `entries` (sorted) if given.
    pub fn new(
        files: &'a [IndexFile],
        entries: Option<Box<dyn Iterator<Item = Entry> + 'a>>,
    ) -> Probe<'a> {
        let mut sources: Vec<(Source, usize)> =
            files.iter().map(|f| (Source::File(f), 0)).collect();
        if let Some(e) = entries {
            sources.push((Source::Stream(e.peekable()), 0));
        }
        Probe {
            sources,
            found: Vec::new(),
        }
    }

    /// `(date, content hash)` of every entry of `id` (ids asked in
    /// ascending order), sorted, without repeats.
    pub fn entries_of(&mut self, id: u64) -> &[(i32, u64)] {
        self.found.clear();
        for (source, pos) in &mut self.sources {
            match source {
                Source::File(f) => {
                    *pos = f.seek(*pos, id);
                    while *pos < f.len() && f.hash(*pos) == id {
                        let (_, d, c) = f.entry(*pos);
                        self.found.push((d, c));
                        *pos += 1;
                    }
                }
                Source::Stream(e) => {
                    while e.next_if(|x| x.0 < id).is_some() {}
                    while let Some((_, d, c)) = e.next_if(|x| x.0 == id) {
                        self.found.push((d, c));
                    }
                }
            }
        }
        self.found.sort_unstable();
        self.found.dedup();
        &self.found
    }
}

/// Open committed index files.
pub fn open_all(lake: &Lake, files: &[&FileAction]) -> Result<Vec<IndexFile>> {
    files
        .iter()
        .map(|f| IndexFile::open(&lake.path(&f.path)))
        .collect()
}

fn tier(entries: u64) -> u32 {
    entries.max(1).ilog2() / 2
}

/// The committed files to merge into the new file of `new_entries`
/// entries. Simulated size-tiered merging: while some tier holds
/// [`TIER_FILES`] files, every file of that tier and below becomes one
/// (which can fill the next tier). Every file merged on the way is merged
/// into the new file, which is written anyway. Empty: none.
pub fn to_merge<'a>(files: &[&'a FileAction], new_entries: u64) -> Vec<&'a FileAction> {
    // Groups of files (committed indexes; the new file has none) that
    // would be one file, and their entries.
    let mut groups: Vec<(u64, Vec<usize>)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.rows, vec![i]))
        .collect();
    groups.push((new_entries, Vec::new()));
    let mut merged: Vec<usize> = Vec::new();
    loop {
        let mut per_tier: std::collections::BTreeMap<u32, usize> = Default::default();
        for (n, _) in &groups {
            *per_tier.entry(tier(*n)).or_default() += 1;
        }
        let Some(t) = per_tier
            .iter()
            .find(|(_, count)| **count >= TIER_FILES)
            .map(|(t, _)| *t)
        else {
            break;
        };
        let (low, high): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(n, _)| tier(*n) <= t);
        let one = low
            .into_iter()
            .fold((0u64, Vec::new()), |(n, mut m), (gn, gm)| {
                m.extend(gm);
                (n + gn, m)
            });
        merged.extend(&one.1);
        groups = high;
        groups.push(one);
    }
    merged.sort_unstable();
    merged.dedup();
    merged.into_iter().map(|i| files[i]).collect()
}

/// Every entry of the lake's bronze and side-output rows, read from the
/// Parquet files (for a lake whose index does not cover them), into
/// `spool` (which spills to disk beyond its limit: a rebuild of a big
/// lake's index holds no more in memory than a big ingest).
pub fn from_bronze(
    lake: &Lake,
    state: &LakeState,
    spool: &mut crate::ingest::keys::Spool,
) -> Result<()> {
    let files: Vec<(&String, i32)> = [crate::bronze::TABLE, crate::bronze::LATE_TABLE]
        .iter()
        .flat_map(|t| state.partitions(t))
        .map(|(date, p)| {
            let d = crate::time::parse_date32(date)
                .map_err(|e| anyhow::anyhow!("bad partition `{date}` in the log: {e}"))?;
            Ok(p.files.keys().map(move |rel| (rel, d)))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    // A few files at a time, read in parallel.
    for group in files.chunks(rayon::current_num_threads().max(1) * 2) {
        let per_file: Vec<Vec<(u64, u64)>> = group
            .par_iter()
            .map(|(rel, _)| crate::bronze::read_content_hashes(&lake.path(rel)))
            .collect::<Result<_>>()?;
        for ((_, d), rows) in group.iter().zip(per_file) {
            spool.extend(rows.into_iter().map(|(h, c)| (h, *d, c)))?;
        }
    }
    Ok(())
}

/// The log's operation name of a commit that rebuilds the index.
pub const REBUILD: &str = "reindex";

/// Rebuild the index from bronze (and its side output), in one commit
/// that replaces every index file: the repair of a damaged or missing one
/// (`evlake check --repair`), which the next ingest would otherwise make.
/// Changes no data. Returns the commit's version.
pub fn rebuild(lake: &Lake, processing_time: i64) -> Result<u64> {
    use crate::{derive, fault, ingest, lake as lk, log};
    let _busy = fault::operation(REBUILD);
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    log::clean_orphans(lake, &state, &ingest::table_dirs())?;
    let staging = lk::Staging::create(lake, REBUILD)?;
    let run_id = derive::run_id(REBUILD, &state);
    let spilled = staging.join("entries");
    std::fs::create_dir_all(&spilled)
        .with_context(|| format!("failed to create `{}`", spilled.display()))?;
    let mut spool =
        ingest::keys::Spool::new(&spilled, ingest::keys_in_memory(ingest::buffer_bytes()), 0);
    from_bronze(lake, &state, &mut spool)?;
    let entries = spool.finish()?;
    let staged = staging.join(format!("{run_id}.ids"));
    let (rows, bytes) = write_sorted(&staged, entries.distinct())?;
    entries.error()?;
    fault::point("staged")?;
    let rel = format!("{DIR}/{run_id}.ids");
    lk::publish(lake, &[(staged, lake.path(&rel))])?;
    let mut commit = log::Commit::next(&state, REBUILD, processing_time);
    commit.add = vec![FileAction::plain(TABLE, "", rel, rows, bytes)];
    commit.remove = committed(&state).into_iter().cloned().collect();
    commit.ids_indexed = true;
    commit.ids_rebuilt = true;
    derive::finish_commit(lake, &commit)?;
    Ok(commit.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(rows: u64) -> FileAction {
        FileAction::plain(TABLE, "", format!("_evlake/ids/{rows}.ids"), rows, 0)
    }

    #[test]
    fn a_file_round_trips_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let mut e = vec![
            (5u64, 3i32, 1u64),
            (1, 2, 7),
            (5, 1, 1),
            (9, 0, 2),
            (1, 2, 7),
        ];
        e.sort_unstable();
        e.dedup();
        assert_eq!(e, [(1, 2, 7), (5, 1, 1), (5, 3, 1), (9, 0, 2)]);
        // Written as the union of two overlapping sorted lists.
        let (a, b) = (
            vec![(1u64, 2i32, 7u64), (5, 3, 1)],
            vec![(1u64, 2i32, 7u64), (5, 1, 1), (9, 0, 2)],
        );
        let (n, bytes) = write_sorted(
            &p,
            union(vec![Box::new(a.into_iter()), Box::new(b.into_iter())]),
        )
        .unwrap();
        assert_eq!((n, bytes), (4, 16 + 4 * 20));
        let f = IndexFile::open(&p).unwrap();
        assert_eq!(f.entries().collect::<Vec<_>>(), e);
        assert_eq!(f.seek(0, 0), 0);
        assert_eq!(f.seek(0, 5), 1);
        assert_eq!(f.seek(2, 5), 2);
        assert_eq!(f.seek(0, 6), 3);
        assert_eq!(f.seek(0, 10), 4);
        // A probe finds an id's entries in the file and in a list, in
        // ascending order of ids.
        let more = [(5u64, 3i32, 4u64), (9, 0, 2)];
        let files = [f];
        let mut probe = Probe::new(&files, Some(Box::new(more.into_iter())));
        assert_eq!(probe.entries_of(1), [(2, 7)]);
        assert_eq!(probe.entries_of(4), []);
        assert_eq!(probe.entries_of(5), [(1, 1), (3, 1), (3, 4)]);
        assert_eq!(probe.entries_of(9), [(0, 2)]);
        assert_eq!(probe.entries_of(10), []);
        std::fs::write(&p, b"not an index file").unwrap();
        assert!(IndexFile::open(&p).is_err());
        let mut old = MAGIC_1.to_vec();
        old.extend_from_slice(&[0; 8]);
        std::fs::write(&p, &old).unwrap();
        let e = IndexFile::open(&p).err().unwrap();
        assert!(format!("{e}").contains("older evlake"), "{e}");
        // A damaged count, more entries than memory holds: an error, not
        // an overflow.
        let mut damaged = MAGIC.to_vec();
        damaged.extend_from_slice(&[0xff; 8]);
        damaged.extend_from_slice(&[0; 20]);
        std::fs::write(&p, &damaged).unwrap();
        let e = IndexFile::open(&p).err().unwrap();
        assert!(format!("{e}").contains("entries but holds 36 bytes"), "{e}");
    }

    #[test]
    fn files_merge_by_tier() {
        let files: Vec<FileAction> = [20, 30, 40].into_iter().map(action).collect();
        let refs: Vec<&FileAction> = files.iter().collect();
        // Three small files and a fourth of their tier: all four merge.
        let m = to_merge(&refs, 25);
        assert_eq!(m.len(), 3);
        // A new file of another tier: nothing to merge.
        assert!(to_merge(&refs, 100_000).is_empty());
        assert!(to_merge(&refs, 10).is_empty());
        // Four of a tier and a big one: the small ones merge, the big stays.
        let files: Vec<FileAction> = [20, 30, 40, 1_000_000].into_iter().map(action).collect();
        let refs: Vec<&FileAction> = files.iter().collect();
        let m: Vec<u64> = to_merge(&refs, 35).iter().map(|f| f.rows).collect();
        assert_eq!(m, [20, 30, 40]);
        // Merged small files filling the next tier merge with it too.
        let files: Vec<FileAction> = [20, 30, 40, 100, 110, 120]
            .into_iter()
            .map(action)
            .collect();
        let refs: Vec<&FileAction> = files.iter().collect();
        let m: Vec<u64> = to_merge(&refs, 35).iter().map(|f| f.rows).collect();
        assert_eq!(m, [20, 30, 40, 100, 110, 120]);
        // However many ingests of one size, few files stay.
        let mut sizes: Vec<u64> = Vec::new();
        for _ in 0..1000 {
            let files: Vec<FileAction> = sizes.iter().map(|n| action(*n)).collect();
            let refs: Vec<&FileAction> = files.iter().collect();
            let m = to_merge(&refs, 20_000);
            let mut merged = 20_000;
            for f in &m {
                let i = sizes.iter().position(|n| *n == f.rows).unwrap();
                merged += sizes.remove(i);
            }
            sizes.push(merged);
        }
        assert_eq!(sizes.iter().sum::<u64>(), 20_000_000);
        assert!(sizes.len() <= 12, "{sizes:?}");
    }

    #[test]
    fn the_id_hash_is_xxh3() {
        // Published test vector: XXH3-64 of the empty input, seed 0.
        assert_eq!(crate::bronze::event_id_hash(""), 0x2d06800538d394c2);
    }
}
