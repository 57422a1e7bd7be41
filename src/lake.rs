//! The lake on disk: paths, the single-writer lock, staging, and the
//! write-temp → fsync → rename discipline that keeps crashes harmless.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::Failure;

/// The metadata directory inside the lake.
pub const META_DIR: &str = "_evlake";

/// A lake rooted at a directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Lake {
        Lake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An absolute-or-relative path for a lake-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Fail (exit 2) unless a lake exists here: a mistyped `--lake` must
    /// not look like an empty, up-to-date lake to a scheduler. A lake is
    /// created by `evlake ingest` (or `init`, or `run` with inputs).
    pub fn require(&self) -> Result<()> {
        if self.root.join(META_DIR).is_dir() || self.root.join(crate::config::FILE).is_file() {
            return Ok(());
        }
        Err(crate::error::Failure::Usage(format!(
            "no lake at `{}` (create one with `evlake ingest` or `evlake init`, or pass --lake)",
            self.root.display()
        ))
        .into())
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join(META_DIR).join("log")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(META_DIR).join("staging")
    }

    /// `_evlake/clean`: there while the table directories hold exactly
    /// what the log references, so the next writer need not list them all
    /// for orphans (see [`crate::log::clean_orphans`]). [`publish`] removes
    /// it, durably, before its first rename; a writer creates it again
    /// once its commit is written and the files it replaced are deleted.
    /// A writer that crashes in between leaves it missing (one that fails
    /// removes what it published before it lets go of the lock, see
    /// [`WriteLock`]); so does an older evlake, which never created it.
    fn clean_mark(&self) -> PathBuf {
        self.root.join(META_DIR).join("clean")
    }

    /// Are the table directories known to hold only committed files?
    pub fn known_clean(&self) -> bool {
        self.clean_mark().exists()
    }

    /// The table directories are about to change: no longer known clean,
    /// durably so before the change.
    pub fn mark_changing(&self) -> Result<()> {
        if let Ok(mut changing) = CHANGING.lock() {
            changing.insert(self.root.clone());
        }
        let mark = self.clean_mark();
        match fs::remove_file(&mark) {
            Ok(()) => fsync_dir(mark.parent().expect("under the meta dir")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to remove `{}`", mark.display())),
        }
    }

    /// The table directories hold only committed files again. Best effort
    /// and not fsynced: a mark lost costs the next writer a listing.
    pub fn mark_clean(&self) {
        if let Ok(mut changing) = CHANGING.lock() {
            changing.remove(&self.root);
        }
        let _ = File::create(self.clean_mark());
    }

    /// Take the single-writer lock. If another process holds it, wait up
    /// to [`set_lock_wait`]'s duration (none by default), then fail with
    /// [`Failure::Locked`] (exit 3). The lock is an advisory `flock` on
    /// `_evlake/lock`, so the kernel releases it when a writer dies, even
    /// by `kill -9`.
    pub fn lock(&self) -> Result<WriteLock> {
        let meta = self.root.join(META_DIR);
        fs::create_dir_all(&meta)
            .with_context(|| format!("failed to create lake directory `{}`", meta.display()))?;
        let path = meta.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                // A lake another user owns: readers (query, status, state)
                // need no write access, every writer does.
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (writers, and their dry runs, take the lake's lock, which the user this \
                     runs as may not write: run it as the lake's owner; query, status and \
                     state only read)"
                } else {
                    ""
                };
                anyhow::Error::new(e).context(format!(
                    "failed to open lock file `{}`{hint}",
                    path.display()
                ))
            })?;
        let wait = LOCK_WAIT.get().copied().unwrap_or_default();
        let deadline = std::time::Instant::now() + wait;
        let mut said = false;
        // From the first lock on, a signal stops this process at a safe
        // point (see crate::interrupt), waiting for the lock included.
        crate::interrupt::install();
        loop {
            crate::interrupt::check()?;
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.seek(SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut text);
                    let pid: Option<u32> = text.trim().parse().ok();
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return Err(Failure::Locked {
                            lock_path: path.display().to_string(),
                            pid,
                            waited_us: wait.as_micros() as i64,
                        }
                        .into());
                    }
                    if !said {
                        said = true;
                        let holder =
                            pid.map_or("another process".to_string(), |p| format!("pid {p}"));
                        crate::commands::status(
                            "Waiting",
                            format!(
                                "for the lake's lock, held by {holder} (up to {})",
                                crate::time::format_duration_micros(wait.as_micros() as i64)
                            ),
                        );
                    }
                    std::thread::sleep(LOCK_POLL.min(deadline - now));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("failed to lock `{}`", path.display()));
                }
            }
        }
        crate::interrupt::check()?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(WriteLock {
            lake: self.clone(),
            _file: file,
        })
    }
}

/// The lakes this process marked changing ([`Lake::mark_changing`]) and
/// has not marked clean since: a writer that failed in between (see
/// [`WriteLock`]'s drop).
static CHANGING: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// How long [`Lake::lock`] waits for another writer (`--lock-wait`).
static LOCK_WAIT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// How often a waiting [`Lake::lock`] tries again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Make every [`Lake::lock`] of this process wait up to `wait` for a lock
/// another writer holds (set once, from `--lock-wait`).
pub fn set_lock_wait(wait: std::time::Duration) {
    let _ = LOCK_WAIT.set(wait);
}

/// Held while a command writes to the lake; dropping it releases the lock.
#[derive(Debug)]
pub struct WriteLock {
    lake: Lake,
    _file: File,
}

impl Drop for WriteLock {
    /// A writer that failed after it began to change the table directories
    /// and before its commit finished (a full disk, a query that failed)
    /// removes the files no commit references, while it still holds the
    /// lock, instead of leaving them to the next writer: on a full disk
    /// they would hold the space, and readers globbing the directories
    /// would see them. (The staged ones its [`Staging`] guard removed.) A
    /// killed writer, or one whose cleanup fails, leaves them to the next.
    fn drop(&mut self) {
        let changing = CHANGING.lock().is_ok_and(|mut c| c.remove(&self.lake.root));
        if changing && !std::thread::panicking() && !self.lake.known_clean() {
            crate::log::clean_after_failed_write(&self.lake);
        }
    }
}

/// The scheme of `path` if it is written as a URL (`s3://bucket/key`):
/// letters, digits, `+`, `-` or `.` after a letter, then `://`. evlake
/// reads and writes local paths only; `./s3://x` is a local path.
pub fn url_scheme(path: &Path) -> Option<&str> {
    let text = path.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    (scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Create `dir` and its parents, then fsync the parent of `dir` so the new
/// directory entry survives a crash.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// fsync a directory so renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    // The parent of a relative `lake` is ``: the working directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let d = File::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
    d.sync_all()
        .with_context(|| format!("failed to fsync `{}`", dir.display()))
}

/// Run `f` on every item on up to [`IO_THREADS`] threads: for calls that
/// wait on the disk (fsync, unlink), not the CPU, so more of them in flight
/// than there are cores. The first error wins.
pub fn par_io<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    par_io_on(IO_THREADS, items, f)
}

/// [`par_io`] on up to `threads` threads.
fn par_io_on<T: Sync>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().try_for_each(&f);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match items.get(i) {
                            Some(item) => f(item)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        // (The scope joins any worker left when one fails.)
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("an I/O thread panicked"))
    })
}

/// A run's staging directory (`_evlake/staging/NAME-PID`), removed with
/// everything in it when dropped: after the run's commit, and on an error
/// return as well, so a failed run (a full disk, a query that fails) does
/// not keep its staged bytes until the next writer's orphan cleanup. A
/// killed process never drops it; the next writer removes it then.
pub struct Staging(PathBuf);

impl Staging {
    pub fn create(lake: &Lake, name: &str) -> Result<Staging> {
        let dir = lake
            .staging_dir()
            .join(format!("{name}-{}", std::process::id()));
        fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        Ok(Staging(dir))
    }
}

impl std::ops::Deref for Staging {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// A run directory found in `_evlake/staging/` (see [`Lake::staging_dirs`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StagingDir {
    /// `silver-4711`: the operation and the process id that created it.
    pub name: String,
    pub bytes: u64,
    /// Is that process still running (on this machine)? `None` where
    /// evlake cannot tell.
    pub running: Option<bool>,
}

impl Lake {
    /// The run directories in staging, with their sizes: a writer's files
    /// in flight, or what a killed one left for the next writer to remove.
    pub fn staging_dirs(&self) -> Vec<StagingDir> {
        fn size(p: &Path) -> u64 {
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => fs::read_dir(p)
                    .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                    .unwrap_or(0),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        }
        let Ok(entries) = fs::read_dir(self.staging_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<StagingDir> = entries
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name
                    .rsplit_once('-')
                    .and_then(|(_, p)| p.parse::<u32>().ok());
                let running = if cfg!(target_os = "linux") {
                    pid.map(process_running)
                } else {
                    None
                };
                StagingDir {
                    bytes: size(&e.path()),
                    name,
                    running,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Is process `pid` running (Linux)? A zombie is not: a writer killed a
/// moment ago stays one until its parent reaps it.
fn process_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

/// Remove `dir` and everything under it, best effort (a staging
/// directory: what is left is removed with the next run's orphans). The
/// directories two levels down (`table/column=value`) go in parallel.
pub fn remove_tree(dir: &Path) {
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        fs::read_dir(d)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let leaves: Vec<PathBuf> = subdirs(dir).iter().flat_map(|d| subdirs(d)).collect();
    let _ = par_io(&leaves, |d| {
        let _ = fs::remove_dir_all(d);
        Ok(())
    });
    let _ = fs::remove_dir_all(dir);
}

/// Threads [`par_io`] uses at most.
pub const IO_THREADS: usize = 16;

/// Threads each [`presync`] uses at most.
const PRESYNC_THREADS: usize = 2;

/// fsync a file's data and metadata.
pub fn fsync_file(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    f.sync_all()
        .with_context(|| format!("failed to fsync `{}`", path.display()))
}

/// Move staged files to their places in the lake, durably, before the
/// commit that names them is written (the lake is no longer known clean:
/// see [`Lake::mark_changing`]): every file's data is fsynced before any
/// is renamed (once the flushes [`presync`] and [`presync_file`] started
/// are done, so mostly a check of clean files). A staged partition
/// directory that holds exactly the files bound for a partition directory
/// the lake does not have yet (a new date) goes whole: its files are
/// renamed to their lake names inside it, it is fsynced, and it is renamed
/// into place, which saves a `mkdir` in the lake and an `rmdir` in staging
/// per file (a backfill of ten years writes ~30k of them; on ext4 without
/// a journal each new inode is found by skipping recently freed ones).
/// Other files are renamed one by one into their directories. Each
/// destination directory is created durably, and fsynced once after the
/// renames. The calls run on [`par_io`]'s threads; the first rename comes
/// alone, followed by the `renamed` fault point.
pub fn publish(lake: &Lake, moves: &[(PathBuf, PathBuf)]) -> Result<()> {
    lake.mark_changing()?;
    let started: Vec<_> = PRESYNCS
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    for h in started {
        let _ = h.join();
    }
    if let Some(q) = FILE_SYNCS.get() {
        q.shared.wait();
    }
    par_io(moves, |(from, _)| fsync_file(from))?;
    let plan = MovePlan::of(moves)?;
    par_io(&plan.dirs, |d| {
        for (from, to) in &d.files {
            fs::rename(from, to).with_context(|| {
                format!(
                    "failed to rename `{}` to `{}`",
                    from.display(),
                    to.display()
                )
            })?;
        }
        fsync_dir(&d.from)
    })?;
    let renames: Vec<(&Path, &Path)> = plan
        .dirs
        .iter()
        .map(|d| (d.from.as_path(), d.to.as_path()))
        .chain(plan.files.iter().map(|(f, t)| (f.as_path(), t.as_path())))
        .collect();
    // Where the renames land: created durably first, fsynced after.
    let parents = renames
        .iter()
        .map(|(_, to)| to.parent().context("destination has no parent"))
        .collect::<Result<std::collections::BTreeSet<&Path>>>()?;
    let parents: Vec<&Path> = parents.into_iter().collect();
    par_io(&parents, |p| create_dir_durable(p))?;
    let rename = |(from, to): &(&Path, &Path)| {
        fs::rename(from, to)
            .with_context(|| format!("failed to move `{}` to `{}`", from.display(), to.display()))
    };
    let Some((first, rest)) = renames.split_first() else {
        return Ok(());
    };
    rename(first)?;
    crate::fault::point("renamed")?;
    par_io(rest, rename)?;
    par_io(&parents, |p| fsync_dir(p))
}

/// How [`publish`] moves its files: whole staged directories, and single
/// files.
struct MovePlan<'a> {
    dirs: Vec<DirMove>,
    files: Vec<&'a (PathBuf, PathBuf)>,
}

/// A staged directory that becomes a new directory of the lake, and the
/// renames inside it that give its files their lake names first.
struct DirMove {
    from: PathBuf,
    to: PathBuf,
    files: Vec<(PathBuf, PathBuf)>,
}

impl<'a> MovePlan<'a> {
    fn of(moves: &'a [(PathBuf, PathBuf)]) -> Result<MovePlan<'a>> {
        let mut by_dest = std::collections::BTreeMap::<&Path, Vec<&(PathBuf, PathBuf)>>::new();
        for m in moves {
            by_dest
                .entry(m.1.parent().context("destination has no parent")?)
                .or_default()
                .push(m);
        }
        let mut plan = MovePlan {
            dirs: Vec::new(),
            files: Vec::new(),
        };
        for (to, group) in by_dest {
            let from = group[0].0.parent().context("staged file has no parent")?;
            if goes_whole(from, to, &group) {
                plan.dirs.push(DirMove {
                    from: from.to_path_buf(),
                    to: to.to_path_buf(),
                    files: group
                        .iter()
                        .filter(|m| m.0.file_name() != m.1.file_name())
                        .map(|m| (m.0.clone(), from.join(m.1.file_name().expect("checked"))))
                        .collect(),
                });
            } else {
                plan.files.extend(group);
            }
        }
        Ok(plan)
    }
}

/// Can staged directory `from` become the lake's `to` with `group`'s
/// files in it? It is the partition's directory, named as in the lake,
/// holds these files and nothing else, the lake has no `to` yet, and no
/// file's lake name is another one's staged name.
fn goes_whole(from: &Path, to: &Path, group: &[&(PathBuf, PathBuf)]) -> bool {
    use std::collections::BTreeSet;
    use std::ffi::OsStr;
    if from.file_name() != to.file_name() || group.iter().any(|m| m.0.parent() != Some(from)) {
        return false;
    }
    if !matches!(fs::symlink_metadata(to), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        return false;
    }
    let Some(staged) = group
        .iter()
        .map(|m| m.0.file_name())
        .collect::<Option<BTreeSet<&OsStr>>>()
    else {
        return false;
    };
    let Ok(entries) = fs::read_dir(from) else {
        return false;
    };
    let present: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    present.len() == staged.len()
        && present.iter().all(|n| staged.contains(n.as_os_str()))
        && group.iter().all(|m| match m.1.file_name() {
            Some(name) => m.0.file_name() == Some(name) || !staged.contains(name),
            None => false,
        })
}

/// Start flushing a just-written (not yet published) `file` to disk in the
/// background, like [`presync`] for a directory: [`publish`] waits for it,
/// and its own fsync then finds the file clean (and reports any error:
/// this one is best effort). Ingest writes a file per date per flush from
/// rayon workers; each fsync there held a worker for the disk's latency
/// (1M ingest, 10 alternating runs: median 0.916 -> 0.899 s). The files
/// queue for [`FILE_SYNC_THREADS`] threads, so a flush of thousands of
/// dates starts no more threads than that, and holds no more than
/// [`FILE_SYNC_QUEUE`] of them open waiting; without any (none could be
/// started), the file is flushed here.
pub fn presync_file(file: File) {
    let q = file_syncs();
    let Some(tx) = &q.tx else {
        let _ = file.sync_all();
        return;
    };
    q.shared.queued();
    // (Waits for room in the queue, not holding the lock meanwhile.)
    let tx = tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(back) = tx.send(file) {
        q.shared.finished();
        let _ = back.0.sync_all();
    }
}

/// Threads flushing the files [`presync_file`] queues.
const FILE_SYNC_THREADS: usize = 4;

/// Files [`presync_file`] holds open, queued, at most.
const FILE_SYNC_QUEUE: usize = 32;

struct FileSyncs {
    /// `None` when no thread could be started.
    tx: Option<std::sync::Mutex<std::sync::mpsc::SyncSender<File>>>,
    shared: std::sync::Arc<SyncCount>,
}

/// Files queued and flushed so far, and a signal when one is done.
#[derive(Default)]
struct SyncCount {
    /// (queued, flushed).
    counts: std::sync::Mutex<(u64, u64)>,
    done: std::sync::Condvar,
}

impl SyncCount {
    fn counts(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queued(&self) {
        self.counts().0 += 1;
    }

    fn finished(&self) {
        self.counts().1 += 1;
        self.done.notify_all();
    }

    /// Block until as many files were flushed as had been queued when
    /// called: files queued later (by another thread) do not hold it up.
    /// Not necessarily the same files, as the threads finish in any order:
    /// a wait to save [`publish`] flushing them at the same time, not
    /// what makes them durable (its own fsync does).
    fn wait(&self) {
        let mut c = self.counts();
        let target = c.0;
        while c.1 < target {
            c = self.done.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

static FILE_SYNCS: std::sync::OnceLock<FileSyncs> = std::sync::OnceLock::new();

/// The queue of [`presync_file`], its threads started on first use.
fn file_syncs() -> &'static FileSyncs {
    FILE_SYNCS.get_or_init(|| {
        // Bounded: a queued file stays open until it is flushed, and a
        // flush of thousands of dates queued files faster than the disk
        // took them, up to the process's limit of open files ("Too many
        // open files" at 1,230 files of a 6,000-date backfill under
        // `ulimit -n 256`). A writer waits for room instead.
        let (tx, rx) = std::sync::mpsc::sync_channel::<File>(FILE_SYNC_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let shared = std::sync::Arc::new(SyncCount::default());
        let started = (0..FILE_SYNC_THREADS)
            .filter(|i| {
                let (rx, shared) = (rx.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("evlake-fsync-{i}"))
                    .spawn(move || {
                        loop {
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(file) = next else { return };
                            let _ = file.sync_all();
                            drop(file);
                            shared.finished();
                        }
                    })
                    .is_ok()
            })
            .count();
        FileSyncs {
            tx: (started > 0).then(|| std::sync::Mutex::new(tx)),
            shared,
        }
    })
}

/// Background flushes started by [`presync`], which [`publish`] waits for.
static PRESYNCS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Start writing the files under `dir` (just written, not yet published)
/// to disk in the background, while the run computes what comes next, so
/// that [`publish`]'s fsyncs later find most of them clean (a 1M-event
/// silver --full spent ~0.1 s there, after its last table was written).
/// Best effort: a file renamed or removed meanwhile is skipped, and
/// `publish` still fsyncs every file it moves.
pub fn presync(dir: &Path) {
    let dir = dir.to_path_buf();
    let handle = std::thread::spawn(move || {
        let Ok(files) = list_files(&dir, &dir) else {
            return;
        };
        let files: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        // Few threads: these flushes overlap the run's computing, and a
        // run makes many writes (each thread started costs CPU).
        let _ = par_io_on(PRESYNC_THREADS, &files, |f| {
            let _ = fsync_file(f);
            Ok(())
        });
    });
    if let Ok(mut v) = PRESYNCS.lock() {
        v.push(handle);
    }
}

/// Write `bytes` to a file that appears at `path` whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("path has no parent")?;
    create_dir_durable(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f =
            File::create(&tmp).with_context(|| format!("failed to create `{}`", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("failed to move `{}` into place", path.display()))?;
    fsync_dir(parent)
}

/// Every regular file under `dir` (recursively), as paths relative to `base`
/// with `/` separators. A missing `dir` has no files.
pub fn list_files(base: &Path, dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", d.display())),
        };
        for entry in entries {
            let entry = entry?;
            let ft = entry.file_type()?;
            let p = entry.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(base).unwrap_or(&p);
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Is `name` usable as the name of a lake's own SQL file's table or model
/// (lowercase letters, digits and `_`)? SQL reads an unquoted name in
/// lowercase and DataFusion registered `MyTable` where no query found it
/// (and `Purchases` as `purchases`, clashing with the built-in table, so
/// that every query of the lake failed); on a case-insensitive file
/// system the two directories would be one.
pub fn is_sql_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Can `name` (one [`is_sql_name`] takes) be written as a table in a
/// query, unquoted? `SELECT * FROM name` must parse with `name` as its
/// table: a name starting with a digit (`2024_plays`) does not, nor
/// `table`, `lateral` or `unnest`, so a table of that name could be read
/// only as `"2024_plays"`. (Other keywords, `select` or `order`, do.)
pub fn reads_as_table(name: &str) -> bool {
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
    let sql = format!("SELECT * FROM {name}");
    Parser::parse_sql(&GenericDialect {}, &sql)
        .is_ok_and(|parsed| parsed.len() == 1 && parsed[0].to_string() == sql)
}

/// What is wrong with `name` as the name of a lake's own table (read
/// from `path`, whose kind of table is `what`), if anything.
pub fn table_name_problem(name: &str, path: &Path, what: &str) -> Option<String> {
    if !is_sql_name(name) {
        return Some(format!(
            "`{}`: {what}'s name is {SQL_NAME_RULE}",
            path.display()
        ));
    }
    if !reads_as_table(name) {
        return Some(format!(
            "`{}`: `{name}` cannot name a table: `SELECT * FROM {name}` does not parse (a name \
             that starts with a digit, or a word SQL reserves there); rename the file",
            path.display()
        ));
    }
    None
}

/// What [`is_sql_name`] asks, for its errors.
pub const SQL_NAME_RULE: &str =
    "lowercase letters, digits and _ (SQL reads an unquoted name in lowercase)";

/// The text of a lake's own SQL file: one that is not UTF-8 is a bad
/// file (exit 2 naming it, as SQL that does not parse is), not an I/O
/// error. A byte-order mark is dropped (see [`without_bom`]).
pub fn read_sql_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(without_bom)
        .map_err(|e| read_sql_error(path, e))
}

/// `text` without the UTF-8 byte-order mark a Windows editor (Notepad,
/// Visual Studio, Excel's "UTF-8 CSV") puts at its start: SQL's parser
/// took it for the first token (`found: \u{feff}`), and a model's
/// `-- name:` line after it went unseen.
pub fn without_bom(text: String) -> String {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Is the file at `path` UTF-16 text (a byte-order mark of either
/// order first), as PowerShell's `>` and Notepad may save one?
pub fn is_utf16(path: &Path) -> bool {
    let mut start = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut start))
        .is_ok_and(|()| start == [0xFF, 0xFE] || start == [0xFE, 0xFF])
}

/// [`read_sql_file`]'s error for `e`.
pub fn read_sql_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        let why = if is_utf16(path) {
            "it is UTF-16; save it as UTF-8".to_string()
        } else {
            e.to_string()
        };
        crate::error::Failure::Usage(format!("`{}`: not UTF-8 text: {why}", path.display())).into()
    } else {
        anyhow::Error::new(e).context(format!("failed to read `{}`", path.display()))
    }
}

/// The `*.sql` files directly in `dir` (none if it does not exist), each
/// with its name without `.sql`, in name order. One whose name ends in
/// `.sql` in another case (`x.SQL`, as some editors save it) is a usage
/// error naming it: it would be passed over without a word.
pub fn sql_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries {
            let path = e?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(name) = file.strip_suffix(".sql") {
                out.push((name.to_string(), path.clone()));
            } else if file.len() > 4
                && file.is_char_boundary(file.len() - 4)
                && file[file.len() - 4..].eq_ignore_ascii_case(".sql")
            {
                return Err(crate::error::Failure::Usage(format!(
                    "`{}`: evlake reads files named `*.sql`, in lowercase: rename it `{}.sql`",
                    path.display(),
                    &file[..file.len() - 4]
                ))
                .into());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// For a dry run: if the lake did not exist yet, what the run created of
/// it (its lock file, an empty staging directory, the lake directory if
/// it was new) is removed when this is dropped, so a dry run leaves no
/// trace (a mistyped `--lake` gets no empty lake). Only empty
/// directories and the lock file are removed.
pub struct NoTrace {
    root: PathBuf,
    root_existed: bool,
    meta_existed: bool,
}

impl Lake {
    pub fn no_trace(&self) -> NoTrace {
        NoTrace {
            root: self.root.clone(),
            root_existed: self.root.exists(),
            meta_existed: self.root.join(META_DIR).exists(),
        }
    }
}

impl Drop for NoTrace {
    fn drop(&mut self) {
        if self.meta_existed {
            return;
        }
        let meta = self.root.join(META_DIR);
        let _ = fs::remove_dir(meta.join("staging"));
        let _ = fs::remove_file(meta.join("lock"));
        let _ = fs::remove_dir(&meta);
        if !self.root_existed {
            let _ = fs::remove_dir(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_name_must_read_as_a_table_unquoted() {
        for name in [
            "plays",
            "select",
            "order",
            "user",
            "date",
            "plays_2024",
            "_x",
        ] {
            assert!(reads_as_table(name), "{name}");
        }
        for name in ["2024_plays", "123", "1e5", "table", "lateral", "unnest"] {
            assert!(!reads_as_table(name), "{name}");
        }
    }
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Files queued for flushing are all flushed before `wait` returns,
    /// by a bounded number of threads however many files are queued.
    #[test]
    fn presync_file_flushes_every_file_on_a_few_threads() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            let mut f = File::create(dir.path().join(format!("{i}.bin"))).unwrap();
            f.write_all(&[i as u8; 4096]).unwrap();
            presync_file(f);
        }
        let threads = fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter(|t| {
                        fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.starts_with("evlake-fsync"))
                    })
                    .count()
            })
            .unwrap_or(0);
        assert!(threads <= FILE_SYNC_THREADS, "{threads} flushing threads");
        let q = FILE_SYNCS.get().expect("started by the first file");
        q.shared.wait();
        let (queued, flushed) = *q.shared.counts();
        assert!(
            queued >= 300 && flushed >= 300,
            "{queued} queued, {flushed} flushed"
        );
    }

    #[test]
    fn par_io_runs_every_item_once_and_reports_a_failure() {
        let items: Vec<usize> = (0..100).collect();
        let seen: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        par_io(&items, |i| {
            seen[*i].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));

        let err = par_io(&items, |i| {
            if *i == 37 {
                anyhow::bail!("item {i} failed")
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 37 failed");
    }

    /// A staged partition directory bound for a date the lake does not
    /// have goes whole; the rest move file by file, and every file lands
    /// under its lake name with its own bytes.
    #[test]
    fn publish_moves_new_partition_directories_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = Lake::new(tmp.path().join("lake"));
        let table = lake.path("silver/events");
        let staged = tmp.path().join("staging/events");
        fs::create_dir_all(table.join("event_date=2024-03-01")).unwrap();
        fs::write(table.join("event_date=2024-03-01/old.parquet"), b"old").unwrap();
        let mut moves = Vec::new();
        let mut stage = |date: &str, from: &str, to: &str| {
            let dir = staged.join(format!("event_date={date}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(from), format!("{date}/{from}")).unwrap();
            let dest = table.join(format!("event_date={date}")).join(to);
            moves.push((dir.join(from), dest));
        };
        stage("2024-03-01", "part-00000.parquet", "part-r-00000.parquet"); // the lake has it
        stage("2024-03-02", "part-00000.parquet", "part-r-00001.parquet"); // new: whole
        stage("2024-03-02", "part-00001.parquet", "part-r-00002.parquet");
        stage("2024-03-03", "part-00000.parquet", "part-r-00003.parquet"); // and a stray file
        fs::write(staged.join("event_date=2024-03-03/scratch"), b"x").unwrap();
        stage("2024-03-04", "a", "b"); // a lake name that is a staged one
        stage("2024-03-04", "b", "c");
        let expected: Vec<(PathBuf, String)> = moves
            .iter()
            .map(|(from, to)| (to.clone(), fs::read_to_string(from).unwrap()))
            .collect();

        publish(&lake, &moves).unwrap();

        for (to, bytes) in &expected {
            assert_eq!(&fs::read_to_string(to).unwrap(), bytes, "{}", to.display());
        }
        let staged_dir = |d: &str| staged.join(format!("event_date={d}"));
        assert!(!staged_dir("2024-03-02").exists(), "moved whole");
        for d in ["2024-03-01", "2024-03-03", "2024-03-04"] {
            assert!(staged_dir(d).is_dir(), "{d} moved file by file");
        }
        assert!(staged_dir("2024-03-03").join("scratch").exists());
        assert!(!table.join("event_date=2024-03-03/scratch").exists());
        assert_eq!(
            fs::read_dir(table.join("event_date=2024-03-02"))
                .unwrap()
                .count(),
            2
        );
        assert!(table.join("event_date=2024-03-01/old.parquet").exists());
    }

    #[test]
    fn remove_tree_removes_nested_staging() {
        let dir = std::env::temp_dir().join(format!("evlake-remove-tree-{}", std::process::id()));
        for t in ["events", "sessions"] {
            for d in ["event_date=2024-03-01", "event_date=2024-03-02"] {
                let leaf = dir.join(t).join(d);
                fs::create_dir_all(&leaf).unwrap();
                fs::write(leaf.join("part-0.parquet"), b"x").unwrap();
            }
        }
        fs::write(dir.join("loose"), b"x").unwrap();
        remove_tree(&dir);
        assert!(!dir.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_that_exited_but_is_not_reaped_is_not_running() {
        assert!(process_running(std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        assert!(process_running(child.id()));
        // Not waited for: a zombie until `wait`.
        let stat = format!("/proc/{}/stat", child.id());
        while !fs::read_to_string(&stat).unwrap().contains(") Z") {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!process_running(child.id()));
        child.wait().unwrap();
    }
}
