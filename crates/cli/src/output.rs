//! Output formats: aligned tables, JSON, YAML.
use std::io::Write;

use serde::Serialize;

use crate::args::{Format, ListArgs};
use crate::error::{Error, Result};

/// The namespace a `list` looks at (`None`: all).
pub(crate) fn list_namespace(args: &ListArgs) -> Option<&str> {
    if args.all_namespaces { None } else { Some(args.namespace.as_deref().unwrap_or("default")) }
}

/// A plain text table with aligned columns.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_string()).collect(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(out, "{}", cells.join("   ").trim_end())?;
        }
        Ok(())
    }
}

/// Writes `items` as JSON or YAML, or the table `table` builds.
pub(crate) fn render<T: Serialize>(
    format: Format,
    items: &T,
    out: &mut impl Write,
    table: impl FnOnce() -> Table,
) -> Result<()> {
    match format {
        Format::Table => table().write(out)?,
        Format::Json => {
            let text = serde_json::to_string_pretty(items).map_err(|e| Error::Serialize(e.to_string()))?;
            writeln!(out, "{text}")?;
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(items).map_err(|e| Error::Serialize(e.to_string()))?;
            write!(out, "{text}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide-cell".into(), "x".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A           LONGER\nwide-cell   x\n");
    }
}
