//! Config errors and where they are: [`ConfigError`] (`FILE:LINE:COL`)
//! and [`Cx`], which turns byte spans into lines and columns and collects
//! every problem so the earliest one can be reported.

use std::{fmt, ops::Range};

use super::parse::Checks;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// The conversion context: the text for positions, the errors found so
/// far, and the caller's [`Checks`].
pub(super) struct Cx<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    /// Byte offset of the start of each line.
    pub(super) line_starts: Vec<usize>,
    pub(super) errors: Vec<ConfigError>,
    pub(super) checks: Checks,
}

impl<'a> Cx<'a> {
    pub(super) fn new(text: &'a str, file: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            text,
            file,
            line_starts,
            errors: Vec::new(),
            checks: Checks::default(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }

    pub(super) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    pub(super) fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.error(span, message);
        self.errors.push(e);
    }

    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    /// The earliest error in the file (ties: the first found).
    pub(super) fn first_error(&mut self) -> Option<ConfigError> {
        let i =
            (0..self.errors.len()).min_by_key(|&i| (self.errors[i].line, self.errors[i].col))?;
        Some(self.errors.swap_remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_and_clamps() {
        let cx = Cx::new("ab\néx = 1\n", "f");
        assert_eq!(cx.line_col(0), (1, 1));
        assert_eq!(cx.line_col(3), (2, 1));
        assert_eq!(cx.line_col(5), (2, 2)); // after the two-byte 'é'
        assert_eq!(cx.line_col(4), (2, 1)); // inside 'é': back to its start
        assert_eq!(cx.line_col(999), (3, 1));
    }
}
