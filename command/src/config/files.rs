//! Files named by the configuration: paths resolved against the configuration's folder (or the
//! current folder, as Sōzu does, when only there they name something), and read once each
//! however many keys name them.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    rc::Rc,
};

use super::{document::Field, error::ConfigError};

/// Reads the files a configuration names, each once.
pub(super) struct Files {
    /// The folder of the configuration file, against which relative paths resolve.
    folder: PathBuf,
    /// Contents by resolved path; a failed read keeps its error kind and text.
    cache: HashMap<PathBuf, Result<Rc<str>, (io::ErrorKind, String)>>,
}

impl Files {
    pub fn new(folder: &Path) -> Self {
        Files {
            folder: folder.to_path_buf(),
            cache: HashMap::new(),
        }
    }

    /// `path` as written in the file, made relative to the configuration's folder; or to the
    /// current folder when only there does it name something, as in Sōzu, which opens paths as
    /// written (its sample `command/assets/config.toml` names `./assets/…` from `command/`).
    pub fn resolve(&self, path: &str) -> PathBuf {
        let in_folder = self.folder.join(path);
        if in_folder.exists() {
            return in_folder;
        }
        match std::path::absolute(path) {
            Ok(in_current_folder) if in_current_folder.exists() => in_current_folder,
            _ => in_folder,
        }
    }

    /// `path` resolved against the configuration's folder (unchanged when absolute).
    pub fn folder_join(&self, path: &std::path::Path) -> PathBuf {
        self.folder.join(path)
    }

    /// The path a string field names, resolved.
    pub fn path(&self, field: Field<'_, '_>) -> Result<PathBuf, ConfigError> {
        let text = field.string()?;
        if text.is_empty() {
            return Err(field.invalid("a file path"));
        }
        Ok(self.resolve(text))
    }

    /// The contents of the file a string field names.
    pub fn read(&mut self, field: Field<'_, '_>) -> Result<(PathBuf, Rc<str>), ConfigError> {
        let path = self.path(field)?;
        let contents = self.read_path(&path, field)?;
        Ok((path, contents))
    }

    /// The contents of `path`, resolved already, for the key of `field`.
    pub fn read_path(&mut self, path: &Path, field: Field<'_, '_>) -> Result<Rc<str>, ConfigError> {
        let cached =
            self.cache.entry(path.to_path_buf()).or_insert_with(|| {
                match fs::read_to_string(path) {
                    Ok(contents) => Ok(Rc::from(contents)),
                    Err(error) => Err((error.kind(), error.to_string())),
                }
            });
        cached.clone().map_err(|(kind, message)| ConfigError::File {
            key: field.key().to_string(),
            line: field.line(),
            path: path.to_path_buf(),
            source: io::Error::new(kind, message),
        })
    }
}

/// The PEM blocks of a certificate chain file, in order. Text outside blocks is left out; a
/// file with no block is kept whole, for the certificate checks to refuse.
pub(super) fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let Some(end_marker) = block.find(END) else {
            break;
        };
        // The END line runs to the next "-----" after its label.
        let after_label = end_marker + END.len();
        let end = block[after_label..]
            .find("-----")
            .map_or(block.len(), |close| after_label + close + "-----".len());
        blocks.push(block[..end].to_string());
        rest = &block[end..];
    }
    if blocks.is_empty() && !text.trim().is_empty() {
        blocks.push(text.to_string());
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_splits_into_pem_blocks() {
        let chain = "intro\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                     -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(chain);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].starts_with("-----BEGIN CERTIFICATE-----\nAAA"));
        assert!(blocks[1].ends_with("-----END CERTIFICATE-----"));
        assert!(pem_blocks("\n").is_empty());
    }
}
