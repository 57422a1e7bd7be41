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

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::lake::Lake;
use crate::log::LakeState;

/// Which listed files a reader sees.
#[derive(Debug)]
struct Visible {
    /// Table directories (object-store paths, each ending in `/`).
    dirs: Vec<String>,
    /// The committed files (object-store paths).
    files: HashSet<String>,
}

impl Visible {
    fn sees(&self, p: &Path) -> bool {
        let p = p.as_ref();
        self.files.contains(p) || !self.dirs.iter().any(|d| p.starts_with(d.as_str()))
    }
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
        let root = std::fs::canonicalize(lake.root())
            .with_context(|| format!("failed to resolve `{}`", lake.root().display()))?;
        let path = |rel: &str| -> Result<String> {
            Ok(Path::from_absolute_path(root.join(rel))
                .with_context(|| format!("`{rel}` is not a valid path"))?
                .to_string())
        };
        let dirs = crate::ingest::table_dirs()
            .iter()
            .map(|d| Ok(format!("{}/", path(d)?)))
            .collect::<Result<Vec<_>>>()?;
        let files = state
            .live_files()
            .map(|f| path(f))
            .collect::<Result<HashSet<_>>>()?;
        Ok(CommittedStore {
            inner: LocalFileSystem::new(),
            visible: Arc::new(Visible { dirs, files }),
        })
    }
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
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Res<Path>>,
    ) -> BoxStream<'static, Res<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Res<ObjectMeta>> {
        let visible = self.visible.clone();
        self.inner
            .list(prefix)
            .filter(move |m| {
                let keep = m.as_ref().map_or(true, |m| visible.sees(&m.location));
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Res<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects.retain(|m| self.visible.sees(&m.location));
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Res<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
