//! A tiny aligned-table printer for the listing commands (`status`, `models list`, …).
//!
//! Columns are as wide as their widest cell (counted in characters), numbers are right-aligned,
//! and cells are single-line: [`cell`] flattens and shortens free text such as prompts and
//! error messages so that one job stays one line.
//!
//! Stored text (prompts, answers, provider errors) is written by people and models this
//! terminal's owner does not control, so no control character reaches the terminal: an
//! `ESC[2J` in an answer must not clear the screen, a CR must not overwrite the line before it,
//! and a right-to-left override must not reorder what is read. [`inert`] shows each one as a
//! visible stand-in instead; every cell goes through it when the table is written. A crate (`comfy-table` and the like) would
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
        self.rows.push(Self::clean(row));
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

    /// A row's cells made safe for a terminal (see [`inert`]) and kept on one line: a table
    /// is only ever printed, so it never holds a raw control character.
    fn clean(row: Vec<String>) -> Vec<String> {
        row.into_iter()
            .map(|cell| {
                if cell.chars().any(is_dangerous) {
                    inert(&cell.replace(['\n', '\r', '\t'], " "))
                } else {
                    cell
                }
            })
            .collect()
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

/// Whether `c` would be read by a terminal as something other than text: C0 controls (ESC,
/// BEL, CR, backspace…), DEL, C1 controls (U+0080–U+009F, among them the one-byte CSI), and the
/// bidirectional overrides and isolates that reorder what is shown ("Trojan Source").
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character replaced by a visible stand-in: C0 controls and DEL by
/// their Unicode control pictures (ESC shows as `␛`, CR as `␍`), the rest by `�`. Line feeds
/// are kept (multi-line output stays multi-line); tabs become a space. Cells are flattened by
/// [`cell`] before this, so a table's rows never span lines.
pub fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            '\u{0}'..='\u{1F}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'),
            '\u{7F}' => '\u{2421}',
            c if is_dangerous(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Free text as one cell: line breaks and runs of whitespace become one space, control
/// characters a visible stand-in ([`inert`]), and text longer than `max` characters is cut
/// with an ellipsis.
pub fn cell(text: &str, max: usize) -> String {
    let flat = inert(&text.split_whitespace().collect::<Vec<_>>().join(" "));
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
        // Whitespace folds to one space; an escape shows as its visible stand-in.
        assert_eq!(cell("a\u{1b}[2Jb\r\nc", 10), "a\u{241b}[2Jb c");
        assert_eq!(cell("abcdefghijkl", 5), "abcd…");
        assert_eq!(cell("ééééé", 5), "ééééé");
        assert_eq!(or_dash(None::<i32>), "-");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let nasty = "a\u{1b}[2Jb\rc\u{7}d\u{9b}31me\u{202e}f\u{7f}";
        let shown = cell(nasty, 100);
        assert_eq!(shown, "a␛[2Jb c␇d�31me�f␡");
        assert!(!shown.chars().any(is_dangerous), "{shown:?}");
        assert_eq!(inert("one\ntwo\r\n"), "one\ntwo␍\n");
        let mut table = Table::new(&[("error", Align::Left)]);
        table.push(vec!["x\u{1b}]0;title\u{7}\r\ny".into()]);
        let mut out = Vec::new();
        table.write_to(&mut out).expect("write to a vec");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text, "ERROR\nx␛]0;title␇  y\n");
    }
}
