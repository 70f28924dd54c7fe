//! Readable tables for the terminal: a header line and aligned columns.

use std::io::{self, Write};

/// Prints `rows` under `headers`, each column as wide as its widest cell. The last column is
/// not padded.
pub fn print(headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    write_row(&mut out, &widths, &header)?;
    for row in rows {
        write_row(&mut out, &widths, row)?;
    }
    out.flush()
}

fn write_row(out: &mut impl Write, widths: &[usize], row: &[String]) -> io::Result<()> {
    let last = row.len().saturating_sub(1);
    for (index, cell) in row.iter().enumerate() {
        if index == last {
            write!(out, "{cell}")?;
        } else {
            let width = widths.get(index).copied().unwrap_or(0);
            write!(out, "{cell:<width$}  ")?;
        }
    }
    writeln!(out)
}
