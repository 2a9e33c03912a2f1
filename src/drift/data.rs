//! Drift data from CSV files: a header row naming the columns, then one sample per row.
//!
//! Only the requested columns are parsed (a timestamp or unit column may hold anything).
//! Every problem names the file, and where there is one the line and the column, because
//! the person reading the message is looking at a spreadsheet export, not at this code.
//! Cells must be finite numbers: an empty cell, `NaN` or `inf` is an error rather than a
//! silently dropped sample, so two files are always compared on the rows they show.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::pipeline::message::INPUT_FEATURES;

/// Errors loading drift data; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: empty file (no header row)", path.display())]
    NoHeader { path: PathBuf },
    #[error("{}: no data rows after the header", path.display())]
    NoRows { path: PathBuf },
    #[error("{}: missing column(s) {}; the header has: {}", path.display(), List(missing), List(available))]
    MissingColumns {
        path: PathBuf,
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error(
        "{}:{line}: column {column}: {}",
        path.display(),
        if value.is_empty() { "empty cell, expected a number".to_string() }
        else { format!("\"{value}\" is not a finite number") }
    )]
    NotNumeric {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{}: none of the model inputs ({}) is a column; choose columns with --features (the header has: {})",
        path.display(), INPUT_FEATURES.join(", "), List(available)
    )]
    NoDefaultFeatures {
        path: PathBuf,
        available: Vec<String>,
    },
    #[error("no features selected")]
    NoFeatures,
}

/// Comma-separated list for messages.
struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(nothing)");
        }
        f.write_str(&self.0.join(", "))
    }
}

fn reader(path: &Path) -> Result<csv::Reader<File>, DataError> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file))
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => DataError::Malformed {
            path: path.to_path_buf(),
            line,
            message: format!("{len} fields where the header has {expected_len}"),
        },
        csv::ErrorKind::Utf8 { err, .. } => DataError::Malformed {
            path: path.to_path_buf(),
            line,
            message: format!("not UTF-8 text ({err})"),
        },
        other => DataError::Malformed {
            path: path.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

fn headers(path: &Path, rdr: &mut csv::Reader<File>) -> Result<Vec<String>, DataError> {
    let header = rdr.headers().map_err(|e| csv_error(path, e))?;
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(DataError::NoHeader {
            path: path.to_path_buf(),
        });
    }
    Ok(header.iter().map(str::to_string).collect())
}

/// The column names of a CSV file.
pub fn read_header(path: &Path) -> Result<Vec<String>, DataError> {
    headers(path, &mut reader(path)?)
}

/// The model inputs (UCWIT, UCAIT, UCWF, UCAIH, AMBT, UCTSP) present in `header`, in that
/// order.
pub fn default_features(header: &[String]) -> Vec<String> {
    INPUT_FEATURES
        .iter()
        .filter(|f| header.iter().any(|h| h == *f))
        .map(|f| f.to_string())
        .collect()
}

/// Reads the columns `features` (in that order) of the CSV file at `path`.
pub fn load_columns(
    path: &Path,
    features: &[String],
) -> Result<Vec<(String, Vec<f64>)>, DataError> {
    if features.is_empty() {
        return Err(DataError::NoFeatures);
    }
    let mut rdr = reader(path)?;
    let header = headers(path, &mut rdr)?;
    let missing: Vec<String> = features
        .iter()
        .filter(|f| !header.iter().any(|h| h == *f))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(DataError::MissingColumns {
            path: path.to_path_buf(),
            missing,
            available: header,
        });
    }
    let index: Vec<usize> = features
        .iter()
        .map(|f| header.iter().position(|h| h == f).expect("checked above"))
        .collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); features.len()];
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        for ((column, &i), name) in columns.iter_mut().zip(&index).zip(features) {
            let cell = &record[i];
            match cell.parse::<f64>() {
                Ok(x) if x.is_finite() => column.push(x),
                _ => {
                    return Err(DataError::NotNumeric {
                        path: path.to_path_buf(),
                        line,
                        column: name.clone(),
                        value: cell.to_string(),
                    })
                }
            }
        }
    }
    if columns[0].is_empty() {
        return Err(DataError::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(features.iter().cloned().zip(columns).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loads_selected_columns_in_order() {
        let f = file("ts,UCAIT,UCWIT,note\n2026-01-01,25.0,7.5,ok\n2026-01-02, 24.5 ,8,\"a, b\"\n");
        let cols = load_columns(f.path(), &names(&["UCWIT", "UCAIT"])).unwrap();
        assert_eq!(cols[0], ("UCWIT".to_string(), vec![7.5, 8.0]));
        assert_eq!(cols[1], ("UCAIT".to_string(), vec![25.0, 24.5]));
    }

    #[test]
    fn spreadsheet_exports_with_a_byte_order_mark_load() {
        let f = file("\u{feff}UCWIT,UCAIT\r\n7.5,25\r\n");
        let cols = load_columns(f.path(), &names(&["UCWIT"])).unwrap();
        assert_eq!(cols[0].1, vec![7.5]);
    }

    #[test]
    fn default_features_are_the_model_inputs_present() {
        let header = names(&["AMBT", "x", "UCWIT", "UCTSP"]);
        assert_eq!(
            default_features(&header),
            names(&["UCWIT", "AMBT", "UCTSP"])
        );
        assert!(default_features(&names(&["a"])).is_empty());
    }

    #[test]
    fn missing_columns_are_named() {
        let f = file("UCWIT,UCAIT\n1,2\n");
        let err = load_columns(f.path(), &names(&["UCWIT", "UCWF", "AMBT"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(msg.contains("missing column(s) UCWF, AMBT"), "{msg}");
        assert!(msg.contains("the header has: UCWIT, UCAIT"), "{msg}");
    }

    #[test]
    fn non_numeric_cells_name_line_and_column() {
        let f = file("UCWIT,UCAIT\n1,2\n3,4\n5,warm\n");
        let err = load_columns(f.path(), &names(&["UCWIT", "UCAIT"])).unwrap_err();
        let msg = err.to_string();
        let expected = format!(
            "{}:4: column UCAIT: \"warm\" is not a finite number",
            f.path().display()
        );
        assert_eq!(msg, expected);
        let f = file("UCWIT\n1\n\"\"\n");
        let msg = load_columns(f.path(), &names(&["UCWIT"]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with(":3: column UCWIT: empty cell, expected a number"),
            "{msg}"
        );
        let f = file("UCWIT\nNaN\n");
        let msg = load_columns(f.path(), &names(&["UCWIT"]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"NaN\" is not a finite number"), "{msg}");
    }

    #[test]
    fn empty_files_and_header_only_files() {
        let f = file("");
        let err = load_columns(f.path(), &names(&["UCWIT"])).unwrap_err();
        assert!(matches!(err, DataError::NoHeader { .. }), "{err}");
        assert!(err.to_string().contains("empty file"), "{err}");
        let f = file("UCWIT,UCAIT\n");
        let err = load_columns(f.path(), &names(&["UCWIT"])).unwrap_err();
        assert!(
            err.to_string().ends_with("no data rows after the header"),
            "{err}"
        );
        assert!(matches!(read_header(f.path()), Ok(h) if h == names(&["UCWIT", "UCAIT"])));
    }

    #[test]
    fn ragged_rows_and_missing_files() {
        let f = file("a,b\n1,2\n3\n");
        let msg = load_columns(f.path(), &names(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":3: 1 fields where the header has 2"), "{msg}");
        let msg = load_columns(Path::new("/nonexistent/ref.csv"), &names(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("/nonexistent/ref.csv: cannot read"),
            "{msg}"
        );
        assert!(matches!(
            load_columns(f.path(), &[]),
            Err(DataError::NoFeatures)
        ));
    }
}
