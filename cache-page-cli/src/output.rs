//! Standard output: plain lines or JSON lines, buffered, and a closed pipe
//! (`cache-page list | head`) ends the command quietly instead of failing.

use std::io::{self, BufWriter, Stdout, Write};

use crate::error::CliError;

#[derive(Debug)]
pub struct Out {
    w: BufWriter<Stdout>,
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            w: BufWriter::new(io::stdout()),
            json,
        }
    }

    /// Whether the output is JSON lines.
    pub fn json(&self) -> bool {
        self.json
    }

    /// One line: `plain` in plain mode, else `json` on one line.
    pub fn item(
        &mut self,
        plain: impl AsRef<[u8]>,
        json: serde_json::Value,
    ) -> Result<(), CliError> {
        if self.json {
            self.json_line(&json)
        } else {
            self.bytes_line(plain.as_ref())
        }
    }

    /// A plain line, written as is (keys may hold any bytes).
    pub fn bytes_line(&mut self, line: &[u8]) -> Result<(), CliError> {
        let w = &mut self.w;
        w.write_all(line)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(output_error)
    }

    pub fn json_line(&mut self, value: &serde_json::Value) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.w, value)
            .map_err(io::Error::from)
            .and_then(|()| self.w.write_all(b"\n"))
            .map_err(output_error)
    }

    pub fn flush(&mut self) -> Result<(), CliError> {
        self.w.flush().map_err(output_error)
    }
}

fn output_error(err: io::Error) -> CliError {
    if err.kind() == io::ErrorKind::BrokenPipe {
        CliError::Closed
    } else {
        CliError::Output(err)
    }
}
