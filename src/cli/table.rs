//! A tiny aligned-table printer for the listing commands (`status`, `models list`, …).
//!
//! Columns are as wide as their widest cell (counted in characters), numbers are right-aligned,
//! and cells are single-line: [`cell`] flattens and shortens free text such as prompts and
//! error messages so that one job stays one line. A crate (`comfy-table` and the like) would
//! bring borders, colours and terminal probing that these listings do not need.

use std::io::{self, Write};

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Rows of cells under a header, printed with two spaces between columns.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; each header is `(name, alignment)`.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|(name, _)| *name).collect(),
            align: columns.iter().map(|(_, align)| *align).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, value) in widths.iter_mut().zip(row) {
                *width = (*width).max(value.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
        self.write_line(out, &widths, &header)?;
        for row in &self.rows {
            self.write_line(out, &widths, row)?;
        }
        Ok(())
    }

    fn write_line(
        &self,
        out: &mut impl Write,
        widths: &[usize],
        cells: &[String],
    ) -> io::Result<()> {
        let mut line = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, ((value, width), align)) in cells.iter().zip(widths).zip(&self.align).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(value.chars().count());
            match align {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(value);
                }
                // No trailing spaces after the last column.
                Align::Left if i == last => line.push_str(value),
                Align::Left => {
                    line.push_str(value);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", line.trim_end())
    }

    /// Prints to stdout.
    pub fn print(&self) -> io::Result<()> {
        self.write_to(&mut io::stdout().lock())
    }
}

/// Free text as one cell: line breaks and runs of whitespace become one space, and text
/// longer than `max` characters is cut with an ellipsis.
pub fn cell(text: &str, max: usize) -> String {
    // Control characters (an escape sequence in a provider's error) would redraw the terminal.
    let flat = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An optional value as a cell, `-` when absent.
pub fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut table = Table::new(&[("id", Align::Right), ("name", Align::Left)]);
        table.push(vec!["7".into(), "short".into()]);
        table.push(vec!["1234".into(), "a longer name".into()]);
        let mut out = Vec::new();
        table.write_to(&mut out).expect("write to a vec");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text, "  ID  NAME\n   7  short\n1234  a longer name\n");
    }

    #[test]
    fn cells_are_one_line_and_bounded() {
        assert_eq!(cell("a\nb   c", 10), "a b c");
        assert_eq!(cell("a\u{1b}[2Jb\r\nc", 10), "a [2Jb c");
        assert_eq!(cell("abcdefghijkl", 5), "abcd…");
        assert_eq!(cell("ééééé", 5), "ééééé");
        assert_eq!(or_dash(None::<i32>), "-");
    }
}
