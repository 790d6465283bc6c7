//! Where the Parquet files live: the node's data directory (the default), another local
//! directory, or a bucket of an object store (S3, GCS, Azure), named by a URL and opened
//! with `object_store`'s own URL parsing and builders, configured by the provider's
//! standard environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, ...). The path part of a bucket's URL is a prefix every
//! file is written under.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStoreScheme, parse_url_opts};

use crate::config::StoreConfig;
use crate::error::{Error, Result};

/// The place a store's files are read and written.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A directory on this machine: files are flushed to disk and renamed into place.
    Local(PathBuf),
    /// An object store whose uploads become visible whole (S3, GCS, Azure, in memory):
    /// nothing to flush, and a file is written straight under its final name.
    Remote {
        store: Arc<dyn ObjectStore>,
        /// The URL it was opened from, for logs (credentials are never part of it).
        url: String,
    },
}

impl Location {
    /// The location `config` names: the caller's object store, else its `store` URL, else
    /// its data directory.
    pub(crate) fn of(config: &StoreConfig) -> Result<Location> {
        if let Some(store) = &config.object_store {
            return Ok(Location::Remote {
                store: store.clone(),
                url: "memory:///".to_owned(),
            });
        }
        match config.store.as_deref() {
            None => Ok(Location::Local(config.data_dir.clone())),
            Some(url) => parse(url, std::env::vars()),
        }
    }

    /// For logs: the directory or the URL.
    pub(crate) fn describe(&self) -> String {
        match self {
            Location::Local(dir) => dir.display().to_string(),
            Location::Remote { url, .. } => url.clone(),
        }
    }
}

/// Opens the location a `store` URL names, the object store configured from `options`
/// (the environment, whose keys `object_store` matches without regard to case).
pub(crate) fn parse(
    url: &str,
    options: impl IntoIterator<Item = (String, String)>,
) -> Result<Location> {
    let parsed = url::Url::parse(url)
        .map_err(|error| Error::Location(format!("{url:?} is not a URL: {error}")))?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&parsed)
        .map_err(|error| Error::Location(format!("{url:?}: {error}")))?;
    match scheme {
        ObjectStoreScheme::Local => {
            let path = parsed.to_file_path().map_err(|()| {
                Error::Location(format!("{url:?} does not name a local directory"))
            })?;
            Ok(Location::Local(path))
        }
        ObjectStoreScheme::AmazonS3
        | ObjectStoreScheme::GoogleCloudStorage
        | ObjectStoreScheme::MicrosoftAzure => {
            let (store, _) = parse_url_opts(&parsed, options)
                .map_err(|error| Error::Location(format!("opening {url:?}: {error}")))?;
            let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                Arc::from(store)
            } else {
                Arc::new(PrefixStore::new(store, prefix))
            };
            Ok(Location::Remote {
                store,
                url: url.to_owned(),
            })
        }
        other => Err(Error::Location(format!(
            "{url:?}: {other:?} is not a store meshscope writes to (file://, s3://, gs://, az://)"
        ))),
    }
}

/// Whether `id` can stand in a file name as a writer's id: 1 to 63 letters, digits and
/// `-`, not starting with `-`.
pub fn valid_writer_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The writer id kept in `data_dir` (`writer-id`), made at first use from the host's name
/// and a random part, so that two writers on one host (each with its own data directory)
/// never share one. Returns it.
pub fn writer_id_in(data_dir: &FsPath) -> Result<String> {
    let path = data_dir.join(WRITER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            if !valid_writer_id(&id) {
                return Err(Error::Location(format!(
                    "{} holds {id:?}, which is not a writer id (letters, digits, '-')",
                    path.display()
                )));
            }
            return Ok(id);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    let host: String = hostname()
        .chars()
        .take_while(|c| *c != '.')
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let random = random_suffix();
    let id = match host.trim_start_matches('-') {
        "" => random,
        host => format!("{host}-{random}"),
    };
    crate::whole_file::write_whole_file(
        data_dir,
        WRITER_ID_FILE,
        format!("{id}\n").as_bytes(),
        None,
    )?;
    Ok(id)
}

const WRITER_ID_FILE: &str = "writer-id";

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Eight hex digits from the standard library's randomly keyed hasher.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_directory_or_a_bucket_under_a_prefix() {
        let none = std::iter::empty();
        match parse("file:///var/lib/meshscope", none).unwrap() {
            Location::Local(dir) => assert_eq!(dir, PathBuf::from("/var/lib/meshscope")),
            other => panic!("{other:?}"),
        }
        let env = [
            ("AWS_ACCESS_KEY_ID".to_owned(), "id".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "secret".to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
        ];
        match parse("s3://bucket/a/prefix", env).unwrap() {
            Location::Remote { url, store } => {
                assert_eq!(url, "s3://bucket/a/prefix");
                assert!(format!("{store}").contains("a/prefix"), "{store}");
            }
            other => panic!("{other:?}"),
        }
        for bad in ["not a url", "http://example.com/x", "ftp://host/x"] {
            assert!(
                matches!(parse(bad, std::iter::empty()), Err(Error::Location(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_writer_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = writer_id_in(dir.path()).unwrap();
        assert!(valid_writer_id(&first), "{first}");
        assert_eq!(writer_id_in(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(writer_id_in(other.path()).unwrap(), first);
        assert!(!valid_writer_id("a.b"));
        assert!(!valid_writer_id("a_b"));
        assert!(!valid_writer_id(""));
        assert!(!valid_writer_id("-a"));
        assert!(valid_writer_id("collector-0"));
    }
}
