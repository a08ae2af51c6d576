//! The library's one error type. Every variant names what the user has to look at: the file, the
//! line, the field or the run folder.
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A malformed input file; `line` is 1-based, 0 when the problem is not tied to a line.
    #[error("{}", fmt_parse(.path, *.line, .msg))]
    Parse { path: PathBuf, line: usize, msg: String },

    #[error("{path}: {msg}")]
    Dataset { path: PathBuf, msg: String },

    /// A download that failed or did not check out.
    #[error("{url}: {msg}")]
    Fetch { url: String, msg: String },

    #[error("config: {0}")]
    Config(String),

    #[error("run folder {path}: {msg}")]
    Run { path: PathBuf, msg: String },

    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),

    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    /// A failure of the computation itself rather than of anything the user gave: a diverged
    /// loss, a worker thread that died.
    #[error("{0}")]
    Internal(String),
}

fn fmt_parse(path: &Path, line: usize, msg: &str) -> String {
    if line == 0 {
        format!("{}: {msg}", path.display())
    } else {
        format!("{}:{line}: {msg}", path.display())
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn parse(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::Parse { path: path.into(), line, msg: msg.into() }
    }
    pub fn dataset(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Dataset { path: path.into(), msg: msg.into() }
    }
    pub fn fetch(url: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Fetch { url: url.into(), msg: msg.into() }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn run(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Run { path: path.into(), msg: msg.into() }
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// True when the error comes from what the user gave us (files, flags, configs) rather than
    /// from a bug or the runtime; the binary exits 2 for these and 1 otherwise.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Torch(_) | Error::Internal(_))
    }
}
