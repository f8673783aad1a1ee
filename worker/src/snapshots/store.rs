//! Where checkpoints and savepoints are kept: a folder (a volume in Kubernetes) or an
//! S3-compatible bucket, behind one API built on Apache Arrow's `object_store`, so
//! both take the same code path (the folder through its local-filesystem store).
//!
//! A location is written as text: `s3://BUCKET/KEY/PREFIX` for a bucket, anything
//! else is a folder. A bucket's endpoint, region and credentials come from the
//! pipeline's `spec.checkpoints.storage.s3` or `spec.savepoints.storage.s3` that
//! names it; credentials from its `credentialsSecretRef` (the Secret's folder under
//! the secrets folder, keys `accessKeyId`, `secretAccessKey`, optional
//! `sessionToken`), else the ambient AWS environment (`AWS_ACCESS_KEY_ID`, web
//! identity, instance metadata).
//!
//! Calls block the calling thread on a small runtime of the store's own; the worker
//! makes them from background threads (uploads, deletes) and at start (restore).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use riskpipe_crds::S3Storage;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::secrets::SecretsDir;

/// Files moved at once.
const PARALLEL: usize = 8;
/// Files above this size go up in parts of this size.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Size and content hash (xxh3-64) of one file of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Bytes.
    pub size: u64,
    /// xxh3-64 of the content.
    pub xxh3: u64,
}

/// The files of one folder of a snapshot, by name.
pub type FileList = BTreeMap<String, FileSum>;

/// What [`SnapshotStore::upload_dir_reusing`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Every file now in the target folder.
    pub files: FileList,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes copied inside the store from the previous folder instead.
    pub reused: u64,
}

/// The `s3://bucket/prefix` location of a bucket's prefix (no trailing slash).
pub fn s3_url(s3: &S3Storage) -> String {
    let prefix = s3.prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("s3://{}", s3.bucket)
    } else {
        format!("s3://{}/{prefix}", s3.bucket)
    }
}

/// An S3 client for one bucket of the spec.
fn s3_client(s3: &S3Storage, secrets_dir: &Path, field: &str) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        // Path-style requests (`endpoint/bucket/key`): what S3-compatible stores expect.
        .with_virtual_hosted_style_request(false)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(60)),
        )
        .with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(secret) = &s3.credentials_secret_ref {
        let field = format!("{field}.credentialsSecretRef");
        let folder = SecretsDir::new(secrets_dir).secret(secret, &field)?;
        let id = folder.read("accessKeyId")?;
        let password = folder.read("secretAccessKey")?;
        builder = builder
            .with_access_key_id(id.trimmed_str("accessKeyId")?)
            .with_secret_access_key(password.trimmed_str("secretAccessKey")?);
        if folder.keys()?.iter().any(|k| k == "sessionToken") {
            let token = folder.read("sessionToken")?;
            builder = builder.with_token(token.trimmed_str("sessionToken")?);
        }
    }
    let client = builder
        .build()
        .with_context(|| format!("configuring the S3 client of {field} ({})", s3_url(s3)))?;
    Ok(Arc::new(client))
}

/// A location as text: a bucket's key prefix or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder.
    Folder(PathBuf),
    /// `s3://bucket/key`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (no leading or trailing slash).
        key: String,
    },
}

impl Location {
    /// `s3://bucket/key` is a bucket; anything else a folder.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    bail!("'{text}' names no bucket (expected s3://BUCKET/KEY)");
                }
                Ok(Location::S3 {
                    bucket: bucket.to_owned(),
                    key: key.trim_matches('/').to_owned(),
                })
            }
            None if text.is_empty() => bail!("an empty snapshot location"),
            None => Ok(Location::Folder(PathBuf::from(text))),
        }
    }
}

/// A snapshot folder (or key prefix) in its store.
#[derive(Clone)]
pub struct Place {
    store: Arc<dyn ObjectStore>,
    base: Key,
    url: String,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

fn under(base: &Key, rel: &str) -> Key {
    let rel = rel.trim_matches('/');
    if base.as_ref().is_empty() {
        Key::from(rel)
    } else if rel.is_empty() {
        base.clone()
    } else {
        Key::from(format!("{}/{rel}", base.as_ref()))
    }
}

impl Place {
    /// The location as text (`s3://…` or a folder).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder `name` (may contain `/`) inside this one.
    pub fn join(&self, name: &str) -> Place {
        Place {
            store: Arc::clone(&self.store),
            base: under(&self.base, name),
            url: format!("{}/{}", self.url.trim_end_matches('/'), name),
        }
    }
}

/// The stores of one worker: a folder store per location, an S3 client per bucket of
/// the spec, and the runtime their calls run on.
#[derive(Clone)]
pub struct SnapshotStore {
    runtime: Arc<tokio::runtime::Runtime>,
    buckets: Arc<BTreeMap<String, Arc<dyn ObjectStore>>>,
}

impl SnapshotStore {
    /// Clients for the given buckets (`field` names the manifest field of each, for
    /// errors); fails when a referenced Secret or one of its keys is missing.
    pub fn new(buckets: &[(&S3Storage, &str)], secrets_dir: &Path) -> Result<Self> {
        // object_store's HTTP client uses rustls without a bundled provider: ring.
        let _already = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("snapshot-io")
            .enable_all()
            .build()
            .context("starting the snapshot storage runtime")?;
        let mut clients = BTreeMap::new();
        for (s3, field) in buckets {
            if !clients.contains_key(&s3.bucket) {
                clients.insert(s3.bucket.clone(), s3_client(s3, secrets_dir, field)?);
            }
        }
        Ok(SnapshotStore {
            runtime: Arc::new(runtime),
            buckets: Arc::new(clients),
        })
    }

    /// The place `location` names. A folder (and its parent) is created when missing;
    /// a bucket must be one of the spec's.
    pub fn place(&self, location: &str) -> Result<Place> {
        match Location::parse(location)? {
            Location::S3 { bucket, key } => {
                let store = self.buckets.get(&bucket).with_context(|| {
                    format!(
                        "{location}: no spec.checkpoints.storage.s3 or spec.savepoints.storage.s3 \
                         names bucket '{bucket}' (its endpoint and credentials come from there)"
                    )
                })?;
                Ok(Place {
                    store: Arc::clone(store),
                    base: Key::from(key.as_str()),
                    url: format!("s3://{bucket}/{key}")
                        .trim_end_matches('/')
                        .to_owned(),
                })
            }
            Location::Folder(dir) => {
                let dir = std::path::absolute(&dir)
                    .with_context(|| format!("resolving the folder {}", dir.display()))?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the folder {}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("opening the folder {}", dir.display()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                Ok(Place {
                    store: Arc::new(store),
                    base: Key::default(),
                    url: dir.display().to_string(),
                })
            }
        }
    }

    /// Copies the files of the local folder `from` (not its subfolders) into `to`;
    /// returns the bytes copied.
    pub fn upload_dir(&self, from: &Path, to: &Place) -> Result<u64> {
        let done = self.upload_dir_reusing(from, to, None)?;
        Ok(done.sent + done.reused)
    }

    /// As [`SnapshotStore::upload_dir`], but a file whose name, size and hash equal
    /// those of a file in `previous` (a folder of the same store, with its list) is
    /// copied there inside the store (a hard link in a folder, a server-side copy in
    /// a bucket) instead of sent again: RocksDB's table files are immutable, so
    /// consecutive checkpoints share most of them.
    pub fn upload_dir_reusing(
        &self,
        from: &Path,
        to: &Place,
        previous: Option<(&Place, &FileList)>,
    ) -> Result<Uploaded> {
        let mut files = Vec::new();
        for entry in
            std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", from.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
        let previous = previous.filter(|(p, _)| Arc::ptr_eq(&p.store, &to.store));
        self.runtime.block_on(async {
            let done: Vec<(String, FileSum, bool)> =
                futures::stream::iter(files.iter().map(|file| async move {
                    let name = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_owned();
                    put_or_reuse(to, file, &name, previous)
                        .await
                        .with_context(|| {
                            format!("uploading {} to {}/{name}", file.display(), to.url)
                        })
                }))
                .buffer_unordered(PARALLEL)
                .try_collect()
                .await?;
            let mut out = Uploaded::default();
            for (name, sum, reused) in done {
                if reused {
                    out.reused += sum.size;
                } else {
                    out.sent += sum.size;
                }
                out.files.insert(name, sum);
            }
            Ok(out)
        })
    }

    /// Writes a small object `name` inside `place`.
    pub fn put(&self, place: &Place, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.runtime
            .block_on(
                place
                    .store
                    .put(&under(&place.base, name), PutPayload::from(bytes)),
            )
            .with_context(|| format!("writing {}/{name}", place.url))?;
        Ok(())
    }

    /// Whether the object `name` inside `place` exists.
    pub fn exists(&self, place: &Place, name: &str) -> Result<bool> {
        match self
            .runtime
            .block_on(place.store.head(&under(&place.base, name)))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking up {}/{name}", place.url)),
        }
    }

    /// The bytes of the small object `name` inside `place`, `None` when absent.
    pub fn get(&self, place: &Place, name: &str) -> Result<Option<Vec<u8>>> {
        let key = under(&place.base, name);
        self.runtime.block_on(async {
            match place.store.get(&key).await {
                Ok(found) => {
                    let bytes = found
                        .bytes()
                        .await
                        .with_context(|| format!("reading {}/{name}", place.url))?;
                    Ok(Some(bytes.to_vec()))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}/{name}", place.url)),
            }
        })
    }

    /// Every object under `place`, as `/`-separated keys relative to it.
    pub fn list(&self, place: &Place) -> Result<Vec<String>> {
        let listed: Result<Vec<object_store::ObjectMeta>, _> = self
            .runtime
            .block_on(place.store.list(Some(&place.base)).try_collect());
        let metas = match listed {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("listing {}", place.url)),
        };
        Ok(metas
            .iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&place.base)?
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                (!parts.is_empty()).then(|| parts.join("/"))
            })
            .collect())
    }

    /// Copies every object under `from` into the local folder `to` (created);
    /// returns the bytes copied.
    pub fn download_dir(&self, from: &Place, to: &Path) -> Result<u64> {
        let names = self.list(from)?;
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        self.runtime.block_on(async {
            let sizes: Vec<u64> = futures::stream::iter(names.iter().map(|name| async move {
                download_file(&from.store, &under(&from.base, name), &to.join(name))
                    .await
                    .with_context(|| format!("downloading {}/{name}", from.url))
            }))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
            Ok(sizes.iter().sum())
        })
    }

    /// Removes every object under `place`; returns how many there were.
    pub fn delete(&self, place: &Place) -> Result<usize> {
        let names = self.list(place)?;
        self.runtime.block_on(async {
            futures::stream::iter(names.iter().map(|name| async move {
                match place.store.delete(&under(&place.base, name)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("deleting {}/{name}", place.url)),
                }
            }))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await
        })?;
        Ok(names.len())
    }
}

/// The size and hash of a file, and its bytes when it is small enough to send in one
/// request.
async fn sum_file(file: &Path) -> Result<(FileSum, Option<Vec<u8>>)> {
    let mut f = tokio::fs::File::open(file).await?;
    let size = f.metadata().await?.len();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    if size <= PART_BYTES as u64 {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.read_to_end(&mut bytes).await?;
        hasher.update(&bytes);
        let sum = FileSum {
            size: bytes.len() as u64,
            xxh3: hasher.digest(),
        };
        return Ok((sum, Some(bytes)));
    }
    let mut buf = vec![0u8; PART_BYTES];
    let mut read = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    Ok((
        FileSum {
            size: read,
            xxh3: hasher.digest(),
        },
        None,
    ))
}

/// Sends one file into `to/name`, or copies the identical one of `previous`.
async fn put_or_reuse(
    to: &Place,
    file: &Path,
    name: &str,
    previous: Option<(&Place, &FileList)>,
) -> Result<(String, FileSum, bool)> {
    let key = under(&to.base, name);
    let (sum, bytes) = sum_file(file).await?;
    if let Some((prev, list)) = previous
        && list.get(name) == Some(&sum)
    {
        match to.store.copy(&under(&prev.base, name), &key).await {
            Ok(()) => return Ok((name.to_owned(), sum, true)),
            Err(e) => tracing::warn!(
                from = %format!("{}/{name}", prev.url), error = %e,
                "copying an unchanged file inside the store failed; sending it"
            ),
        }
    }
    match bytes {
        Some(bytes) => {
            to.store.put(&key, PutPayload::from(bytes)).await?;
        }
        None => {
            upload_file(&to.store, file, &key).await?;
        }
    }
    Ok((name.to_owned(), sum, false))
}

async fn upload_file(store: &Arc<dyn ObjectStore>, file: &Path, key: &Key) -> Result<u64> {
    let mut f = tokio::fs::File::open(file).await?;
    let size = f.metadata().await?.len();
    if size <= PART_BYTES as u64 {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.read_to_end(&mut bytes).await?;
        store.put(key, PutPayload::from(bytes)).await?;
        return Ok(size);
    }
    let mut upload =
        WriteMultipart::new_with_chunk_size(store.put_multipart(key).await?, PART_BYTES);
    let mut buf = vec![0u8; PART_BYTES];
    let result: Result<()> = async {
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            upload.wait_for_capacity(PARALLEL).await?;
            upload.write(&buf[..n]);
        }
    }
    .await;
    match result {
        Ok(()) => {
            upload.finish().await?;
            Ok(size)
        }
        Err(e) => {
            let _ignored = upload.abort().await;
            Err(e)
        }
    }
}

async fn download_file(store: &Arc<dyn ObjectStore>, key: &Key, to: &Path) -> Result<u64> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut stream = store.get(key).await?.into_stream();
    let mut out = tokio::fs::File::create(to).await?;
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.sync_all().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_crds::SecretRef;

    fn store() -> SnapshotStore {
        SnapshotStore::new(&[], Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("s3://b/a/b/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: String::new()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        assert_eq!(
            Location::parse("/x/y").unwrap(),
            Location::Folder("/x/y".into())
        );
        let s3 = S3Storage {
            bucket: "bkt".into(),
            prefix: "/riskpipe/payments/".into(),
            endpoint: None,
            region: None,
            credentials_secret_ref: None,
        };
        assert_eq!(s3_url(&s3), "s3://bkt/riskpipe/payments");
    }

    #[test]
    fn an_unknown_bucket_is_refused_by_name() {
        let err = store().place("s3://elsewhere/x").unwrap_err().to_string();
        assert!(err.contains("elsewhere"), "{err}");
    }

    #[test]
    fn a_missing_secret_names_the_secret_key_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Storage {
            bucket: "bkt".into(),
            prefix: String::new(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: None,
            credentials_secret_ref: Some(SecretRef {
                name: "s3-creds".into(),
            }),
        };
        let field = "spec.checkpoints.storage.s3";
        let err = SnapshotStore::new(&[(&s3, field)], dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("s3-creds") && err.contains(field), "{err}");
        std::fs::create_dir(dir.path().join("s3-creds")).unwrap();
        std::fs::write(dir.path().join("s3-creds/accessKeyId"), "id\n").unwrap();
        let err = format!(
            "{:#}",
            SnapshotStore::new(&[(&s3, field)], dir.path())
                .err()
                .unwrap()
        );
        assert!(err.contains("secretAccessKey"), "{err}");
        std::fs::write(dir.path().join("s3-creds/secretAccessKey"), "pw\n").unwrap();
        assert!(SnapshotStore::new(&[(&s3, field)], dir.path()).is_ok());
    }

    #[test]
    fn folder_round_trip_with_a_multipart_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let big: Vec<u8> = (0..PART_BYTES * 2 + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("000012.sst"), &big).unwrap();
        std::fs::write(src.join("CURRENT"), "MANIFEST-000005\n").unwrap();
        let store = store();
        let root = store
            .place(dir.path().join("storage").to_str().unwrap())
            .unwrap();
        let snap = root.join("chk-1/partition-0003");
        assert_eq!(
            store.upload_dir(&src, &snap).unwrap(),
            big.len() as u64 + 16
        );
        store
            .put(&root.join("chk-1"), "partition-0003.complete", Vec::new())
            .unwrap();
        let mut listed = store.list(&root).unwrap();
        listed.sort();
        assert_eq!(
            listed,
            [
                "chk-1/partition-0003.complete",
                "chk-1/partition-0003/000012.sst",
                "chk-1/partition-0003/CURRENT"
            ]
        );
        assert!(
            store
                .exists(&root.join("chk-1"), "partition-0003.complete")
                .unwrap()
        );
        assert!(!store.exists(&root, "nothing").unwrap());
        let back = dir.path().join("back");
        store.download_dir(&snap, &back).unwrap();
        assert_eq!(std::fs::read(back.join("000012.sst")).unwrap(), big);
        assert_eq!(store.delete(&root.join("chk-1")).unwrap(), 3);
        assert!(store.list(&root).unwrap().is_empty());
        assert!(!dir.path().join("storage/chk-1").exists());
    }
}
