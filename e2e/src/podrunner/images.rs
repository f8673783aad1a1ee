//! Which local binary stands for a container image.

use std::path::{Path, PathBuf};

/// Maps container images to local binaries.
///
/// Explicit entries (`pattern=path`) win and match when the image contains `pattern`.
/// Otherwise an image whose name (without registry, tag or digest) starts with
/// `riskpipe` maps to the file of that name in one of the binary folders, e.g.
/// `ghcr.io/acme/riskpipe-worker:1.2` to `<bin dir>/riskpipe-worker`.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    explicit: Vec<(String, PathBuf)>,
    bin_dirs: Vec<PathBuf>,
}

impl ImageMap {
    /// A map that looks for `riskpipe*` binaries in `bin_dirs`.
    pub fn new(bin_dirs: Vec<PathBuf>) -> Self {
        Self {
            explicit: Vec::new(),
            bin_dirs,
        }
    }

    /// Adds an explicit entry: images containing `pattern` run `binary`.
    pub fn with_entry(mut self, pattern: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        self.explicit.push((pattern.into(), binary.into()));
        self
    }

    /// Parses `pattern=path` as given on the command line.
    pub fn parse_entry(entry: &str) -> Option<(String, PathBuf)> {
        let (pattern, path) = entry.split_once('=')?;
        (!pattern.is_empty() && !path.is_empty()).then(|| (pattern.to_owned(), path.into()))
    }

    /// Whether this runner handles `image` at all (it may still lack the binary).
    pub fn handles(&self, image: &str) -> bool {
        self.explicit
            .iter()
            .any(|(p, _)| image.contains(p.as_str()))
            || image_base_name(image).starts_with("riskpipe")
    }

    /// The binary for `image`, if it exists now.
    pub fn resolve(&self, image: &str) -> Option<PathBuf> {
        if let Some((_, path)) = self
            .explicit
            .iter()
            .find(|(p, _)| image.contains(p.as_str()))
        {
            return is_file(path).then(|| path.clone());
        }
        let name = image_base_name(image);
        if !name.starts_with("riskpipe") {
            return None;
        }
        self.bin_dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|path| is_file(path))
    }
}

fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

/// `registry:5000/org/name:tag@sha256:...` → `name`.
pub fn image_base_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_strips_registry_tag_and_digest() {
        assert_eq!(image_base_name("riskpipe-worker"), "riskpipe-worker");
        assert_eq!(
            image_base_name("ghcr.io/a/riskpipe-worker:1.2"),
            "riskpipe-worker"
        );
        assert_eq!(
            image_base_name("reg:5000/riskpipe-operator@sha256:ab"),
            "riskpipe-operator"
        );
    }

    #[test]
    fn resolves_riskpipe_images_from_bin_dirs_and_explicit_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("riskpipe-worker"), "").unwrap();
        let other = dir.path().join("other-bin");
        std::fs::write(&other, "").unwrap();
        let map = ImageMap::new(vec![dir.path().to_owned()]).with_entry("acme/tool", &other);
        assert_eq!(
            map.resolve("x/riskpipe-worker:dev"),
            Some(dir.path().join("riskpipe-worker"))
        );
        assert_eq!(map.resolve("acme/tool:1"), Some(other));
        assert!(map.handles("riskpipe-operator:dev"));
        assert_eq!(map.resolve("riskpipe-operator:dev"), None);
        assert!(!map.handles("nginx:1.27"));
    }
}
