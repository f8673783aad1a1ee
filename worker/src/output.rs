//! Local-mode outputs: decisions and dead letters as JSON lines to a file or
//! standard output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use riskpipe_engine::decision::write_json_str;

/// An output that cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct OutputError {
    /// The file (or `-` for standard output).
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A JSON-lines output.
pub struct JsonLines {
    path: PathBuf,
    out: Box<dyn Write + Send>,
    /// Lines written.
    pub lines: u64,
}

impl JsonLines {
    /// Creates (truncates) a file, or standard output for `-`.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout()))
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| OutputError {
                    path: path.to_owned(),
                    source,
                })?;
            }
            let file = File::create(path).map_err(|source| OutputError {
                path: path.to_owned(),
                source,
            })?;
            Box::new(BufWriter::with_capacity(1 << 20, file))
        };
        Ok(JsonLines {
            path: path.to_owned(),
            out,
            lines: 0,
        })
    }

    /// Standard error (dead letters of a run whose decisions go to stdout).
    pub fn stderr() -> Self {
        JsonLines {
            path: PathBuf::from("<stderr>"),
            out: Box::new(std::io::stderr()),
            lines: 0,
        }
    }

    /// Writes one line (the JSON object without its newline).
    pub fn write_line(&mut self, json: &[u8]) -> Result<(), OutputError> {
        self.out
            .write_all(json)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| OutputError {
                path: self.path.clone(),
                source,
            })?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes buffered lines.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(|source| OutputError {
            path: self.path.clone(),
            source,
        })
    }
}

/// A dead letter: the raw record, why it was refused and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The raw bytes (possibly truncated).
    pub raw: &'a [u8],
    /// Short reason kind for metrics (`malformed_json`, `missing_field`, …).
    pub kind: &'a str,
    /// The human-readable reason.
    pub reason: &'a str,
    /// The source's name (file path or topic).
    pub source: &'a str,
    /// Line number (files) or offset (Kafka).
    pub position: u64,
    /// The Kafka partition, when there is one.
    pub partition: Option<i32>,
    /// When it was refused, ms since the epoch.
    pub at_ms: i64,
}

/// Raw bytes kept in a dead letter; longer records are cut (and say so), so a
/// dead letter always fits in a Kafka message.
pub const DEAD_LETTER_RAW_LIMIT: usize = 64 * 1024;

impl DeadLetter<'_> {
    /// The dead letter as a JSON object: the raw record as text when it is
    /// UTF-8 and always as base64 too, cut at [`DEAD_LETTER_RAW_LIMIT`] bytes
    /// (`raw_bytes` gives the full size, `raw_truncated` says whether it was cut).
    pub fn write(&self, out: &mut Vec<u8>) {
        let full = self.raw.len();
        let raw = &self.raw[..full.min(DEAD_LETTER_RAW_LIMIT)];
        out.extend_from_slice(b"{\"reason\":");
        write_json_str(self.reason, out);
        out.extend_from_slice(b",\"kind\":");
        write_json_str(self.kind, out);
        out.extend_from_slice(b",\"source\":");
        write_json_str(self.source, out);
        match self.partition {
            Some(p) => {
                out.extend_from_slice(
                    format!(",\"partition\":{p},\"offset\":{}", self.position).as_bytes(),
                );
            }
            None => out.extend_from_slice(format!(",\"line\":{}", self.position).as_bytes()),
        }
        out.extend_from_slice(
            format!(
                ",\"raw_bytes\":{full},\"raw_truncated\":{}",
                raw.len() < full
            )
            .as_bytes(),
        );
        out.extend_from_slice(b",\"raw\":");
        match std::str::from_utf8(raw) {
            Ok(text) => write_json_str(text, out),
            Err(_) => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"raw_base64\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .as_bytes(),
        );
        out.extend_from_slice(format!("\",\"failed_at\":{}}}", self.at_ms).as_bytes());
    }
}
