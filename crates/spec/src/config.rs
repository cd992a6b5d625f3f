use crate::diagnostic::{SourceFile, SpecError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `config/goalpost.toml`: where things live and how the site is titled.
///
/// Relative paths are resolved against the folder that holds the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub publish_dir: PathBuf,
    pub pipelines_dir: PathBuf,
    pub state_db: PathBuf,
    /// Published versions kept besides the current one.
    pub keep_versions: usize,
    pub site: SiteSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: String,
    publish_dir: String,
    pipelines_dir: String,
    state_db: Option<String>,
    #[serde(default = "default_keep")]
    keep_versions: usize,
    #[serde(default)]
    site: SiteSpec,
}

fn default_keep() -> usize {
    10
}

/// What the published site says about who publishes it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    #[serde(default = "default_title")]
    pub title: String,
    /// The publishing organisation, e.g. "City of Example".
    pub organization: Option<String>,
    /// Public URL the site is served at, used for absolute links.
    pub base_url: Option<String>,
}

fn default_title() -> String {
    "Performance and goals".to_string()
}

impl Default for SiteSpec {
    fn default() -> Self {
        Self {
            title: default_title(),
            organization: None,
            base_url: None,
        }
    }
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::io(path, e))?;
        let file = SourceFile::new(path, text);
        let raw: ConfigFile = toml::from_str(&file.text).map_err(|e| {
            SpecError::Invalid(vec![file.diagnostic(e.span(), e.message().trim())])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
        };
        let data_dir = resolve(&raw.data_dir);
        Ok(Self {
            file: path.to_path_buf(),
            state_db: raw
                .state_db
                .as_deref()
                .map_or_else(|| data_dir.join("state.sqlite"), resolve),
            publish_dir: resolve(&raw.publish_dir),
            pipelines_dir: resolve(&raw.pipelines_dir),
            data_dir,
            keep_versions: raw.keep_versions,
            site: raw.site,
        })
    }
}
