//! The lake as its log says it is, for evlake's own readers.
//!
//! Tables are registered with DataFusion by directory, and DataFusion
//! lists those directories to find their files. A run that crashed after
//! renaming its files into place (or after its commit, before deleting the
//! files it replaced) leaves files no commit references, until the next
//! writer removes them; a listing would show them, so `evlake query` could
//! count rows twice. [`CommittedStore`] is the local file system with
//! every file under a table directory that the log does not reference
//! left out of listings.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::lake::Lake;
use crate::log::LakeState;

/// How many times [`read_retrying`] starts a read over.
const READ_ATTEMPTS: usize = 5;

/// Run `read` on the lake's state as the log has it now and, when it
/// failed because a file was missing and a commit has landed since that
/// state, run it again on the newer one.
///
/// Readers take no lock, and a writer deletes the files its commit
/// replaced right after the commit (outside readers glob the table
/// directories, so old files cannot linger): a query planned on the state
/// before a `silver` or `gold` commit can find a file gone when it gets
/// to it. Once the commit is there, a fresh read sees only its files.
/// A missing file with no new commit is a real error, reported as is.
pub fn read_retrying<T>(lake: &Lake, mut read: impl FnMut(&LakeState) -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        let state = LakeState::load(lake)?;
        match read(&state) {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < READ_ATTEMPTS
                    && e.downcast_ref::<Final>().is_none()
                    && is_missing_file(&e)
                    && crate::log::latest_version(lake)? > state.version =>
            {
                attempt += 1;
                crate::commands::status(
                    "Retrying",
                    "a commit replaced files this read was using; reading the lake as it is now",
                );
            }
            Err(e) => {
                return Err(match e.downcast::<Final>() {
                    Ok(Final(e)) => e,
                    Err(e) => e,
                });
            }
        }
    }
}

/// An error a read may not start over from (it already wrote output);
/// [`read_retrying`] returns the error it wraps.
#[derive(Debug)]
pub struct Final(pub anyhow::Error);

impl fmt::Display for Final {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Final {}

/// Whether `e` is a file that was not there (as the file system, or
/// DataFusion's object store, says it), or not as the state read says
/// (a file name a later commit wrote again: say, a batch retracted, then
/// ingested again).
fn is_missing_file(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    }) || {
        let text = format!("{e:#}");
        text.contains("No such file or directory")
            || text.contains("(os error 2)")
            || text.contains(NOT_AS_LOGGED)
    }
}

/// The files the log references: lake-relative path (`/`-separated) →
/// the version of the commit that last changed its partition. Made once
/// per [`crate::engine::Engine::read_committed`] and shared by its store
/// and its table registrations (on a lake of ~13k files, each copy of
/// them had cost ~3 ms, and a set of their object paths ~7 ms more).
pub type LiveFiles = Arc<BTreeMap<String, Live>>;

/// What the log says of a committed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// The version of the commit that last changed its partition.
    pub version: u64,
    /// Its size: a file on disk of another size was cut short or replaced.
    pub bytes: u64,
}

/// [`LiveFiles`] of `state`.
pub fn live_files(state: &LakeState) -> LiveFiles {
    Arc::new(
        state
            .tables
            .values()
            .flat_map(|parts| parts.values())
            .flat_map(|p| {
                p.files.iter().map(|(f, a)| {
                    let live = Live {
                        version: p.version,
                        bytes: a.bytes,
                    };
                    (f.clone(), live)
                })
            })
            .collect(),
    )
}

/// What the error for a committed file whose size on disk is not the
/// log's says (after the file's path).
pub const NOT_AS_LOGGED: &str = "committed to the lake, but not the file the log names";

/// Which listed files a reader sees.
#[derive(Debug)]
struct Visible {
    /// Table directories (object-store paths, each ending in `/`).
    dirs: Vec<String>,
    /// The lake root's object-store path and a `/` (empty at `/`): a
    /// committed file's object-store path is it plus its key in `files`.
    root: String,
    /// The committed files, keyed by their object-store paths after
    /// `root` (their lake-relative paths, encoded where needed).
    files: LiveFiles,
}

impl Visible {
    fn sees(&self, p: &Path) -> bool {
        let p = p.as_ref();
        let committed = p
            .strip_prefix(self.root.as_str())
            .is_some_and(|rel| self.files.contains_key(rel));
        committed || !self.dirs.iter().any(|d| p.starts_with(d.as_str()))
    }

    /// The object-store paths of the committed files under `prefix` (all
    /// of them for `None`).
    fn under<'a>(&'a self, prefix: Option<&Path>) -> impl Iterator<Item = String> + 'a {
        let p = prefix.map_or(String::new(), |p| format!("{}/", p.as_ref()));
        // Within the lake, the files under its relative part; above it
        // (a directory the root is in), all of them; elsewhere, none.
        let start = match p.strip_prefix(self.root.as_str()) {
            Some(rel) => Some(rel.to_string()),
            None => self.root.starts_with(p.as_str()).then(String::new),
        };
        start.into_iter().flat_map(move |start| {
            self.files
                .range(start.clone()..)
                .take_while(move |(f, _)| f.starts_with(start.as_str()))
                .map(|(f, _)| format!("{}{f}", self.root))
        })
    }

    /// An error for the first committed file under `prefix` that a listing
    /// did not find: `found(file)` says whether it did. The state this
    /// store was made from is then stale (a writer's commit replaced the
    /// file and deleted it) or the lake lost a file: either way, a read
    /// that left it out would answer from part of a table without a word.
    fn check(&self, prefix: Option<&Path>, found: impl Fn(&str) -> bool) -> Res<()> {
        match self.under(prefix).find(|f| !found(f)) {
            None => Ok(()),
            Some(missing) => Err(not_on_disk(&missing)),
        }
    }

    /// Whether `prefix` is a table directory or under one, where a listing
    /// is exactly the committed files under it.
    fn covers(&self, prefix: Option<&Path>) -> bool {
        prefix.is_some_and(|p| {
            let p = format!("{}/", p.as_ref());
            self.dirs.iter().any(|d| p.starts_with(d.as_str()))
        })
    }
}

/// What the error for a committed file that is not on disk says.
pub const NOT_ON_DISK: &str = "No such file or directory (committed to the lake, not on disk)";

/// The error for a committed file that is not on disk.
fn not_on_disk(path: &str) -> datafusion::object_store::Error {
    datafusion::object_store::Error::NotFound {
        path: path.to_string(),
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            NOT_ON_DISK,
        )),
    }
}

/// The error for committed file `rel` (lake-relative, as the object
/// store encodes it) that is on disk but not as the log says (`what`).
fn not_as_logged(rel: &str, what: String) -> datafusion::object_store::Error {
    datafusion::object_store::Error::Generic {
        store: "CommittedStore",
        source: format!("`{rel}`: {NOT_AS_LOGGED}: {what}").into(),
    }
}

/// The object-store path of lake file `rel` under `root` (canonical), as
/// `Path::from_absolute_path` makes it. With `base` (`root`'s own), a
/// path of plain characters (every name evlake writes) is `base` plus
/// itself, with no URL round trip (that had been ~3 ms of every command
/// on a lake of ~1,500 files).
fn object_path(root: &std::path::Path, base: Option<&str>, rel: &str) -> Result<String> {
    match base {
        Some(base) if is_plain(rel) => Ok(if base.is_empty() {
            rel.to_string()
        } else {
            format!("{base}/{rel}")
        }),
        _ => Ok(Path::from_absolute_path(root.join(rel))
            .with_context(|| format!("`{rel}` is not a valid path"))?
            .to_string()),
    }
}

/// Whether lake-relative path `rel` is one of plain characters, whose
/// object-store path is itself (every name evlake writes).
fn is_plain(rel: &str) -> bool {
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=._-".contains(&b))
    };
    !rel.is_empty() && rel.split('/').all(plain)
}

/// The local file system, listing only committed files under the lake's
/// table directories (see the module docs).
#[derive(Debug)]
pub struct CommittedStore {
    inner: LocalFileSystem,
    visible: Arc<Visible>,
}

impl CommittedStore {
    /// The store for `lake` as of `state`: under every directory whose
    /// files the log must reference ([`crate::ingest::table_dirs`]).
    pub fn new(lake: &Lake, state: &LakeState) -> Result<CommittedStore> {
        Self::of_files(lake, live_files(state))
    }

    /// The store for `lake` whose committed files are `files`.
    pub fn of_files(lake: &Lake, files: LiveFiles) -> Result<CommittedStore> {
        let root = std::fs::canonicalize(lake.root())
            .with_context(|| format!("failed to resolve `{}`", lake.root().display()))?;
        let base = object_path(&root, None, "")?;
        let path = |rel: &str| object_path(&root, Some(&base), rel);
        let dirs = crate::ingest::table_dirs()
            .iter()
            .map(|d| Ok(format!("{}/", path(d)?)))
            .collect::<Result<Vec<_>>>()?;
        let prefix = if base.is_empty() {
            String::new()
        } else {
            format!("{base}/")
        };
        // Every name evlake writes is its own object-store path; any other
        // is keyed by its encoded form.
        let files = if files.keys().all(|f| is_plain(f)) {
            files
        } else {
            let encoded = files
                .iter()
                .map(|(f, v)| {
                    let p = path(f)?;
                    let rel = p.strip_prefix(prefix.as_str()).map(str::to_string);
                    Ok((rel.unwrap_or(p), *v))
                })
                .collect::<Result<BTreeMap<_, _>>>()?;
            Arc::new(encoded)
        };
        Ok(CommittedStore {
            inner: LocalFileSystem::new(),
            visible: Arc::new(Visible {
                dirs,
                root: prefix,
                files,
            }),
        })
    }
}

impl CommittedStore {
    /// A lake file's bytes, memory-mapped, and its metadata; `None` where
    /// mapping does not apply (not a regular file, empty, or any error:
    /// the file system's own read then says what is wrong).
    ///
    /// Reads are served from a map, not by a blocking task per range that
    /// opens the file and copies the range out: DataFusion reads a Parquet
    /// file in many small ranges (footer, page index, Bloom filters, column
    /// chunks). Safe because evlake writes every lake file once under a
    /// new name (temp file, then rename) and never modifies or truncates
    /// one in place; a removed file stays readable through its map.
    fn mapped(&self, location: &Path) -> Option<(Bytes, ObjectMeta)> {
        let path = self.inner.path_to_filesystem(location).ok()?;
        let file = std::fs::File::open(&path).ok()?;
        let md = file.metadata().ok()?;
        if !md.is_file() || md.len() == 0 {
            return None;
        }
        // SAFETY: see above; lake files are immutable once written.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: md.modified().ok()?.into(),
            size: md.len(),
            e_tag: None,
            version: None,
        };
        Some((Bytes::from_owner(map), meta))
    }
}

impl CommittedStore {
    /// A committed file's metadata, as the file system's listing gives it;
    /// an error naming the file when its size is not the log's (cut short
    /// or replaced: read, it fails with Parquet's "Corrupt footer", or
    /// worse, reads as other rows, and says not which file it was).
    fn stat(&self, location: &Path) -> Res<ObjectMeta> {
        let meta = self.stat_any(location)?;
        let logged = location
            .as_ref()
            .strip_prefix(self.visible.root.as_str())
            .and_then(|rel| Some((rel, self.visible.files.get(rel)?)));
        match logged {
            Some((rel, live)) if live.bytes != meta.size => Err(not_as_logged(
                rel,
                format!(
                    "{} bytes on disk, {} in the log (cut short or replaced)",
                    meta.size, live.bytes
                ),
            )),
            _ => Ok(meta),
        }
    }

    /// A file's metadata, as the file system's listing gives it.
    fn stat_any(&self, location: &Path) -> Res<ObjectMeta> {
        let path = self.inner.path_to_filesystem(location)?;
        let md = match std::fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_on_disk(location.as_ref()));
            }
            Err(e) => {
                return Err(datafusion::object_store::Error::Generic {
                    store: "CommittedStore",
                    source: Box::new(e),
                });
            }
        };
        Ok(ObjectMeta {
            location: location.clone(),
            last_modified: md
                .modified()
                .map_err(|e| datafusion::object_store::Error::Generic {
                    store: "CommittedStore",
                    source: Box::new(e),
                })?
                .into(),
            size: md.len(),
            e_tag: Some(etag(&md)),
            version: None,
        })
    }
}

/// The ETag the local file system gives a file (inode, mtime in
/// microseconds and size, in hex).
fn etag(md: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{:x}-{mtime:x}-{:x}", md.ino(), md.len())
}

impl fmt::Display for CommittedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommittedStore({})", self.inner)
    }
}

type Res<T> = datafusion::object_store::Result<T>;

#[async_trait]
impl ObjectStore for CommittedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Res<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Res<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Res<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        if plain && let Some((bytes, meta)) = self.mapped(location) {
            let len = bytes.len() as u64;
            let range = match &options.range {
                None => 0..len,
                Some(r) => match r.as_range(len) {
                    Ok(r) => r,
                    // The file system's own error for a bad range.
                    Err(_) => return self.inner.get_opts(location, options).await,
                },
            };
            let part = bytes.slice(range.start as usize..range.end as usize);
            return Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async { Ok(part) }).boxed(),
                ),
                meta,
                range,
                attributes: Default::default(),
            });
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Res<Vec<Bytes>> {
        let Some((bytes, _)) = self.mapped(location) else {
            return self.inner.get_ranges(location, ranges).await;
        };
        let len = bytes.len() as u64;
        if ranges.iter().any(|r| r.start > r.end || r.end > len) {
            return self.inner.get_ranges(location, ranges).await;
        }
        Ok(ranges
            .iter()
            .map(|r| bytes.slice(r.start as usize..r.end as usize))
            .collect())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Res<Path>>,
    ) -> BoxStream<'static, Res<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Res<ObjectMeta>> {
        if self.visible.covers(prefix) {
            // The log's files, each stat'ed, rather than a walk of the
            // directories (one per partition, every query that scans the
            // table): the same listing, orphans left out.
            let metas: Vec<Res<ObjectMeta>> = self
                .visible
                .under(prefix)
                .map(|f| {
                    // Already an object-store path (encoded where needed).
                    let location = Path::parse(f.as_str()).map_err(|e| {
                        datafusion::object_store::Error::Generic {
                            store: "CommittedStore",
                            source: Box::new(e),
                        }
                    })?;
                    self.stat(&location)
                })
                .collect();
            return futures::stream::iter(metas).boxed();
        }
        let visible = self.visible.clone();
        let prefix = prefix.cloned();
        let listed = self.inner.list(prefix.as_ref());
        futures::stream::once(async move {
            let listed: Vec<ObjectMeta> = listed.try_collect().await?;
            let names: HashSet<&str> = listed.iter().map(|m| m.location.as_ref()).collect();
            visible.check(prefix.as_ref(), |f| names.contains(f))?;
            let seen: Vec<Res<ObjectMeta>> = listed
                .into_iter()
                .filter(|m| visible.sees(&m.location))
                .map(Ok)
                .collect();
            Res::Ok(futures::stream::iter(seen))
        })
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Res<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        // Every committed file under `prefix` is listed, or under a listed
        // directory (a directory that is gone takes its files with it).
        let dirs: Vec<String> = listed
            .common_prefixes
            .iter()
            .map(|d| format!("{}/", d.as_ref()))
            .collect();
        let names: HashSet<&str> = listed.objects.iter().map(|m| m.location.as_ref()).collect();
        self.visible.check(prefix, |f| {
            names.contains(f) || dirs.iter().any(|d| f.starts_with(d.as_str()))
        })?;
        listed.objects.retain(|m| self.visible.sees(&m.location));
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Res<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::{GetRange, ObjectStoreExt};

    /// Reads served from a map give the bytes the file system's reads give,
    /// for every kind of range; a bad range is the file system's error.
    #[tokio::test]
    async fn mapped_reads_equal_the_file_systems() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("f.parquet"), &data).unwrap();
        std::fs::write(dir.path().join("empty.parquet"), b"").unwrap();
        let store = CommittedStore::new(&lake, &LakeState::default()).unwrap();
        let fs = LocalFileSystem::new();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let loc = Path::from_absolute_path(root.join("f.parquet")).unwrap();
        assert!(store.mapped(&loc).is_some(), "a lake file is mapped");

        assert_eq!(store.get(&loc).await.unwrap().bytes().await.unwrap(), data);
        assert_eq!(
            store.get_range(&loc, 10..4_000).await.unwrap(),
            data[10..4_000]
        );
        for range in [
            GetRange::Bounded(9_000..10_000),
            GetRange::Offset(9_990),
            GetRange::Suffix(8),
            GetRange::Suffix(50_000),
        ] {
            let opts = || GetOptions {
                range: Some(range.clone()),
                ..Default::default()
            };
            let ours = store.get_opts(&loc, opts()).await.unwrap();
            let theirs = fs.get_opts(&loc, opts()).await.unwrap();
            assert_eq!(ours.range, theirs.range, "{range:?}");
            assert_eq!(ours.meta.size, theirs.meta.size);
            assert_eq!(
                ours.bytes().await.unwrap(),
                theirs.bytes().await.unwrap(),
                "{range:?}"
            );
        }
        let ranges = [0..1, 5..5, 100..9_000, 9_999..10_000];
        assert_eq!(
            store.get_ranges(&loc, &ranges).await.unwrap(),
            fs.get_ranges(&loc, &ranges).await.unwrap()
        );
        // Past the end, or starting after it: what the file system does.
        for range in [9_000..10_001, 10_500..10_600, 0..20_000] {
            let ours = store.get_range(&loc, range.clone()).await;
            let theirs = fs.get_range(&loc, range.clone()).await;
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{range:?}");
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                assert_eq!(a, b, "{range:?}");
            }
            let ours = store.get_ranges(&loc, std::slice::from_ref(&range)).await;
            let theirs = fs.get_ranges(&loc, std::slice::from_ref(&range)).await;
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{range:?}");
        }
        // Empty and missing files are read by the file system.
        let empty = Path::from_absolute_path(root.join("empty.parquet")).unwrap();
        assert!(store.mapped(&empty).is_none());
        assert!(
            store
                .get(&empty)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .is_empty()
        );
        let missing = Path::from_absolute_path(root.join("missing.parquet")).unwrap();
        assert!(matches!(
            store.get(&missing).await,
            Err(datafusion::object_store::Error::NotFound { .. })
        ));
    }

    /// A lake path is the object-store path `Path::from_absolute_path`
    /// gives, plain or not, at any root.
    #[test]
    fn object_paths_are_the_object_stores() {
        let dir = tempfile::tempdir().unwrap();
        for root in [
            std::fs::canonicalize(dir.path()).unwrap(),
            dir.path().join("a lake%20with é"),
            std::path::PathBuf::from("/"),
        ] {
            let base = object_path(&root, None, "").unwrap();
            for rel in [
                "bronze/events/event_date=2024-03-01/part-0f-00001.parquet",
                "state/.problems/balances/ledger/as_of=20240429T235959.999999Z/part.parquet",
                "silver/events",
                "odd name/x%41.parquet",
                "a/./b",
                "a/../b",
                "é/x",
            ] {
                assert_eq!(
                    object_path(&root, Some(&base), rel).ok(),
                    Path::from_absolute_path(root.join(rel))
                        .ok()
                        .map(|p| p.to_string()),
                    "{} {rel}",
                    root.display()
                );
            }
        }
    }

    /// A table directory's listing is its committed files, with the
    /// metadata the file system's listing gives them; orphans are left
    /// out, a committed file not on disk is an error, and a directory
    /// outside the tables lists as on disk.
    #[tokio::test]
    async fn a_table_lists_as_its_committed_files() {
        let tmp = tempfile::tempdir().unwrap();
        // A lake whose own path needs encoding in an object-store path.
        let dir = tmp.path().join("a lake %41 é");
        std::fs::create_dir_all(&dir).unwrap();
        let lake = Lake::new(&dir);
        let table = |rel: &str| dir.join(crate::bronze::DIR).join(rel);
        for rel in [
            "event_date=2024-03-01/a.parquet",
            "event_date=2024-03-02/b.parquet",
            "event_date=2024-03-02/odd%41 name é.parquet",
        ] {
            std::fs::create_dir_all(table(rel).parent().unwrap()).unwrap();
            std::fs::write(table(rel), rel.as_bytes()).unwrap();
        }
        std::fs::write(table("event_date=2024-03-02/orphan.parquet"), b"x").unwrap();
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::fs::write(dir.join("elsewhere/c.parquet"), b"c").unwrap();
        let file = |partition: &str, name: &str| {
            let path = format!("{}/event_date={partition}/{name}", crate::bronze::DIR);
            let action: crate::log::FileAction = serde_json::from_value(serde_json::json!({
                "table": "bronze_events", "partition": partition, "path": path,
                "rows": 1, "bytes": format!("event_date={partition}/{name}").len(),
            }))
            .unwrap();
            (path, action)
        };
        let mut state = LakeState::default();
        let parts = state.tables.entry("bronze_events".into()).or_default();
        for (partition, name) in [
            ("2024-03-01", "a.parquet"),
            ("2024-03-02", "b.parquet"),
            // Not a name evlake writes: its object-store path is encoded.
            ("2024-03-02", "odd%41 name é.parquet"),
        ] {
            let p = parts.entry(partition.into()).or_default();
            let (path, action) = file(partition, name);
            p.files.insert(path, action);
        }
        let store = CommittedStore::new(&lake, &state).unwrap();
        let fs = LocalFileSystem::new();
        let root = std::fs::canonicalize(&dir).unwrap();
        let at = |rel: &str| Path::from_absolute_path(root.join(rel)).unwrap();
        let sorted = |mut v: Vec<ObjectMeta>| {
            v.sort_by(|a, b| a.location.cmp(&b.location));
            v
        };
        for prefix in [
            crate::bronze::DIR.to_string(),
            format!("{}/event_date=2024-03-02", crate::bronze::DIR),
        ] {
            let ours: Vec<ObjectMeta> = store.list(Some(&at(&prefix))).try_collect().await.unwrap();
            let mut theirs: Vec<ObjectMeta> =
                fs.list(Some(&at(&prefix))).try_collect().await.unwrap();
            theirs.retain(|m| !m.location.as_ref().ends_with("orphan.parquet"));
            assert!(!ours.is_empty());
            assert_eq!(ours, sorted(theirs), "{prefix}");
        }
        let elsewhere: Vec<ObjectMeta> = store
            .list(Some(&at("elsewhere")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(elsewhere.len(), 1);
        // Listed from the lake's root, or from the directory it is in, by
        // the file system: every file but the orphan, the committed ones
        // checked.
        let parent = Path::from_absolute_path(root.parent().unwrap()).unwrap();
        for prefix in [at(""), parent.clone()] {
            let ours = sorted(store.list(Some(&prefix)).try_collect().await.unwrap());
            let mut theirs: Vec<ObjectMeta> = fs.list(Some(&prefix)).try_collect().await.unwrap();
            theirs.retain(|m| !m.location.as_ref().ends_with("orphan.parquet"));
            assert_eq!(ours.len(), 4, "{prefix}");
            assert_eq!(ours, sorted(theirs), "{prefix}");
        }
        let by_dir = store
            .list_with_delimiter(Some(&at("bronze/events/event_date=2024-03-02")))
            .await
            .unwrap();
        let mut names: Vec<&str> = by_dir
            .objects
            .iter()
            .map(|m| m.location.filename().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["b.parquet", "odd%41 name é.parquet"]);

        std::fs::remove_file(table("event_date=2024-03-02/odd%41 name é.parquet")).unwrap();
        for prefix in [at(crate::bronze::DIR), at(""), parent] {
            let listed: Res<Vec<ObjectMeta>> = store.list(Some(&prefix)).try_collect().await;
            assert!(
                matches!(
                    listed,
                    Err(datafusion::object_store::Error::NotFound { .. })
                ),
                "{prefix}: {listed:?}"
            );
        }
        // A committed file of another size than the log's (cut short, or
        // another file under its name): the table's listing names it.
        std::fs::write(table("event_date=2024-03-01/a.parquet"), b"short").unwrap();
        let listed: Res<Vec<ObjectMeta>> = store
            .list(Some(&at("bronze/events/event_date=2024-03-01")))
            .try_collect()
            .await;
        let e = listed.unwrap_err().to_string();
        assert!(
            e.contains(
                "`bronze/events/event_date=2024-03-01/a.parquet`: committed to the lake, but not \
                 the file the log names: 5 bytes on disk, 31 in the log"
            ),
            "{e}"
        );
    }
}
