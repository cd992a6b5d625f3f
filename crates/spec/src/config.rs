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
        let raw: ConfigFile = toml::from_str(&file.text)
            .map_err(|e| SpecError::Invalid(vec![file.diagnostic(e.span(), e.message().trim())]))?;
        // Absolute, so paths shown to users and written to the digest read cleanly.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().map_err(|e| SpecError::io(base, e))?;
        let base = base.as_path();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            normalize(&if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
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

/// Resolve `.` and `..` without touching the disk (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("goalpost-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let file = dir.join("config/goalpost.toml");
        std::fs::write(&file, "data_dir = \"../data\"\npublish_dir = \"/srv/site\"\npipelines_dir = \"../pipelines\"\n").unwrap();
        let c = Config::load(&file).unwrap();
        let root = dir.canonicalize().unwrap();
        assert_eq!(c.data_dir, root.join("data"));
        assert_eq!(c.state_db, root.join("data/state.sqlite"));
        assert_eq!(c.publish_dir, PathBuf::from("/srv/site"));
        assert_eq!(c.keep_versions, 10);
        std::fs::write(&file, "data_dir = 1\n").unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(err.contains("goalpost.toml:1:12"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
