//! Reading the text files of rating datasets, line by line and with every problem reported as
//! `file:line: message`. Two readers:
//! - [`for_each_line`] for the layouts with a multi-byte separator (`::`) or none of the CSV
//!   rules: streams raw lines, so a 10M-line `ratings.dat` is never held as one string;
//! - [`Table`] over the `csv` crate for delimited files with or without a header (comma, tab,
//!   `|`), quoting on or off as the format defines it.
//!
//! Bytes are decoded per field: UTF-8 where valid, else latin-1 (the older MovieLens releases
//! wrote titles in latin-1), so a title never stops a load.
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

/// Opens `path` for reading, naming it in the error.
pub(crate) fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// Calls `f(line_number, line)` for every non-blank line of `path` (1-based numbers; a trailing
/// `\r` and a leading UTF-8 byte-order mark are removed).
pub(crate) fn for_each_line(path: &Path, mut f: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let mut buf = Vec::with_capacity(256);
    let mut no = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        no += 1;
        let mut line = buf.as_slice();
        if no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        while let Some((b'\n' | b'\r', rest)) = line.split_last() {
            line = rest;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        f(no, line)?;
    }
}

/// Splits `line` on `sep`, requiring exactly `N` fields (no allocation: this runs once per line
/// of files with tens of millions of lines).
pub(crate) fn split_exact<'a, const N: usize>(line: &'a [u8], sep: &[u8], path: &Path, no: usize) -> Result<[&'a [u8]; N]> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut rest = line;
    let mut n = 0usize;
    loop {
        let at = find(rest, sep);
        if n < N {
            out[n] = at.map_or(rest, |at| &rest[..at]);
        }
        n += 1;
        match at {
            Some(at) => rest = &rest[at + sep.len()..],
            None => break,
        }
    }
    if n != N {
        let shown = String::from_utf8_lossy(sep);
        return Err(Error::parse(path, no, format!("expected {N} fields separated by '{}', found {n}", shown.escape_debug())));
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memchr(*b, hay),
        _ => memchr::memmem::find(hay, needle),
    }
}

/// A field as text: UTF-8 if valid, else latin-1.
pub(crate) fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Parses a numeric field, naming `what` and the raw text when it is not a number.
pub(crate) fn num<T: Number>(bytes: &[u8], what: &str, path: &Path, no: usize) -> Result<T> {
    // Plain decimal digits (the ids, ratings and timestamps of nearly every log line) skip the
    // UTF-8 check, the trim and the general parser; up to 15 digits are exact in an f64 as well.
    if !bytes.is_empty() && bytes.len() <= 15 && bytes.iter().all(u8::is_ascii_digit) {
        if let Some(v) = T::from_digits(bytes.iter().fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))) {
            return Ok(v);
        }
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::parse(path, no, format!("{what} is not a number: {:?}", decode(bytes))))
}

/// A number type [`num`] reads; `from_digits` takes the value of a plain run of digits.
pub(crate) trait Number: FromStr {
    fn from_digits(v: i64) -> Option<Self>;
}

impl Number for i64 {
    fn from_digits(v: i64) -> Option<Self> {
        Some(v)
    }
}

impl Number for f64 {
    fn from_digits(v: i64) -> Option<Self> {
        Some(v as f64)
    }
}

/// A rating: a finite number (NaN, infinities and negative values are refused).
pub(crate) fn rating(bytes: &[u8], path: &Path, no: usize) -> Result<f64> {
    let r: f64 = num(bytes, "rating", path, no)?;
    if !r.is_finite() || r < 0.0 {
        return Err(Error::parse(path, no, format!("rating must be a finite number >= 0, got {:?}", decode(bytes))));
    }
    Ok(r)
}

/// A timestamp in whole seconds. Written as an integer, or as a float with no fraction
/// (RecBole's `timestamp:float` columns hold `978300760.0`).
pub(crate) fn timestamp(bytes: &[u8], path: &Path, no: usize) -> Result<i64> {
    if let Ok(t) = num::<i64>(bytes, "timestamp", path, no) {
        return Ok(t);
    }
    let t: f64 = num(bytes, "timestamp", path, no)?;
    if t.is_finite() && t.fract() == 0.0 && t.abs() < 9.0e15 {
        Ok(t as i64)
    } else {
        Err(Error::parse(path, no, format!("timestamp must be whole seconds, got {:?}", decode(bytes))))
    }
}

/// A delimited file read through the `csv` crate, with its header (if it has one) and the
/// 1-based line number of every record.
pub(crate) struct Table<'p> {
    pub path: &'p Path,
    pub header: Vec<String>,
    reader: csv::Reader<BufReader<std::fs::File>>,
    record: csv::ByteRecord,
}

impl<'p> Table<'p> {
    /// Opens `path`; `header` says whether the first line names the columns; `quoting` whether
    /// `"` quotes fields (MovieLens CSVs) or is an ordinary character (tab files, `u.item`).
    pub fn open(path: &'p Path, delimiter: u8, header: bool, quoting: bool) -> Result<Table<'p>> {
        let file = BufReader::with_capacity(1 << 20, open(path)?);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(header)
            .quoting(quoting)
            .flexible(true)
            .from_reader(file);
        let header = if header {
            let h = reader.byte_headers().map_err(|e| csv_error(path, e))?;
            let mut names: Vec<String> = h.iter().map(|f| decode(f).trim().to_string()).collect();
            if let Some(first) = names.first_mut() {
                *first = first.trim_start_matches('\u{feff}').to_string();
            }
            if names.iter().all(String::is_empty) {
                return Err(Error::parse(path, 1, "empty file: expected a header line"));
            }
            names
        } else {
            Vec::new()
        };
        Ok(Table { path, header, reader, record: csv::ByteRecord::new() })
    }

    /// The index of the first header column accepted by `is_match`, or an error that names the
    /// column as `what` and lists the header.
    pub fn column(&self, what: &str, is_match: impl Fn(&str) -> bool) -> Result<usize> {
        self.header.iter().position(|h| is_match(h)).ok_or_else(|| {
            Error::parse(self.path, 1, format!("missing column {what} (header has: {})", self.header.join(", ")))
        })
    }

    /// The next record with its line number, requiring at least `min_fields` fields; `None` at
    /// the end of the file. Blank lines are skipped.
    pub fn next(&mut self, min_fields: usize) -> Result<Option<(usize, &csv::ByteRecord)>> {
        loop {
            let more = self.reader.read_byte_record(&mut self.record).map_err(|e| csv_error(self.path, e))?;
            if !more {
                return Ok(None);
            }
            let no = self.record.position().map_or(0, |p| p.line() as usize);
            if self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.record.len() < min_fields {
                let sep = self.record.len();
                return Err(Error::parse(self.path, no, format!("expected {min_fields} fields, found {sep}")));
            }
            return Ok(Some((no, &self.record)));
        }
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        kind => Error::parse(path, line, format!("malformed CSV: {kind:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_same_with_and_without_the_digit_fast_path() {
        let p = Path::new("x.dat");
        assert_eq!(num::<i64>(b"0012", "id", p, 1).unwrap(), 12);
        assert_eq!(num::<i64>(b"978300760", "t", p, 1).unwrap(), 978_300_760);
        assert_eq!(num::<i64>(b" 7 ", "id", p, 1).unwrap(), 7);
        assert_eq!(num::<i64>(b"-3", "id", p, 1).unwrap(), -3);
        assert_eq!(num::<i64>(b"9223372036854775807", "id", p, 1).unwrap(), i64::MAX);
        let e = num::<i64>(b"99999999999999999999", "user id", p, 4).unwrap_err().to_string();
        assert_eq!(e, "x.dat:4: user id is not a number: \"99999999999999999999\"");
        assert_eq!(num::<f64>(b"5", "rating", p, 1).unwrap(), 5.0);
        assert_eq!(num::<f64>(b"3.5", "rating", p, 1).unwrap(), 3.5);
        assert_eq!(num::<f64>(b"1e3", "rating", p, 1).unwrap(), 1000.0);
        assert!(num::<i64>(b"", "id", p, 1).is_err());
    }

    #[test]
    fn split_exact_counts_fields_of_multibyte_separators() {
        let p = Path::new("x.dat");
        assert_eq!(split_exact::<3>(b"1::Star Wars: IV::Sci-Fi", b"::", p, 1).unwrap(), [&b"1"[..], b"Star Wars: IV", b"Sci-Fi"]);
        let e = split_exact::<3>(b"1::2", b"::", p, 7).unwrap_err().to_string();
        assert_eq!(e, "x.dat:7: expected 3 fields separated by '::', found 2");
        assert_eq!(split_exact::<4>(b"1\t2\t\t4", b"\t", p, 1).unwrap()[2], b"");
        let e = split_exact::<2>(b"1:2:3:4", b":", p, 2).unwrap_err().to_string();
        assert_eq!(e, "x.dat:2: expected 2 fields separated by ':', found 4");
    }

    #[test]
    fn fields_decode_utf8_else_latin1() {
        assert_eq!(decode("Misérables".as_bytes()), "Misérables");
        assert_eq!(decode(b"Mis\xe9rables"), "Misérables");
    }

    #[test]
    fn numbers_ratings_and_timestamps_are_checked() {
        let p = Path::new("r.csv");
        assert_eq!(rating(b"3.5", p, 2).unwrap(), 3.5);
        for bad in [&b"NaN"[..], b"-1", b"inf", b"x"] {
            assert!(rating(bad, p, 2).unwrap_err().to_string().starts_with("r.csv:2: "));
        }
        assert_eq!(timestamp(b"978300760", p, 1).unwrap(), 978300760);
        assert_eq!(timestamp(b"978300760.0", p, 1).unwrap(), 978300760);
        assert_eq!(timestamp(b"1.5", p, 3).unwrap_err().to_string(), "r.csv:3: timestamp must be whole seconds, got \"1.5\"");
    }
}
