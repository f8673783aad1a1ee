//! Local-mode sources: a JSONL file and the generator, as one stream of raw
//! records with their position (and, for the generator, ground truth).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::local::generator::{FraudPattern, Generator};

pub use crate::record::MAX_RECORD_BYTES;

/// One raw input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The bytes (a JSON object when well-formed), at most [`MAX_RECORD_BYTES`].
    pub bytes: Vec<u8>,
    /// 1-based line number (file) or sequence number (generator).
    pub position: u64,
    /// Bytes the record had before truncation, when it was too long.
    pub oversized: Option<usize>,
    /// Ground truth for generated records: `Some(pattern)` for fraud.
    pub label: Option<FraudPattern>,
    /// Whether the record comes with ground truth at all.
    pub labelled: bool,
}

/// A source that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct SourceError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Where records come from in local mode.
pub enum LocalSource {
    /// JSON lines from a file (or standard input for `-`).
    File {
        /// The file's path, for errors.
        path: PathBuf,
        /// The reader.
        reader: Box<dyn BufRead + Send>,
        /// Lines read so far.
        line: u64,
    },
    /// The seed generator.
    Generator(Box<Generator>),
}

impl LocalSource {
    /// Opens a JSONL file; `-` is standard input.
    pub fn file(path: &Path) -> Result<Self, SourceError> {
        let reader: Box<dyn BufRead + Send> = if path.as_os_str() == "-" {
            Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
        } else {
            let file = File::open(path).map_err(|source| SourceError {
                path: path.to_owned(),
                source,
            })?;
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(LocalSource::File {
            path: path.to_owned(),
            reader,
            line: 0,
        })
    }

    /// Reads the next record; `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, SourceError> {
        match self {
            LocalSource::Generator(g) => Ok(g.next().map(|r| RawRecord {
                bytes: r.json,
                position: r.transaction_id as u64,
                oversized: None,
                label: r.label,
                labelled: true,
            })),
            LocalSource::File { path, reader, line } => loop {
                let mut bytes = Vec::new();
                // Read at most the limit plus one byte, so a huge line is detected
                // without holding it in memory, then skip the rest of it.
                let n = reader
                    .by_ref()
                    .take(MAX_RECORD_BYTES as u64 + 1)
                    .read_until(b'\n', &mut bytes)
                    .map_err(|source| SourceError {
                        path: path.clone(),
                        source,
                    })?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                let mut oversized = None;
                if bytes.last() != Some(&b'\n') && bytes.len() > MAX_RECORD_BYTES {
                    let mut total = bytes.len();
                    let mut rest = Vec::new();
                    loop {
                        rest.clear();
                        let m = reader
                            .by_ref()
                            .take(1 << 20)
                            .read_until(b'\n', &mut rest)
                            .map_err(|source| SourceError {
                                path: path.clone(),
                                source,
                            })?;
                        total += m;
                        if m == 0 || rest.last() == Some(&b'\n') {
                            break;
                        }
                    }
                    bytes.truncate(1024);
                    oversized = Some(total);
                }
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.iter().all(u8::is_ascii_whitespace) && oversized.is_none() {
                    continue; // blank lines are not records
                }
                return Ok(Some(RawRecord {
                    bytes,
                    position: *line,
                    oversized,
                    label: None,
                    labelled: false,
                }));
            },
        }
    }
}
