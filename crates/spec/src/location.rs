//! Where goalpost keeps tables and published digests: a folder on this machine, or a prefix in
//! object storage.

use std::fmt;
use std::path::{Path, PathBuf};
use url::Url;

/// The URL schemes of object storage goalpost writes to, and what each names.
const OBJECT_STORE_SCHEMES: &[(&str, &str)] = &[
    ("s3", "Amazon S3 or an S3-compatible store"),
    ("s3a", "Amazon S3 (Hadoop's name)"),
    ("gs", "Google Cloud Storage"),
    ("az", "Azure Blob Storage"),
    ("abfs", "Azure Data Lake Storage Gen2"),
    ("abfss", "Azure Data Lake Storage Gen2 over TLS"),
];

/// A folder (`/srv/goalpost/data`) or an object-storage prefix (`s3://bucket/prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// Always ends without a slash; its path is the prefix inside the bucket (may be empty).
    Remote(Url),
}

impl Location {
    /// Read a configured location: `s3://`, `s3a://`, `gs://`, `az://`, `abfs://` or
    /// `abfss://` addresses are object storage, `file://` addresses and anything without a
    /// scheme are local paths (relative ones resolved by `resolve`). The error says what was
    /// expected.
    pub fn parse(text: &str, resolve: impl FnOnce(&Path) -> PathBuf) -> Result<Self, String> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(Location::Local(resolve(Path::new(text))));
        };
        let expected = || {
            let schemes: Vec<String> = OBJECT_STORE_SCHEMES
                .iter()
                .map(|(s, _)| format!("{s}://"))
                .collect();
            format!(
                "expected a local folder, a file:// address or an object-storage address \
                 starting with {}",
                schemes.join(", ")
            )
        };
        let scheme = scheme.to_ascii_lowercase();
        let url = Url::parse(text)
            .map_err(|e| format!("{text:?} is not a valid address ({e}); {}", expected()))?;
        if scheme == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| format!("{text:?} is not a local file:// address; {}", expected()))?;
            return Ok(Location::Local(resolve(&path)));
        }
        if !OBJECT_STORE_SCHEMES.iter().any(|(s, _)| *s == scheme) {
            return Err(format!(
                "{scheme}:// is not a storage goalpost writes to; {}",
                expected()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{text:?} names no bucket or container; expected e.g. {scheme}://my-bucket/goalpost"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} has a query or fragment; credentials and options come from the \
                 environment (AWS_*, GOOGLE_*, AZURE_*), not the address"
            ));
        }
        let mut url = url;
        let trimmed = url.path().trim_end_matches('/').to_string();
        url.set_path(&trimmed);
        Ok(Location::Remote(url))
    }

    /// The location of `segment` inside this one (`segment` is one plain name, or a few
    /// joined with `/`).
    pub fn join(&self, segment: &str) -> Location {
        match self {
            Location::Local(path) => Location::Local(path.join(segment)),
            Location::Remote(url) => {
                let mut url = url.clone();
                {
                    let mut segments = url
                        .path_segments_mut()
                        .expect("object-store URLs have paths");
                    segments.pop_if_empty();
                    for s in segment.split('/').filter(|s| !s.is_empty()) {
                        segments.push(s);
                    }
                }
                Location::Remote(url)
            }
        }
    }

    /// The folder, when this is on this machine.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Remote(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Remote(url) => write!(f, "{url}"),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Local(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::Local(path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Location, String> {
        Location::parse(text, |p| Path::new("/base").join(p))
    }

    #[test]
    fn local_paths_and_object_storage_addresses() {
        assert_eq!(parse("data").unwrap(), Location::Local("/base/data".into()));
        assert_eq!(parse("/srv/d").unwrap(), Location::Local("/srv/d".into()));
        assert_eq!(
            parse("file:///srv/d").unwrap(),
            Location::Local("/srv/d".into())
        );
        let s3 = parse("s3://city-data/goalpost/").unwrap();
        assert_eq!(s3.to_string(), "s3://city-data/goalpost");
        assert!(matches!(s3, Location::Remote(_)) && s3.local().is_none());
        assert_eq!(
            s3.join("tables").join("requests").to_string(),
            "s3://city-data/goalpost/tables/requests"
        );
        assert_eq!(
            parse("gs://b").unwrap().join("versions/v1").to_string(),
            "gs://b/versions/v1"
        );
        assert_eq!(
            parse("AZ://container/p").unwrap().to_string(),
            "az://container/p"
        );
    }

    #[test]
    fn unusable_addresses_say_what_was_expected() {
        let err = parse("https://example.com/data").unwrap_err();
        assert!(err.contains("https:// is not a storage"), "{err}");
        assert!(err.contains("s3://, s3a://, gs://, az://"), "{err}");
        let err = parse("s3:///prefix").unwrap_err();
        assert!(err.contains("names no bucket"), "{err}");
        let err = parse("s3://b/p?region=x").unwrap_err();
        assert!(err.contains("environment"), "{err}");
    }
}
