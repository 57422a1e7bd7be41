//! Input sources: files, directories and stdin; transparent gzip and zstd;
//! content hashing; and splitting a stream into line-aligned chunks.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};

/// One input to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// What the user gave (a path, a file found in a directory, or `<stdin>`).
    pub display: String,
    /// Where the bytes are (for stdin: the spooled copy, once spooled).
    pub path: Option<PathBuf>,
    /// Found by a directory walk, not named: one that cannot be read (see
    /// [`unread_file`]) is passed over, not an error.
    pub walked: bool,
}

impl Input {
    pub fn is_stdin(&self) -> bool {
        self.path.is_none()
    }
}

/// The display name of standard input in summaries, lineage and quarantine.
pub const STDIN: &str = "<stdin>";

const EXTENSIONS: &[&str] = &["jsonl", "ndjson", "json"];

/// Does a file name look like NDJSON input (optionally `.gz` / `.zst`),
/// perhaps a log rotation's copy of one: `app.jsonl.1` (logrotate's
/// default, Python's `RotatingFileHandler`), `app.jsonl-20240316`
/// (logrotate's `dateext`), `app.jsonl.2024-03-16` (Python's
/// `TimedRotatingFileHandler`), each optionally compressed
/// (`app.jsonl.2.gz`)? A rotated copy begins with what the log held, so
/// it is read on from where the last run stopped (see [`resume_point`]).
/// Other suffixes (`.part`, `.tmp`, `.bak`) are not inputs.
pub fn is_input_name(name: &str) -> bool {
    let base = without_compression(name);
    !name.starts_with('.')
        && EXTENSIONS.iter().any(|ext| {
            let ext = format!(".{ext}");
            base.match_indices(&ext).any(|(at, _)| {
                let rest = &base[at + ext.len()..];
                at > 0 && (rest.is_empty() || rotation_suffix(rest))
            })
        })
}

/// `name` without the `.gz` or `.zst` of a compression evlake reads.
fn without_compression(name: &str) -> &str {
    name.strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name)
}

/// A log rotation's suffix: `.`, `-` or `_`, then digits (`.1`,
/// `-20240316`, `.2024-03-16_10-00-00`).
fn rotation_suffix(rest: &str) -> bool {
    let mut chars = rest.chars();
    matches!(chars.next(), Some('.' | '-' | '_'))
        && rest[1..].starts_with(|c: char| c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && !rest.ends_with(['.', '-', '_'])
}

/// Which files a directory walk reads: those named as NDJSON inputs
/// ([`is_input_name`]), or, given `--include` patterns, those whose name
/// matches one of them (`*` for Kinesis Firehose's objects, which have no
/// extension). Hidden files (`.name`), `_`-prefixed ones and what is no
/// regular file are passed over either way.
#[derive(Debug, Clone, Default)]
pub struct Names {
    include: Vec<glob::Pattern>,
}

impl Names {
    /// The walk for `--include` patterns `patterns` (none: the default
    /// names). A pattern matches a file's name, not its path: one with a
    /// `/` is an error, as is one that is no glob.
    pub fn new(patterns: &[String]) -> std::result::Result<Names, String> {
        let include = patterns
            .iter()
            .map(|p| {
                if p.is_empty() {
                    return Err("an empty pattern matches no file name".to_string());
                }
                if p.contains('/') {
                    return Err(format!(
                        "`{p}` has a `/`, but a pattern matches a file's name, not its path \
                         (a directory given as an input is walked whole: give `{}` \
                         and the pattern `{}`)",
                        p.rsplit_once('/').map_or("", |(dir, _)| dir),
                        p.rsplit_once('/').map_or("", |(_, name)| name)
                    ));
                }
                glob::Pattern::new(p).map_err(|e| format!("`{p}` is not a glob: {e}"))
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Names { include })
    }

    /// Every name (for `retract DIR`, which looks for what was ingested
    /// from a directory, under whatever names it was walked with).
    pub fn any() -> Names {
        Names {
            include: vec![glob::Pattern::new("*").expect("a glob")],
        }
    }

    fn reads(&self, name: &str) -> bool {
        if self.include.is_empty() {
            is_input_name(name)
        } else {
            self.include.iter().any(|p| p.matches(name))
        }
    }

    /// Why a regular file named `name` is not read.
    fn passed_over(&self, name: &str) -> String {
        if !self.include.is_empty() {
            let patterns: Vec<String> = self
                .include
                .iter()
                .map(|p| format!("`{}`", p.as_str()))
                .collect();
            return format!(
                "its name matches no --include pattern ({})",
                patterns.join(", ")
            );
        }
        let lower = name.to_ascii_lowercase();
        let base = without_compression(&lower);
        // A name with no extension (Kinesis Firehose's objects), or one
        // where apps log JSON lines, may well be NDJSON; a CSV file has a
        // hint of its own, and others (`.part`, `.bz2`) are not to be read.
        let extension = base.rsplit_once('.').map(|(_, ext)| ext);
        let hint = if matches!(extension, Some("csv" | "tsv")) {
            format!("; to read a CSV file, {}", super::parse::CSV_TOOL)
        } else if matches!(extension, None | Some("log" | "txt" | "out")) {
            "; `--include GLOB` reads files named otherwise (`--include '*'` reads Kinesis \
             Firehose's objects, which have no extension)"
                .to_string()
        } else {
            String::new()
        };
        format!(
            "not *.jsonl, *.ndjson or *.json (optionally .gz or .zst), nor a rotated log's \
             copy of one (*.jsonl.1, *.jsonl-20240316){hint}"
        )
    }
}

/// Command-line inputs expanded (see [`resolve`]).
#[derive(Debug, Default)]
pub struct Resolved {
    pub inputs: Vec<Input>,
    /// Entries under the directories given that are not read (see
    /// [`Ignored`]), sorted by path: left alone, and reported so none goes
    /// unnoticed. Hidden files and directories (`.name`) are not listed.
    pub ignored: Vec<Ignored>,
}

/// What a symbolic link to `to` that cannot be followed (`e`) is.
fn broken_link(to: &Path, e: &io::Error) -> String {
    let to = to.display();
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            format!("a symbolic link to `{to}`, which leads back to itself (a loop of links)")
        }
        _ if e.kind() == io::ErrorKind::NotFound => {
            format!("a symbolic link to `{to}`, which does not exist")
        }
        _ => format!("a symbolic link to `{to}`, which cannot be followed ({e})"),
    }
}

/// An entry a directory walk passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ignored {
    pub path: String,
    pub why: String,
}

impl Ignored {
    /// Why `p`, met by a walk, is not read; `None` if it is an input. Only
    /// a regular file (or a link to one) is read: a link that leads
    /// nowhere or to a directory holds no input of its own, and opening a
    /// named pipe waits for a writer, for ever in a cron run. (Nor is a
    /// file evlake may not open or in a format it does not read, found
    /// once it is to be read: see [`Ignored::unread`].)
    fn of(p: &Path, ft: std::fs::FileType, names: &Names) -> Option<Ignored> {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let why = if ft.is_symlink() && p.is_dir() {
            "a symbolic link to a directory, not followed (name it as an input to read it)"
                .to_string()
        } else if let Some(e) = ft
            .is_symlink()
            .then(|| std::fs::metadata(p).err())
            .flatten()
        {
            let to = std::fs::read_link(p).unwrap_or_default();
            broken_link(&to, &e)
        } else if !(ft.is_file() || (ft.is_symlink() && p.is_file())) {
            "not a regular file (a named pipe, socket or device), not opened (name it as an \
             input to read it)"
                .to_string()
        } else if !names.reads(&name) {
            names.passed_over(&name)
        } else {
            return None;
        };
        Some(Ignored {
            path: p.display().to_string(),
            why,
        })
    }

    /// A walked input that cannot be read, and why (see
    /// [`unread_file`]): named as an input, it is an error saying so; in
    /// a walk it is passed over as a misnamed file is, so one such file in
    /// an inbox does not stop every run until someone removes it.
    pub fn unread(input: &Input, why: String) -> Ignored {
        Ignored {
            path: input.display.clone(),
            why,
        }
    }
}

/// Why the file at `path` cannot be read as input, if it is one that
/// cannot be whatever the run does: one the user evlake runs as may not
/// open (a producer's file left mode 0600), or one in a format evlake
/// does not read, known by its first bytes (see [`unread_format`]), or
/// JSON that is not NDJSON (see [`not_ndjson`]). Another failure to open
/// or read it is no such file here: reading it says what it is.
pub fn unread_file(path: &Path) -> Option<String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Some(
                "cannot be opened: permission denied (evlake runs as a user who may not \
                 read it)"
                    .to_string(),
            );
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(VANISHED.to_string()),
        Err(_) => return None,
    };
    let mut head = Vec::with_capacity(HEAD_PAGE);
    f.take(HEAD_PAGE as u64).read_to_end(&mut head).ok()?;
    if let Some((format, tool)) =
        unread_format(&head).or_else(|| compressed_tar(path, u64::MAX, &head))
    {
        return Some(format!("{format}, which evlake does not read: {tool}"));
    }
    let (what, tool) = not_ndjson(&head)?;
    Some(format!(
        "{what}, not NDJSON (one event object per line): {tool}"
    ))
}

/// A JSON file that is not NDJSON, known by its first bytes: an array
/// (`[` first; no NDJSON line of events starts so), or JSON written over
/// many lines (a first line that is a lone `{`), or objects run together
/// with no newline in its first [`HEAD_PAGE`] bytes (see
/// [`objects_run_on`](super::parse::objects_run_on)). A walk passes it over
/// (see [`unread_file`]): read, every line of it is a bad line, and a
/// pretty-printed `config.json` or export left in an inbox made each run
/// exit 4. Named as an input it is read, its lines quarantined with
/// what they are.
fn not_ndjson(head: &[u8]) -> Option<(&'static str, String)> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let text = text.trim_ascii_start();
    if text.starts_with(b"[") {
        return Some((
            "a JSON array",
            "`jq -c '.[]' FILE | evlake ingest -` writes one per line".to_string(),
        ));
    }
    let rest = text.strip_prefix(b"{")?;
    let Some(line_end) = memchr::memchr(b'\n', rest) else {
        // (A file with a newline this early is NDJSON, whose first line
        // may be a bad one: its lines are read, that one quarantined.)
        let run = super::parse::objects_run_on(text)?;
        return Some((
            run.what(),
            format!(
                "`{} | evlake ingest -` writes each on its own line",
                run.split()
            ),
        ));
    };
    rest[..line_end].trim_ascii().is_empty().then(|| {
        (
            "JSON written over many lines (pretty-printed)",
            "`jq -c . FILE | evlake ingest -` writes each object on one line".to_string(),
        )
    })
}

/// How much of a walked file's start [`unread_file`] looks at.
const HEAD_PAGE: usize = 4096;

/// Why a walked file is not read that was moved or deleted after the walk
/// listed it (another consumer of the inbox took it): it is not there to
/// read, and the run goes on without it.
pub const VANISHED: &str = "vanished after the run listed it (moved or deleted meanwhile), so \
                            nothing of it is read";

/// The error of opening walked input `display` to read it: one that
/// vanished since it was hashed is passed over (see [`PassOver`]).
pub fn open_error(display: &str, walked: bool, e: anyhow::Error) -> anyhow::Error {
    let gone = e
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound);
    if walked && gone {
        return PassOver(Ignored {
            path: display.to_string(),
            why: VANISHED.to_string(),
        })
        .into();
    }
    e.context(format!("`{display}`"))
}

/// Expand command-line inputs: `-` is stdin, a directory contributes its
/// NDJSON files (recursively, sorted by path), a file is taken as is.
/// For an input written as a URL (`s3://bucket/key`, with `scheme`)
/// that is no local path: that evlake reads local files and stdin, and
/// the command that streams it there.
fn url_input(scheme: &str, url: &Path) -> String {
    let url = url.display();
    let stream = |command: String| {
        format!(
            "it is a URL, and evlake reads local files and stdin: `{command} | evlake ingest -` \
             streams it in, compressed or not"
        )
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => stream(format!("aws s3 cp {url} -")),
        "gs" => stream(format!("gcloud storage cat {url}")),
        "http" | "https" => stream(format!("curl -fsSL {url}")),
        "file" => {
            let local = url.to_string();
            let local = local.split_once("://").map_or("", |(_, rest)| rest);
            format!("it is a file URL: give its path, `{local}`")
        }
        _ => format!(
            "it is a URL ({scheme}://), and evlake reads local files and stdin: copy it to a \
             local file, or stream it to `evlake ingest -`"
        ),
    }
}

/// A path that does not exist is an error naming it. A directory is
/// walked for the files `names` reads.
pub fn resolve(args: &[std::ffi::OsString], names: &Names) -> Result<Resolved> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    let mut stdin_seen = false;
    for arg in args {
        if arg == "-" {
            if stdin_seen {
                bail!("`-` (stdin) was given more than once");
            }
            stdin_seen = true;
            out.push(Input {
                display: STDIN.to_string(),
                path: None,
                walked: false,
            });
            continue;
        }
        let path = Path::new(arg);
        // A name that is not UTF-8 (a Latin-1 file from an old system)
        // is read as given, and shown with U+FFFD where it is not text.
        let arg = path.display().to_string();
        if let Some(scheme) = crate::lake::url_scheme(path)
            && !path.exists()
        {
            bail!(
                "input `{arg}` is no local file: {}",
                url_input(scheme, path)
            );
        }
        let meta = std::fs::metadata(path).with_context(|| {
            // A cron line's `incoming/*.jsonl` that matched no file
            // reaches evlake as it was typed.
            let glob = arg.contains(['*', '?', '[']) && !path.exists();
            if glob {
                format!(
                    "input `{arg}` cannot be read: no such file, and the pattern looks like \
                     a shell glob that matched nothing (the shell then passes it on as \
                     typed); give the directory instead, which reads every input in it \
                     and is no error when there is none"
                )
            } else if let Ok(to) = std::fs::read_link(path)
                && let Err(e) = std::fs::metadata(path)
            {
                format!(
                    "input `{arg}` cannot be read: it is {}",
                    broken_link(&to, &e)
                )
            } else {
                format!("input `{arg}` cannot be read")
            }
        })?;
        if meta.is_dir() {
            if is_lake(path) {
                return Err(crate::error::Failure::Usage(format!(
                    "input `{arg}` is an evlake lake, not a directory of NDJSON inputs"
                ))
                .into());
            }
            let mut found = Vec::new();
            walk(path, names, &mut found, &mut ignored)?;
            found.sort();
            out.extend(found.into_iter().map(|p| Input {
                display: p.display().to_string(),
                path: Some(p),
                walked: true,
            }));
        } else {
            out.push(Input {
                display: arg,
                path: Some(path.to_path_buf()),
                walked: false,
            });
        }
    }
    // (A directory given twice, `inbox` and `inbox/`, passes over its
    // files once.)
    ignored.sort();
    ignored.dedup();
    Ok(Resolved {
        inputs: out,
        ignored,
    })
}

/// Refuse an input inside one of `lake`'s own directories (`_evlake/`,
/// `quarantine/`, `bronze/`, ...): evlake writes those files, and reading
/// one as input is a mistake (the quarantine's lines are records about
/// bad lines, not events: every one would be quarantined again). A
/// directory walk already skips a lake it meets; this is for a path that
/// names such a file or directory. Inputs elsewhere under the lake's root
/// (`LAKE/incoming/`) are fine.
pub fn refuse_own_files(lake: &crate::lake::Lake, inputs: &[Input]) -> Result<()> {
    let Ok(root) = lake.root().canonicalize() else {
        return Ok(()); // a lake not made yet holds no file
    };
    let mut own: Vec<&str> = super::table_dirs()
        .into_iter()
        .filter_map(|d| d.split('/').next())
        .collect();
    own.push(crate::lake::META_DIR);
    own.sort_unstable();
    own.dedup();
    for input in inputs {
        let Some(Ok(path)) = input.path.as_ref().map(|p| p.canonicalize()) else {
            continue;
        };
        let Ok(rest) = path.strip_prefix(&root) else {
            continue;
        };
        let Some(top) = rest.iter().next().and_then(|c| c.to_str()) else {
            continue;
        };
        if own.contains(&top) {
            let quarantine = if top == super::QUARANTINE_DIR {
                "; to load quarantined lines once fixed, ingest their `raw` text (README: \
                 Quarantine reasons)"
            } else {
                ""
            };
            return Err(crate::error::Failure::Usage(format!(
                "input `{}` is in the lake's own `{top}/` directory: evlake writes those \
                 files and does not read them as input{quarantine}",
                input.display
            ))
            .into());
        }
    }
    Ok(())
}

/// A directory holding an evlake lake (it has `_evlake/`). Its log and
/// quarantine files are `.json` and `.jsonl`, and a lake often sits inside
/// the directory being ingested (`evlake ingest .` with the default
/// `./lake`), so a directory walk skips it: otherwise every run after the
/// first ingested the lake's own log and quarantine as events.
fn is_lake(dir: &Path) -> bool {
    dir.join(crate::lake::META_DIR).is_dir()
}

fn walk(
    dir: &Path,
    names: &Names,
    out: &mut Vec<PathBuf>,
    ignored: &mut Vec<Ignored>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("input `{}` cannot be read", dir.display()))?;
    walk_entries(dir, entries, names, out, ignored)
}

/// [`walk`] over `entries`, those of `dir`.
fn walk_entries(
    dir: &Path,
    entries: std::fs::ReadDir,
    names: &Names,
    out: &mut Vec<PathBuf>,
    ignored: &mut Vec<Ignored>,
) -> Result<()> {
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list `{}`", dir.display()))?;
        let p = entry.path();
        let name = entry.file_name();
        // Hidden entries, files and directories (`.name`: a producer's
        // file, or staging directory, still being written; `.git/`), are
        // skipped without a word.
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let ft = entry.file_type()?;
        // Hadoop's and Spark's mark for what is not data, or not data yet:
        // `_SUCCESS`, `_temporary/` with a job's files still being written.
        // Reported, not read nor walked into.
        if name.as_encoded_bytes().starts_with(b"_") {
            ignored.push(Ignored {
                path: p.display().to_string(),
                why: format!(
                    "a {} whose name begins with `_`, which Hadoop and Spark give what is not \
                     data, or not yet (`_SUCCESS`, `_temporary/`): not read (name it as an \
                     input to read it)",
                    if ft.is_dir() { "directory" } else { "file" }
                ),
            });
            continue;
        }
        if ft.is_dir() {
            if is_lake(&p) {
                continue;
            }
            // A subdirectory evlake may not list (another user's, mode
            // 0700), or one gone since it was listed, is passed over as
            // such a file is: it does not stop every run over the inbox.
            let why = match std::fs::read_dir(&p) {
                Ok(entries) => {
                    walk_entries(&p, entries, names, out, ignored)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    "a directory that cannot be listed: permission denied (evlake runs as a \
                     user who may not read it)"
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => VANISHED,
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("failed to list `{}`", p.display()))
                    );
                }
            };
            ignored.push(Ignored {
                path: p.display().to_string(),
                why: why.to_string(),
            });
        } else {
            // Each entry passed over is reported, not read, so none stops
            // or hangs the run. Named as an input, a pipe is read
            // (`<(zcat x.gz)`).
            match Ignored::of(&p, ft, names) {
                Some(i) => ignored.push(i),
                None => out.push(p),
            }
        }
    }
    Ok(())
}

/// blake3 hash and size of a file's raw bytes.
///
/// Read through blake3's own 64 KiB buffer and hashed on this thread (the
/// caller hashes several files at once). A memory map hashed on every core
/// kept the cores only ~60% busy: its page faults and unmapping cost more
/// than copying from the page cache into a buffer that stays in cache.
///
/// Also returns the file's [`Stamp`] from before it was read, and hashes
/// only the bytes it had then: a file that shrank while it was hashed is
/// an error, one that grew is hashed as it was.
pub fn hash_file(path: &Path, prefix: Option<u64>) -> Result<Hashed> {
    let mut hasher = blake3::Hasher::new();
    let f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let stamp = Stamp::from(f.metadata(), path)?;
    crate::fault::pause("hashing");
    // Its first `len` bytes: a file a writer appends to meanwhile is
    // read up to there (see [`Stamp::check_read`]).
    let mut f = f.take(stamp.len);
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut f)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    hasher.update(&head);
    let mut at = None;
    if let Some(n) = prefix.filter(|&n| n > 0 && n < stamp.len) {
        if n < head.len() as u64 {
            at = Some((n, blake3::hash(&head[..n as usize])));
        } else {
            hasher
                .update_reader((&mut f).take(n - head.len() as u64))
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            at = Some((n, hasher.finalize()));
        }
    }
    hasher
        .update_reader(f)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    if hasher.count() != stamp.len {
        return Err(changed(&path.display().to_string(), &stamp, hasher.count()));
    }
    let plain = !compressed(&head);
    Ok(Hashed {
        hash: format!("blake3:{}", hasher.finalize().to_hex()),
        bytes: hasher.count(),
        stamp,
        head: (plain && head.len() == HEAD_BYTES)
            .then(|| format!("blake3:{}", blake3::hash(&head).to_hex())),
        prefix: at.map(|(n, h)| (n, format!("blake3:{}", h.to_hex()))),
        plain,
    })
}

/// A file's content hash ([`hash_file`]).
pub struct Hashed {
    pub hash: String,
    pub bytes: u64,
    /// Its size and modification time when hashed.
    pub stamp: Stamp,
    /// The hash of its first [`HEAD_BYTES`], for a plain file at least
    /// that long: by it, a file that begins with a committed batch's
    /// content is found under any name (a log rotated to `events-1.jsonl`
    /// after the last run).
    pub head: Option<String>,
    /// With `prefix` asked for (the size of its path's last batch, less
    /// than the file's): that size, and the hash of the file's first that
    /// many bytes, taken in the same read.
    pub prefix: Option<(u64, String)>,
    /// Not gzip or zstd: text a writer may be appending to.
    pub plain: bool,
}

/// A file's size and modification time when a run hashed it: the run
/// checks them again once it has read the file, since the content hash
/// names the batch (and marks it ingested) for what was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub len: u64,
    pub modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn from(md: std::io::Result<std::fs::Metadata>, path: &Path) -> Result<Stamp> {
        let md = md.with_context(|| format!("failed to stat `{}`", path.display()))?;
        Ok(Stamp {
            len: md.len(),
            modified: md.modified().ok(),
        })
    }

    /// The stamp of `path` now.
    pub fn of(path: &Path) -> Result<Stamp> {
        Self::from(std::fs::metadata(path), path)
    }

    /// After `path` was read (its first `len` bytes, no more): an error
    /// unless it is as it was hashed, or, `plain` (not compressed), has
    /// only grown since, its first `len` bytes still hashing to `hash`: a
    /// writer appending to it, whose new lines the next run reads on
    /// from there.
    pub fn check_read(&self, path: &Path, display: &str, plain: bool, hash: &str) -> Result<()> {
        let now = Stamp::of(path)?;
        if now == *self || (plain && now.len > self.len && prefix_hash(path, self.len)? == hash) {
            return Ok(());
        }
        Err(changed(display, self, now.len))
    }
}

/// The content hash of the first `len` bytes of `path`.
fn prefix_hash(path: &Path, len: u64) -> Result<String> {
    let f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(f.take(len))
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

/// How much of a file's start [`Hashed::head`] hashes.
pub const HEAD_BYTES: usize = 512;

/// Whether `path` begins as a gzip or zstd stream.
pub fn is_compressed(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let n = f.read(&mut head)?;
    Ok(compressed(&head[..n]))
}

fn compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// The error for an input that changed while a run read it.
fn changed(display: &str, stamp: &Stamp, len_now: u64) -> anyhow::Error {
    Changed {
        display: display.to_string(),
        hashed: stamp.len,
        now: len_now,
    }
    .into()
}

/// An input that changed while a run read it: rewritten, truncated, or
/// (compressed) appended to between its hash and the end of its read.
#[derive(Debug)]
pub struct Changed {
    pub display: String,
    /// Its size when hashed, and after.
    pub hashed: u64,
    pub now: u64,
}

impl Changed {
    /// `(N bytes when hashed, M bytes now)`.
    fn sizes(&self) -> String {
        format!(
            "{} bytes when hashed, {} bytes now{}",
            self.hashed,
            self.now,
            if self.now == self.hashed {
                ", modified since"
            } else {
                ""
            }
        )
    }
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` changed while it was being ingested ({}): nothing was committed. Write \
             inputs under another name and rename them into place once complete; the next \
             run ingests the file as it is then",
            self.display,
            self.sizes()
        )
    }
}

impl std::error::Error for Changed {}

/// `e`; but for walked input `display` that changed while the run read it
/// ([`Changed`]), the [`PassOver`] that leaves it to the next run, as one
/// unreadable part-way is: a log rewritten or emptied in place (a
/// rotation's copytruncate) during a run does not fail the whole run.
pub fn pass_over_changed(display: &str, walked: bool, e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Changed>() {
        Some(c) if walked => PassOver(Ignored {
            path: display.to_string(),
            why: format!(
                "changed while the run read it ({}): rewritten, truncated (a log rotation's \
                 copytruncate?) or appended to in place; nothing of it is committed, and the \
                 next run reads it as it is then",
                c.sizes()
            ),
        })
        .into(),
        _ => e,
    }
}

/// Copy stdin to `dest` (so it can be hashed before ingesting, and read
/// like a file), returning its hash and size.
pub fn spool_stdin(dest: &Path) -> Result<(String, u64)> {
    use std::io::IsTerminal;
    // `-` with nothing piped in reads what is typed: say so, rather than
    // seem to hang.
    if io::stdin().is_terminal() {
        crate::commands::status(
            "Reading",
            "events typed on the terminal (`-` is stdin): end with Ctrl-D, or Ctrl-C to \
             stop without committing",
        );
    }
    spool(io::stdin(), "stdin", dest)
}

/// Whether `path` is something other than a regular file (a pipe such as
/// the shell's `<(zcat x.gz)`, a FIFO, `/dev/stdin`): it can be read only
/// once, so it is spooled like stdin before it is hashed.
pub fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// Copy the stream at `path` to `dest` (see [`is_stream`]), returning its
/// hash and size.
pub fn spool_stream(path: &Path, dest: &Path) -> Result<(String, u64)> {
    let f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    spool(f, &path.display().to_string(), dest)
}

fn spool(from: impl Read + Send + 'static, what: &str, dest: &Path) -> Result<(String, u64)> {
    use std::sync::mpsc::{RecvTimeoutError, sync_channel};
    let mut out =
        File::create(dest).with_context(|| format!("failed to create `{}`", dest.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    // A thread reads, so that a read that blocks (events typed on a
    // terminal, a pipe whose writer stalls) does not keep a signal from
    // stopping the run (crate::interrupt): this loop checks for one while
    // it waits. Two buffers go back and forth.
    let (full_tx, full) = sync_channel::<io::Result<(Vec<u8>, usize)>>(1);
    let (empty, empty_rx) = sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        empty.send(vec![0u8; 1 << 20]).expect("room for both");
    }
    std::thread::Builder::new()
        .name("evlake-spool".into())
        .spawn(move || {
            let mut from = from;
            while let Ok(mut buf) = empty_rx.recv() {
                let read = loop {
                    match from.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r,
                    }
                };
                let done = !matches!(read, Ok(n) if n > 0);
                let sent = full_tx.send(read.map(|n| (buf, n)));
                if done || sent.is_err() {
                    return;
                }
            }
        })?;
    loop {
        let (buf, n) = match full.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(Ok((_, 0))) => break,
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Err(e).with_context(|| format!("failed to read {what}")),
            Err(RecvTimeoutError::Timeout) => {
                crate::interrupt::check()?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => bail!("internal error: {what}'s reader quit"),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("failed to write `{}`", dest.display()))?;
        total += n as u64;
        // (The reader may have quit after its last read.)
        let _ = empty.send(buf);
    }
    out.flush()?;
    Ok((format!("blake3:{}", hasher.finalize().to_hex()), total))
}

/// Counts raw bytes read, for the progress bar.
struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Open a file for reading its bytes from `at` (0, or a gzip member or
/// zstd frame a writer appended: see [`resume_point`]) up to `len`,
/// decompressing gzip or zstd by magic bytes (not by name, so a
/// mislabelled file still reads correctly). A compressed tar archive is
/// an error, found by its text's start (see [`tar_inside`]).
pub fn open_decoded(
    path: &Path,
    at: u64,
    len: u64,
    counter: Arc<AtomicU64>,
) -> Result<Box<dyn Read + Send>> {
    decoded(path, at, len, counter, at == 0)
}

/// [`open_decoded`], looking for a tar archive in a compressed file's
/// text when `find_tar`.
fn decoded(
    path: &Path,
    at: u64,
    len: u64,
    counter: Arc<AtomicU64>,
    find_tar: bool,
) -> Result<Box<dyn Read + Send>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    if at > 0 {
        f.seek(SeekFrom::Start(at))
            .with_context(|| format!("failed to read `{}`", path.display()))?;
    }
    let inner = f.take(len.saturating_sub(at));
    let mut raw = BufReader::with_capacity(1 << 20, CountingReader { inner, counter });
    let head = raw
        .fill_buf()
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let tar = || find_tar.then(|| compressed_tar(path, len, head)).flatten();
    if let Some((format, tool)) = unread_format(head).or_else(tar) {
        anyhow::bail!(
            "{format}, which evlake does not read (it reads UTF-8 NDJSON, plain or gzip- or \
             zstd-compressed): {tool}"
        )
    }
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(GzMembers(Some(flate2::bufread::GzDecoder::new(raw))))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(raw)
                .with_context(|| format!("failed to start zstd decoding `{}`", path.display()))?,
        )
    } else {
        Box::new(raw)
    })
}

/// What to do with a tar archive.
const TAR_TOOL: &str = "extract its NDJSON files first, e.g. `tar -xOf FILE | evlake ingest -`";

/// For compressed file `path` (its first `len` bytes; `head` its first
/// bytes) that holds a tar archive: what it is and what to do, as
/// [`unread_format`] says of formats known by their first bytes.
fn compressed_tar(path: &Path, len: u64, head: &[u8]) -> Option<(&'static str, &'static str)> {
    (compressed(head) && tar_inside(path, len)).then_some(("a compressed tar archive", TAR_TOOL))
}

/// Whether `head` begins a tar archive (a POSIX or GNU header: `ustar`
/// at byte 257). Read as text, each file in it would lose its first line
/// to the 512-byte header before it, and the archive's zero padding would
/// be bad lines; a bad fraction under the limit would commit the rest.
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// Whether compressed file `path` (its first `len` bytes) holds a tar
/// archive (`.tar.gz`, `.tgz`, `.tar.zst`), by its decoded first bytes;
/// false for one that does not decode (reading it says why).
fn tar_inside(path: &Path, len: u64) -> bool {
    let Ok(text) = decoded(path, 0, len, Arc::default(), false) else {
        return false;
    };
    let mut head = Vec::with_capacity(512);
    text.take(512).read_to_end(&mut head).is_ok() && is_tar(&head)
}

/// The text of a gzip stream of one member or more, as `gzip -d` reads
/// it: zero bytes after the last member (padding some writers add to a
/// block size) end it. flate2's `MultiGzDecoder` took them for a member
/// header ("invalid gzip header"); other bytes there still are an error.
struct GzMembers<R: BufRead>(Option<flate2::bufread::GzDecoder<R>>);

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = self.0.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended: another follows, or zero padding, or the end.
            let mut rest = self.0.take().expect("a member").into_inner();
            let next = rest.fill_buf()?;
            if next.first() == Some(&0x1f) {
                self.0 = Some(flate2::bufread::GzDecoder::new(rest));
                continue;
            }
            loop {
                let next = rest.fill_buf()?;
                if next.is_empty() {
                    return Ok(0);
                }
                if next.iter().any(|&b| b != 0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bytes after the last gzip member that are neither another member \
                         nor zero padding",
                    ));
                }
                let n = next.len();
                rest.consume(n);
            }
        }
    }
}

/// Open plain (uncompressed) file `path` for reading its bytes from `at`
/// up to `len` (see [`resume_point`]).
pub fn open_plain_at(
    path: &Path,
    at: u64,
    len: u64,
    counter: Arc<AtomicU64>,
) -> Result<Box<dyn Read + Send>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    f.seek(SeekFrom::Start(at))
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let inner = f.take(len.saturating_sub(at));
    Ok(Box::new(BufReader::with_capacity(
        1 << 20,
        CountingReader { inner, counter },
    )))
}

/// Where the read of a grown file resumes: at `byte`, line `line`
/// (counted from 1), after the content of committed batch `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeAt {
    pub after: String,
    pub byte: u64,
    pub line: u64,
    /// `byte` counts the decompressed text of a compressed file, which
    /// began with a plain batch's content (see [`text_resume_point`]).
    pub decompressed: bool,
}

/// If plain file `path` (now `size` bytes) begins with exactly the content
/// of a committed batch (`after`: its hash, its `bytes`, `lines` and
/// [`ends_line`](crate::log::InputBatch::ends_line); with
/// `prefix_matches`, whether it does is already known), as a
/// file does that a writer appended to since it was ingested: where to
/// read on, the start of the first line that batch did not hold whole. A
/// last line the batch ended in the middle of (no newline yet: the writer
/// was still at it) is read again from its start. A compressed file is
/// read on from the end of that content when its text ended a line and a
/// gzip member or zstd frame of its own format starts there (a logger
/// that appends one per flush: read whole, its old lines would land again
/// as re-sends; a member after a half line would finish that line, which
/// a read from the member would not see). `None` when
/// the file does not begin with that content, or holds no whole line of
/// it, or, compressed, goes on with anything else (it is then read whole,
/// as new content).
pub fn resume_point(
    path: &Path,
    after: &str,
    (bytes, lines, ends_line): (u64, u64, Option<bool>),
    size: u64,
    prefix_matches: Option<bool>,
) -> Result<Option<ResumeAt>> {
    use std::io::{Seek, SeekFrom};
    if bytes == 0 || lines == 0 || bytes >= size {
        return Ok(None);
    }
    let matches = match prefix_matches {
        Some(m) => m,
        None => prefix_hash(path, bytes)? == after,
    };
    if !matches {
        return Ok(None);
    }
    let mut f = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let magic = |f: &mut File, at: u64| -> Result<[u8; 4]> {
        let mut m = [0u8; 4];
        f.seek(SeekFrom::Start(at))?;
        let n = f
            .read(&mut m)
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        m[n..].fill(0);
        Ok(m)
    };
    let first = magic(&mut f, 0)?;
    if compressed(&first) {
        let next = magic(&mut f, bytes)?;
        let same = if first.starts_with(&[0x1f, 0x8b]) {
            next.starts_with(&[0x1f, 0x8b])
        } else {
            next == first
        };
        return Ok((same && ends_line == Some(true)).then(|| ResumeAt {
            after: after.to_string(),
            byte: bytes,
            line: lines + 1,
            decompressed: false,
        }));
    }
    // A last line that was whole but for its newline (the writer wrote
    // the line, then the newline) was read as it is: on from after it.
    let mut next = BufReader::new(&mut f);
    next.seek(SeekFrom::Start(bytes))?;
    let mut k = 0u64;
    for b in (&mut next).bytes() {
        match b? {
            b'\n' => {
                return Ok(Some(ResumeAt {
                    after: after.to_string(),
                    byte: bytes + k + 1,
                    line: lines + 1,
                    decompressed: false,
                }));
            }
            b' ' | b'\t' | b'\r' => k += 1,
            _ => break,
        }
    }
    drop(next);
    // The last newline of the committed content.
    let mut end = bytes;
    let mut block = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let part = &mut block[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(part)
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let byte = start + i as u64 + 1;
            // Ending in a newline, it holds `lines` whole lines; otherwise
            // its last, `lines`th, line is read again.
            let line = if byte == bytes { lines + 1 } else { lines };
            return Ok(Some(ResumeAt {
                after: after.to_string(),
                byte,
                line,
                decompressed: false,
            }));
        }
        end = start;
    }
    Ok(None)
}

/// The content hash of the first [`HEAD_BYTES`] of the text of compressed
/// file `path` (its first `len` bytes), if it has that many: by it, a log
/// compressed by rotation after it was ingested (`app.jsonl` →
/// `app.1.jsonl.gz`) is found to begin with a committed batch's content
/// (see [`text_resume_point`]). `None` for one that does not decode
/// (reading it says why).
pub fn text_head(path: &Path, len: u64) -> Option<String> {
    let r = open_decoded(path, 0, len, Arc::default()).ok()?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    r.take(HEAD_BYTES as u64).read_to_end(&mut head).ok()?;
    (head.len() == HEAD_BYTES).then(|| format!("blake3:{}", blake3::hash(&head).to_hex()))
}

/// If the text of compressed file `path` (its first `len` bytes) begins
/// with exactly the content of committed plain batch `after` (its `bytes`
/// and `lines`), as a log's does that was compressed by rotation after it
/// was ingested, perhaps with lines written since: where in that text to
/// read on, as [`resume_point`] finds it in a plain file (`byte` counts
/// the text: [`ResumeAt::decompressed`]). Read whole, its lines ingested
/// already would land again as re-sends. A text that is exactly that
/// content is read on from its end, so nothing (but a last line the batch
/// held only part of). `None` when the text does not begin so, holds no
/// whole line of it, or does not decode (reading it says why).
pub fn text_resume_point(
    path: &Path,
    after: &str,
    (bytes, lines): (u64, u64),
    len: u64,
) -> Result<Option<ResumeAt>> {
    if bytes == 0 || lines == 0 {
        return Ok(None);
    }
    let Ok(r) = open_decoded(path, 0, len, Arc::default()) else {
        return Ok(None);
    };
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut hasher = blake3::Hasher::new();
    let mut done = 0u64;
    // Where the content's last whole line ends.
    let mut line_end = None;
    while done < bytes {
        let Ok(part) = r.fill_buf() else {
            return Ok(None);
        };
        if part.is_empty() {
            return Ok(None);
        }
        let part = &part[..part.len().min((bytes - done) as usize)];
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            line_end = Some(done + i as u64 + 1);
        }
        hasher.update(part);
        let n = part.len();
        r.consume(n);
        done += n as u64;
    }
    if format!("blake3:{}", hasher.finalize().to_hex()) != after {
        return Ok(None);
    }
    let at = |byte, line| ResumeAt {
        after: after.to_string(),
        byte,
        line,
        decompressed: true,
    };
    if line_end == Some(bytes) {
        return Ok(Some(at(bytes, lines + 1)));
    }
    // A last line whole but for its newline was read as it is.
    let mut k = 0u64;
    for b in r.bytes() {
        match b {
            Ok(b'\n') => return Ok(Some(at(bytes + k + 1, lines + 1))),
            Ok(b' ' | b'\t' | b'\r') => k += 1,
            _ => break,
        }
    }
    Ok(line_end.map(|end| at(end, lines)))
}

/// `reader`'s text with its first `n` bytes skipped: a compressed file
/// read on from a [`text_resume_point`].
pub fn skip_text(
    mut reader: Box<dyn Read + Send>,
    n: u64,
    display: &str,
) -> Result<Box<dyn Read + Send>> {
    let skipped = io::copy(&mut (&mut reader).take(n), &mut io::sink())
        .with_context(|| format!("failed to read `{display}`"))?;
    anyhow::ensure!(
        skipped == n,
        "`{display}`: its text ended at byte {skipped}, before byte {n}, where its read was to begin"
    );
    Ok(reader)
}

/// A format, known by its first bytes, that is not NDJSON nor a
/// compression evlake decodes (an NDJSON line starts with `{`, so none of
/// these is a line of it): what it is, and what to do instead. Read as
/// text, its bytes would only be quarantined as invalid UTF-8 or JSON.
fn unread_format(head: &[u8]) -> Option<(&'static str, &'static str)> {
    const BZIP2_BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const BZIP2_END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    let bzip2 = head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == BZIP2_BLOCK || head[4..10] == BZIP2_END);
    Some(if bzip2 {
        (
            "bzip2-compressed",
            "decompress it first, e.g. `bzip2 -dc FILE | evlake ingest -`",
        )
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        (
            "xz-compressed",
            "decompress it first, e.g. `xz -dc FILE | evlake ingest -`",
        )
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        (
            "lz4-compressed",
            "decompress it first, e.g. `lz4 -dc FILE | evlake ingest -`",
        )
    } else if head.starts_with(b"PK\x03\x04") {
        (
            "a zip archive",
            "extract its NDJSON files first, e.g. `unzip -p FILE | evlake ingest -`",
        )
    } else if is_tar(head) {
        ("a tar archive", TAR_TOOL)
    } else if head.starts_with(b"PAR1") {
        (
            "a Parquet file",
            "evlake ingests NDJSON, one JSON event object per line",
        )
    } else if head.starts_with(&[0xff, 0xfe, 0, 0]) || head.starts_with(&[0, 0, 0xfe, 0xff]) {
        (
            "UTF-32 text",
            "convert it to UTF-8 first, e.g. `iconv -f UTF-32 -t UTF-8 FILE | evlake ingest -`",
        )
    } else if head.starts_with(&[0xff, 0xfe])
        || head.starts_with(&[0xfe, 0xff])
        || head.starts_with(b"{\0")
        || head.starts_with(b"\0{")
    {
        // (With a byte-order mark, or without one: a line's `{` with a
        // NUL beside it, which no UTF-8 line of JSON has.)
        (
            "UTF-16 text",
            "convert it to UTF-8 first, e.g. `iconv -f UTF-16 -t UTF-8 FILE | evlake ingest -` \
             (`-f UTF-16LE` for one without a byte-order mark)",
        )
    } else {
        return None;
    })
}

/// A run of whole lines from one input.
#[derive(Debug)]
pub struct Chunk {
    /// Position of the chunk in the run (0, 1, 2, ...), to keep output in
    /// input order when chunks are parsed in parallel. Set by the caller.
    pub seq: u64,
    /// Position of the input in the run.
    pub input: usize,
    /// Complete lines, each ending in `\n` except possibly the input's last.
    pub data: Vec<u8>,
}

/// Target chunk size: big enough to amortise per-chunk work, small enough
/// that a few in flight bound memory.
pub const CHUNK_BYTES: usize = 4 << 20;

/// The smallest chunk [`chunk_bytes`] picks.
const MIN_CHUNK_BYTES: usize = 256 << 10;

/// The chunk size for a run reading `total` bytes with `parsers` parsing
/// threads: [`CHUNK_BYTES`], or less for a small run, so that every parser
/// gets a few chunks. A 5 MB hourly batch was one 4 MiB chunk and one of
/// 1 MiB: one core parsed most of it while the other waited.
pub fn chunk_bytes(total: u64, parsers: usize) -> usize {
    let share = total / (4 * parsers.max(1) as u64);
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CHUNK_BYTES, CHUNK_BYTES)
}

/// A line that grew past `--max-line-bytes` before its end was found: the
/// reader stops there, so one huge line (a JSON array given as NDJSON)
/// cannot fill memory. The caller knows the line's number.
#[derive(Debug)]
pub struct LineTooLongRead {
    pub input: usize,
    /// How much of the line was read.
    pub bytes: u64,
    pub array: bool,
}

impl std::fmt::Display for LineTooLongRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a line longer than {} bytes", self.bytes)
    }
}

impl std::error::Error for LineTooLongRead {}

/// An input whose read failed part-way (a gzip stream cut short, an I/O
/// error): the context of that error, for the run to find.
#[derive(Debug)]
pub struct Unreadable {
    pub display: String,
    /// Bytes of its text read before the failure.
    pub at: u64,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: unreadable after {} bytes of its text, so nothing was committed (a \
             truncated or corrupt file?)",
            self.display, self.at
        )
    }
}

impl Unreadable {
    /// The input a directory walk found that failed so, passed over by
    /// the run (see [`PassOver`]); `e` is the error it failed with.
    pub fn pass_over(&self, e: &anyhow::Error) -> PassOver {
        PassOver(Ignored {
            path: self.display.clone(),
            why: format!(
                "unreadable after {} bytes of its text ({}): a compressed file still being \
                 copied in, or a truncated or corrupt one; nothing of it is committed, and \
                 the next run reads it again",
                self.at,
                e.root_cause()
            ),
        })
    }
}

/// A run failed on a walked input it can pass over instead: the run is
/// done again without it (nothing of the failed attempt was committed),
/// and it is reported as [`Ignored`].
#[derive(Debug)]
pub struct PassOver(pub Ignored);

impl std::fmt::Display for PassOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.0.path, self.0.why)
    }
}

impl std::error::Error for PassOver {}

/// Read `reader` to the end, handing line-aligned chunks to `emit`. A UTF-8
/// BOM at the start is dropped when the read begins at the file's start
/// (`from_start`; a read resumed mid-file begins at a line, where a BOM is
/// the line's, as in any line but a file's first). A line that passes `max_line` bytes
/// without ending is a [`LineTooLongRead`] error (shorter lines over the
/// limit are the parser's to find). Other errors name `display`.
///
/// Returns whether the text read ends with a newline (or is empty): a
/// compressed log read on from a member appended after it begins a line
/// only then (see [`resume_point`]).
pub fn split_chunks(
    mut reader: impl Read,
    input: usize,
    display: &str,
    (chunk_bytes, max_line): (usize, usize),
    from_start: bool,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<bool> {
    let mut carry: Vec<u8> = Vec::new();
    let mut first = from_start;
    // Bytes of the input's text read so far (after decompression).
    let mut offset: u64 = 0;
    loop {
        let mut buf = Vec::with_capacity(chunk_bytes + carry.len());
        buf.append(&mut carry);
        // `read_to_end` on a `Take` fills spare capacity without zeroing it
        // first; fewer bytes than asked means the input ended.
        let before = buf.len();
        let n = (&mut reader)
            .take(chunk_bytes as u64)
            .read_to_end(&mut buf)
            .with_context(|| Unreadable {
                display: display.to_string(),
                // What was read of this chunk before the error counts too.
                at: offset + (buf.len() - before) as u64,
            })?;
        offset += n as u64;
        let eof = n < chunk_bytes;
        if first {
            if buf.starts_with(b"\xEF\xBB\xBF") {
                buf.drain(..3);
            }
            first = false;
        }
        if !eof {
            match memchr::memrchr(b'\n', &buf) {
                Some(pos) => carry.extend_from_slice(&buf[pos + 1..]),
                None => {
                    // A single line longer than the chunk: keep reading,
                    // up to the limit.
                    if buf.len() > max_line {
                        return Err(LineTooLongRead {
                            input,
                            bytes: buf.len() as u64,
                            array: buf.trim_ascii_start().starts_with(b"["),
                        }
                        .into());
                    }
                    carry = buf;
                    continue;
                }
            }
            let keep = buf.len() - carry.len();
            buf.truncate(keep);
        }
        // (At the end, an empty `buf` follows a chunk that ended a line.)
        let ends_line = buf.last().is_none_or(|&b| b == b'\n');
        if !buf.is_empty() {
            // Lines are counted, and numbered across chunks, by the parsers
            // and the in-order consumer (no second pass over the bytes here).
            let chunk = Chunk {
                seq: 0,
                input,
                data: buf,
            };
            if !emit(chunk) {
                return Ok(ends_line);
            }
        }
        if eof {
            return Ok(ends_line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_file_resumes_after_the_last_whole_line_of_its_committed_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let hash = |b: &[u8]| format!("blake3:{}", blake3::hash(b).to_hex());
        let at = |committed: &[u8], lines: u64, now: &[u8]| {
            std::fs::write(&path, now).unwrap();
            let size = now.len() as u64;
            let ends_line = Some(committed.ends_with(b"\n"));
            let known = resume_point(
                &path,
                &hash(committed),
                (committed.len() as u64, lines, ends_line),
                size,
                None,
            )
            .unwrap();
            let h = hash_file(&path, Some(committed.len() as u64)).unwrap();
            let matches = h.prefix.map(|(_, p)| p == hash(committed));
            assert_eq!(
                resume_point(
                    &path,
                    &hash(committed),
                    (committed.len() as u64, lines, ends_line),
                    size,
                    matches
                )
                .unwrap(),
                known
            );
            known.map(|r| (r.byte, r.line))
        };
        // Whole lines committed: on from the next line.
        assert_eq!(at(b"a\nb\n", 2, b"a\nb\nc\n"), Some((4, 3)));
        // A half line committed: it is read again, from its start.
        assert_eq!(at(b"a\nb\nc", 3, b"a\nb\ncc\nd\n"), Some((4, 3)));
        // A whole line but for its newline (or CR LF): on after it.
        assert_eq!(at(b"a\nb", 2, b"a\nb\nc\n"), Some((4, 3)));
        assert_eq!(at(b"a\nb", 2, b"a\nb\r\nc\n"), Some((5, 3)));
        // Not the committed content, not grown, no whole line, or compressed
        // and not grown by a member of its format: read whole.
        assert_eq!(at(b"a\nb\n", 2, b"x\nb\nc\n"), None);
        assert_eq!(at(b"a\nb\n", 2, b"a\nb\n"), None);
        assert_eq!(at(b"abc", 1, b"abcdef\n"), None);
        assert_eq!(at(b"\x1f\x8b\n", 1, b"\x1f\x8b\nmore\n"), None);
        let zstd = b"\x28\xb5\x2f\xfd\n";
        assert_eq!(at(zstd, 1, &[&zstd[..], b"\x1f\x8bmore"].concat()), None);
        // Compressed and grown by a member of its own format: on from the
        // member, if the text it follows ended a line (here: the helper
        // says so of content ending in `\n`).
        assert_eq!(at(b"\x1f\x8b\n", 1, b"\x1f\x8b\n\x1f\x8bxx"), Some((3, 2)));
        assert_eq!(at(zstd, 1, &[&zstd[..], &zstd[..]].concat()), Some((5, 2)));
        assert_eq!(at(b"\x1f\x8bx", 1, b"\x1f\x8bx\x1f\x8bxx"), None);
        // A last line longer than the block read backwards.
        let long = [vec![b'x'; 100_000], b"\nyy".to_vec()].concat();
        let grown = [long.clone(), b"y\n".to_vec()].concat();
        assert_eq!(at(&long, 2, &grown), Some((100_001, 2)));
    }

    /// A compressed file's text that begins with a plain batch's content
    /// is read on from where that batch's last whole line ended, as a
    /// plain file is; and `skip_text` begins its read there.
    #[test]
    fn a_compressed_file_resumes_in_its_text_after_a_plain_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl.zst");
        let hash = |b: &[u8]| format!("blake3:{}", blake3::hash(b).to_hex());
        let at = |committed: &[u8], lines: u64, text: &[u8]| {
            let z = zstd::encode_all(text, 3).unwrap();
            std::fs::write(&path, &z).unwrap();
            let len = z.len() as u64;
            let r = text_resume_point(
                &path,
                &hash(committed),
                (committed.len() as u64, lines),
                len,
            )
            .unwrap();
            if let Some(r) = &r {
                assert!(r.decompressed);
                let reader = open_decoded(&path, 0, len, Arc::default()).unwrap();
                let mut rest = Vec::new();
                skip_text(reader, r.byte, "f")
                    .unwrap()
                    .read_to_end(&mut rest)
                    .unwrap();
                assert_eq!(rest, text[r.byte as usize..]);
            }
            r.map(|r| (r.byte, r.line))
        };
        assert_eq!(at(b"a\nb\n", 2, b"a\nb\nc\n"), Some((4, 3)));
        // Nothing since: read on from its end, to nothing.
        assert_eq!(at(b"a\nb\n", 2, b"a\nb\n"), Some((4, 3)));
        // A half line committed is read again; one whole but its newline
        // is not.
        assert_eq!(at(b"a\nb\nc", 3, b"a\nb\ncc\nd\n"), Some((4, 3)));
        assert_eq!(at(b"a\nb\nc", 3, b"a\nb\nc"), Some((4, 3)));
        assert_eq!(at(b"a\nb", 2, b"a\nb\r\nc\n"), Some((5, 3)));
        // Other text, a shorter one, or no whole line: read whole.
        assert_eq!(at(b"a\nb\n", 2, b"x\nb\nc\n"), None);
        assert_eq!(at(b"a\nb\n", 2, b"a\nb"), None);
        assert_eq!(at(b"abc", 1, b"abcdef\n"), None);
        // Not a stream that decodes: read whole (the read says why).
        std::fs::write(&path, b"\x28\xb5\x2f\xfdjunk").unwrap();
        assert_eq!(
            text_resume_point(&path, &hash(b"a\n"), (2, 1), 8).unwrap(),
            None
        );
        assert_eq!(text_head(&path, 8), None);
        let err = skip_text(Box::new(&b"ab"[..]), 3, "f").err().unwrap();
        assert!(format!("{err}").contains("ended at byte 2"), "{err}");
    }

    /// Members and zero padding as `gzip -d` takes them; a member cut
    /// short, or other bytes after the last, are errors.
    #[test]
    fn gzip_members_then_zero_padding_read_as_gzip_reads_them() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl.gz");
        let gz = |text: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        let read = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let mut r = open_decoded(&path, 0, bytes.len() as u64, Arc::default()).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        };
        let (a, b) = (gz(b"a\n"), gz(b"b\n"));
        assert_eq!(read(&a).unwrap(), b"a\n");
        assert_eq!(read(&[&a[..], &b[..]].concat()).unwrap(), b"a\nb\n");
        let padded = [&a[..], &b[..], &[0u8; 3000][..]].concat();
        assert_eq!(read(&padded).unwrap(), b"a\nb\n");
        let garbage = [&a[..], &[0u8; 10][..], b"junk"].concat();
        assert!(
            read(&garbage)
                .unwrap_err()
                .to_string()
                .contains("neither another member")
        );
        assert!(read(&a[..a.len() - 3]).is_err());
        assert!(read(&[&a[..], &b[..b.len() - 3]].concat()).is_err());
    }

    #[test]
    fn a_head_hash_is_of_the_first_4_kib_of_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let of = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let h = hash_file(&path, None).unwrap();
            assert_eq!(h.hash, format!("blake3:{}", blake3::hash(bytes).to_hex()));
            assert_eq!(h.bytes, bytes.len() as u64);
            h.head
        };
        let long = vec![b'x'; HEAD_BYTES + 10];
        let want = format!("blake3:{}", blake3::hash(&long[..HEAD_BYTES]).to_hex());
        assert_eq!(of(&long), Some(want.clone()));
        assert_eq!(of(&[long.clone(), b"more".to_vec()].concat()), Some(want));
        assert!(of(&long[..HEAD_BYTES]).is_some());
        assert_eq!(of(&long[..HEAD_BYTES - 1]), None);
        assert_eq!(of(&[&[0x1f, 0x8b][..], &long].concat()), None);
    }

    fn chunks_of(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        split_chunks(data, 0, "t", (CHUNK_BYTES, usize::MAX), true, |c| {
            out.push(c.data);
            true
        })
        .unwrap();
        out
    }

    /// A small run gets chunks small enough for every parser to have a
    /// few; a big one the usual size; never below the floor.
    #[test]
    fn small_runs_get_smaller_chunks() {
        assert_eq!(chunk_bytes(5_242_880, 2), 655_360);
        assert_eq!(chunk_bytes(275_000_000, 2), CHUNK_BYTES);
        assert_eq!(chunk_bytes(40_000, 2), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes(0, 0), MIN_CHUNK_BYTES);
    }

    /// Whatever the chunk size, the chunks are whole lines that put back
    /// together give the input.
    #[test]
    fn any_chunk_size_cuts_at_line_ends() {
        let data: Vec<u8> = (0..500)
            .flat_map(|i| {
                format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 37)).into_bytes()
            })
            .collect();
        for size in [7, 64, 1000, CHUNK_BYTES] {
            let mut chunks = Vec::new();
            split_chunks(&data[..], 0, "t", (size, usize::MAX), true, |c| {
                chunks.push(c.data);
                true
            })
            .unwrap();
            assert!(chunks.iter().all(|c| c.ends_with(b"\n")), "size {size}");
            assert_eq!(chunks.concat(), data, "size {size}");
            if size == 1000 {
                assert!(chunks.len() > 10);
            }
        }
    }

    #[test]
    fn strips_bom_and_keeps_last_line_without_newline() {
        let c = chunks_of(b"\xEF\xBB\xBF{\"a\":1}\r\n{\"b\":2}");
        assert_eq!(c, vec![b"{\"a\":1}\r\n{\"b\":2}".to_vec()]);
        // A read resumed mid-file keeps it: there it is the line's.
        let mut out = Vec::new();
        split_chunks(
            &b"\xEF\xBB\xBF{\"a\":1}\n"[..],
            0,
            "t",
            (CHUNK_BYTES, usize::MAX),
            false,
            |c| {
                out.push(c.data);
                true
            },
        )
        .unwrap();
        assert_eq!(out, vec![b"\xEF\xBB\xBF{\"a\":1}\n".to_vec()]);
    }

    #[test]
    fn chunks_are_whole_lines_that_join_to_the_input() {
        let line = vec![b'x'; 1000];
        let mut data = Vec::new();
        for _ in 0..10_000 {
            data.extend_from_slice(&line);
            data.push(b'\n');
        }
        let c = chunks_of(&data);
        assert!(c.len() > 1);
        assert!(c.iter().all(|bytes| bytes.ends_with(b"\n")));
        assert_eq!(c.concat(), data);
    }

    #[test]
    fn formats_evlake_does_not_decode_are_known_by_their_first_bytes() {
        let what = |head: &[u8]| unread_format(head).map(|(f, _)| f);
        assert_eq!(what(b"BZh91AY&SY\x00"), Some("bzip2-compressed"));
        assert_eq!(
            what(b"BZh9\x17\x72\x45\x38\x50\x90"),
            Some("bzip2-compressed")
        );
        assert_eq!(what(b"\xfd7zXZ\x00\x00"), Some("xz-compressed"));
        assert_eq!(what(b"\x04\x22\x4d\x18\x64"), Some("lz4-compressed"));
        assert_eq!(what(b"PK\x03\x04\x14\x00"), Some("a zip archive"));
        assert_eq!(what(b"PAR1\x15\x04"), Some("a Parquet file"));
        let mut tar = vec![0u8; 512];
        tar[..12].copy_from_slice(b"events.jsonl");
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(what(&tar), Some("a tar archive"));
        tar[257..263].copy_from_slice(b"ustar ");
        assert_eq!(what(&tar), Some("a tar archive"));
        // Windows tools write UTF-16 (PowerShell's `>`), with a byte-order
        // mark or without one.
        for utf16 in [
            &b"\xff\xfe{\0\"\0"[..],
            b"\xfe\xff\0{\0\"",
            b"{\0\"\0",
            b"\0{\0\"",
        ] {
            assert_eq!(what(utf16), Some("UTF-16 text"), "{utf16:?}");
        }
        for utf32 in [&b"\xff\xfe\0\0{\0\0\0"[..], b"\0\0\xfe\xff\0\0\0{"] {
            assert_eq!(what(utf32), Some("UTF-32 text"), "{utf32:?}");
        }
        // Text is read as NDJSON (its bad lines quarantined), whatever it
        // starts with.
        for text in [
            &b"{\"a\":1}\n"[..],
            b"\xef\xbb\xbf{\"a\":1}\n",
            b"{}",
            b"BZh9 not bzip2 at all",
            b"PK but text",
            b"",
        ] {
            assert_eq!(what(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn a_glob_that_matched_nothing_is_named_as_one() {
        let tmp = tempfile::tempdir().unwrap();
        let err = |arg: &str| {
            format!(
                "{:#}",
                resolve(&[arg.into()], &Names::default()).err().unwrap()
            )
        };
        let glob = tmp.path().join("*.jsonl");
        let e = err(glob.to_str().unwrap());
        assert!(e.contains("a shell glob that matched nothing"), "{e}");
        assert!(e.contains("give the directory instead"), "{e}");
        let plain = tmp.path().join("x.jsonl");
        assert!(!err(plain.to_str().unwrap()).contains("glob"));
    }

    /// An input written as a URL that is no local path says evlake reads
    /// local files and stdin, with the command that streams it in.
    #[test]
    fn a_url_input_says_how_to_stream_it_in() {
        let err = |arg: &str| {
            format!(
                "{:#}",
                resolve(&[arg.into()], &Names::default()).err().unwrap()
            )
        };
        assert_eq!(
            err("s3://bucket/events/2024-03-15.jsonl.gz"),
            "input `s3://bucket/events/2024-03-15.jsonl.gz` is no local file: it is a URL, and \
             evlake reads local files and stdin: `aws s3 cp \
             s3://bucket/events/2024-03-15.jsonl.gz - | evlake ingest -` streams it in, \
             compressed or not"
        );
        assert!(err("GS://b/x.jsonl").contains("`gcloud storage cat GS://b/x.jsonl | evlake"));
        assert!(
            err("https://example.com/x.jsonl")
                .contains("`curl -fsSL https://example.com/x.jsonl | evlake ingest -`")
        );
        assert!(
            err("file:///data/no-such.jsonl")
                .ends_with("it is a file URL: give its path, `/data/no-such.jsonl`")
        );
        assert!(err("hdfs://nn/x.jsonl").ends_with(
            "it is a URL (hdfs://), and evlake reads local files and stdin: copy it to a local \
             file, or stream it to `evlake ingest -`"
        ));
        // Not URLs: a scheme is a letter, then letters, digits, `+-.`.
        for path in [
            "./s3://b/x.jsonl",
            "1s3://b/x.jsonl",
            "a_b://x.jsonl",
            "://x.jsonl",
        ] {
            let e = err(path);
            assert!(
                e.ends_with("cannot be read: No such file or directory (os error 2)"),
                "{e}"
            );
        }
    }

    #[test]
    fn input_names() {
        for ok in ["a.jsonl", "a.ndjson.gz", "b.json.zst", "x/y.json"] {
            assert!(is_input_name(ok), "{ok}");
        }
        // A rotated log's copies.
        for ok in [
            "app.jsonl.1",
            "app.jsonl.12.gz",
            "app.jsonl-20240316",
            "app.jsonl-20240316.zst",
            "app.ndjson.2024-03-16",
            "app.json.2024-03-16_10-00-00",
            "a.jsonl.jsonl.1",
        ] {
            assert!(is_input_name(ok), "{ok}");
        }
        for no in [
            "a.txt",
            "a.gz",
            ".hidden.jsonl",
            "jsonl",
            "a.parquet",
            ".app.jsonl.1",
            "a.jsonl.part",
            "a.jsonl.tmp",
            "a.jsonl.1.bak",
            "a.jsonl.bz2",
            "a.jsonl.",
            "a.jsonl.1.",
            "a.jsonl-",
            "a.jsonl.a1",
            "a.jsonlines",
            ".jsonl.1",
            "a.jsonl.gz.1",
        ] {
            assert!(!is_input_name(no), "{no}");
        }
    }
}
