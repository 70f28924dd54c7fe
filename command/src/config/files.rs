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
    cache: HashMap<PathBuf, Cached>,
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
        Ok(self.resolve(written_path(field)?))
    }

    /// The contents of the file a string field names.
    pub fn read(&mut self, field: Field<'_, '_>) -> Result<(PathBuf, Rc<str>), ConfigError> {
        let (path, contents) = self.read_written(written_path(field)?);
        match contents {
            Ok(contents) => Ok((path, contents)),
            Err(error) => Err(file_error(field, &path, error)),
        }
    }

    /// The contents of `path`, resolved already, for the key of `field`.
    pub fn read_path(&mut self, path: &Path, field: Field<'_, '_>) -> Result<Rc<str>, ConfigError> {
        self.contents(path)
            .map_err(|error| file_error(field, path, error))
    }

    /// The file `path` (as written) names, resolved, and its contents.
    ///
    /// The path in the configuration's folder, which [`Files::resolve`] chooses whenever
    /// something is there, is read (once, [`Files::contents`]) without asking first whether it
    /// exists. Only when that fails is the path resolved as [`Files::resolve`] does (the
    /// current folder, then the error of reading the resolved path), so what is read and every
    /// error stay the same, at one `statx` less per file (two for a file read the first time).
    fn read_written(&mut self, path: &str) -> (PathBuf, Cached) {
        let in_folder = self.folder.join(path);
        let contents = self.contents(&in_folder);
        if contents.is_ok() {
            return (in_folder, contents);
        }
        let resolved = self.resolve(path);
        let contents = self.contents(&resolved);
        (resolved, contents)
    }

    /// The contents of `path`, read once.
    fn contents(&mut self, path: &Path) -> Cached {
        self.cache
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                fs::File::open(path)
                    .and_then(read_open)
                    .map_err(|error| (error.kind(), error.to_string()))
            })
            .clone()
    }
}

/// A file's contents, or the kind and text of the error reading it.
type Cached = Result<Rc<str>, (io::ErrorKind, String)>;

/// The error of reading the file `path` that `field` names.
fn file_error(
    field: Field<'_, '_>,
    path: &Path,
    (kind, message): (io::ErrorKind, String),
) -> ConfigError {
    ConfigError::File {
        key: field.key().to_string(),
        line: field.line(),
        path: path.to_path_buf(),
        source: io::Error::new(kind, message),
    }
}

/// The path a string field holds, as written; not empty.
fn written_path<'a>(field: Field<'a, '_>) -> Result<&'a str, ConfigError> {
    let text = field.string()?;
    if text.is_empty() {
        return Err(field.invalid("a file path"));
    }
    Ok(text)
}

/// The text of an open file. `fs::read_to_string` asks the file's size (`statx`) and
/// position (`lseek`) before reading; read through `Take`, a file of a few KiB (a certificate,
/// a key) takes two `read`s into a buffer of 8 KiB and nothing else, and a larger one grows
/// the buffer as it is read. Text that is not UTF-8 is refused with the same error.
fn read_open(file: fs::File) -> io::Result<Rc<str>> {
    let mut contents = String::with_capacity(8 * 1024);
    io::Read::read_to_string(&mut io::Read::take(file, u64::MAX), &mut contents)?;
    Ok(Rc::from(contents))
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

    /// What [`Files::read`] gives for each kind of file, and every error, against
    /// `fs::read_to_string` of the path [`Files::resolve`] gives: text, a file larger than the
    /// first buffer, text that is not UTF-8, a folder, nothing, a file only the current folder
    /// has (this crate's folder, where tests run), each twice (the second time from the cache).
    #[test]
    fn files_read_as_fs_reads_them() {
        let folder = tempfile::tempdir().unwrap();
        let large: String = (0..3000).map(|line| format!("line {line}\n")).collect();
        fs::write(folder.path().join("small.pem"), "-----BEGIN-----\n").unwrap();
        fs::write(folder.path().join("large.pem"), &large).unwrap();
        fs::write(folder.path().join("latin1.pem"), b"caf\xe9\n").unwrap();
        fs::create_dir(folder.path().join("folder")).unwrap();
        let mut files = Files::new(folder.path());
        let names = [
            "small.pem",
            "large.pem",
            "latin1.pem",
            "folder",
            "missing.pem",
            "tests/fixtures/key.pem",
        ];
        for name in names.iter().chain(&names) {
            let path = files.resolve(name);
            let read = files.read_written(name);
            match (read, fs::read_to_string(&path)) {
                ((read_path, Ok(contents)), Ok(expected)) => {
                    assert_eq!((read_path, &*contents), (path, expected.as_str()), "{name}");
                }
                ((read_path, Err((kind, message))), Err(expected)) => {
                    assert_eq!(read_path, path, "{name}");
                    assert_eq!((kind, message), (expected.kind(), expected.to_string()));
                }
                (read, expected) => panic!("{name}: {read:?} against {expected:?}"),
            }
        }
        assert!(files.resolve("tests/fixtures/key.pem").is_absolute());
    }
}
