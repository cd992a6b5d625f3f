//! `indicators.csv`: the same rows and columns as `indicators.parquet`, for spreadsheets.

use crate::digest::Digest;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Text a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, or a leading tab or
/// carriage return) gets a leading `'`, so opening the file never runs anything.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

pub(crate) fn write(digest: &Digest, out: impl std::io::Write) -> Result<(), String> {
    let batch = crate::parquet_out::batch(digest).map_err(|e| e.to_string())?;
    let mut w = csv::Writer::from_writer(out);
    let schema = batch.schema();
    w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
        .map_err(|e| e.to_string())?;
    let options = FormatOptions::default().with_null("");
    let formatters: Vec<(ArrayFormatter<'_>, bool)> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            ArrayFormatter::try_new(c.as_ref(), &options)
                .map(|fmt| (fmt, matches!(f.data_type(), DataType::Utf8)))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut record: Vec<String> = Vec::with_capacity(formatters.len());
    for row in 0..batch.num_rows() {
        record.clear();
        for (fmt, text) in &formatters {
            let cell = fmt.value(row).to_string();
            record.push(if *text {
                neutralise(&cell).into_owned()
            } else {
                cell
            });
        }
        w.write_record(&record).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn formulas_are_neutralised_and_plain_text_is_not() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Brooklyn", "Brooklyn"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(neutralise(cell), want, "{cell:?}");
        }
    }
}
