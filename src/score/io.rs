//! Candidate files in and scored files out, CSV or Parquet, as text records: scoring reads the id
//! columns and carries every other column through unchanged.
//!
//! A Parquet file is read `chunk` rows at a time (a slice of its row groups), so memory stays
//! bounded as for CSV. Its columns may be integers, floats, booleans or strings; each value
//! travels as its exact text (integers in decimal, floats in the shortest form that parses back
//! to the same value) and a Parquet output gets the input's types back. A CSV input written as
//! Parquet keeps its columns as strings, except the user, item and time columns, which are
//! integers where the run's ids are. Rows of a Parquet file are numbered in errors as the lines
//! of the same table in CSV (the header is line 1).
use crate::error::{Error, Result};
use polars::prelude::*;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Whether `path` is a Parquet file: it starts with the magic bytes `PAR1`.
pub fn is_parquet(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"PAR1"
}

/// Whether an output path asks for Parquet (`.parquet` or `.pq`).
pub fn wants_parquet(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("parquet" | "pq"))
}

/// The column types a table can carry through scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    /// UInt64, whose upper half does not fit an Int64.
    U64,
    Float,
    Bool,
    Text,
}

fn kind_of(dtype: &DataType) -> Option<Kind> {
    Some(if *dtype == DataType::UInt64 {
        Kind::U64
    } else if dtype.is_integer() {
        Kind::Int
    } else if dtype.is_float() {
        Kind::Float
    } else if dtype.is_bool() {
        Kind::Bool
    } else if dtype.is_string() {
        Kind::Text
    } else {
        return None;
    })
}

/// Records of a candidates file, with the line each came from.
pub enum Source {
    Csv { records: csv::StringRecordsIntoIter<std::io::BufReader<std::fs::File>>, bytes: u64, at: u64 },
    Parquet(ParquetSource),
}

pub struct ParquetSource {
    path: PathBuf,
    offset: usize,
    total: usize,
    chunk: usize,
    buffered: VecDeque<csv::StringRecord>,
}

/// The header of a candidates file and the input column types (`None` for CSV, whose columns are
/// text).
pub struct Header {
    pub names: csv::StringRecord,
    pub dtypes: Option<Vec<DataType>>,
}

pub fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    let msg = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    Error::parse(path, line, msg)
}

fn parquet_reader(path: &Path) -> Result<ParquetReader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(ParquetReader::new(file))
}

fn unreadable(path: &Path, e: PolarsError) -> Error {
    Error::dataset(path, format!("is not a readable Parquet file: {e}"))
}

impl Source {
    /// Opens `path`, CSV or Parquet (by its magic bytes), reading Parquet `chunk` rows at a time.
    pub fn open(path: &Path, chunk: usize) -> Result<(Source, Header)> {
        if is_parquet(path) {
            let total = parquet_reader(path)?.num_rows().map_err(|e| unreadable(path, e))?;
            let empty = parquet_reader(path)?.with_slice(Some((0, 0))).finish().map_err(|e| unreadable(path, e))?;
            let mut names = csv::StringRecord::new();
            let mut dtypes = Vec::new();
            for c in empty.columns() {
                if kind_of(c.dtype()).is_none() {
                    return Err(Error::dataset(
                        path,
                        format!("column '{}' has type {}; scoring carries integer, float, boolean and string columns (select the columns you need)", c.name(), c.dtype()),
                    ));
                }
                names.push_field(c.name());
                dtypes.push(c.dtype().clone());
            }
            let src = ParquetSource { path: path.to_path_buf(), offset: 0, total, chunk: chunk.max(1), buffered: VecDeque::new() };
            return Ok((Source::Parquet(src), Header { names, dtypes: Some(dtypes) }));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(std::io::BufReader::new(file));
        let names = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        Ok((Source::Csv { records: reader.into_records(), bytes, at: 0 }, Header { names, dtypes: None }))
    }

    /// The fraction of the input read so far, in [0, 1].
    pub fn fraction_read(&self) -> f64 {
        match self {
            Source::Csv { bytes, at, .. } => *at as f64 / (*bytes).max(1) as f64,
            Source::Parquet(p) => (p.offset - p.buffered.len()) as f64 / p.total.max(1) as f64,
        }
    }

    /// The next record and its line, `None` at the end.
    pub fn next_record(&mut self, path: &Path) -> Result<Option<(csv::StringRecord, u64)>> {
        match self {
            Source::Csv { records, at, .. } => match records.next() {
                None => Ok(None),
                Some(r) => {
                    let r = r.map_err(|e| csv_error(path, e))?;
                    let (line, byte) = r.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    *at = byte;
                    Ok(Some((r, line)))
                }
            },
            Source::Parquet(p) => p.next_record(),
        }
    }
}

impl ParquetSource {
    fn next_record(&mut self) -> Result<Option<(csv::StringRecord, u64)>> {
        if self.buffered.is_empty() && self.offset < self.total {
            let len = self.chunk.min(self.total - self.offset);
            let df = parquet_reader(&self.path)?.with_slice(Some((self.offset, len))).finish().map_err(|e| unreadable(&self.path, e))?;
            let start = self.offset;
            self.buffered = records_of(&df).map_err(|e| Error::dataset(&self.path, format!("rows {}..{}: {e}", start + 2, start + len + 1)))?.into();
            self.offset += len;
        }
        // Line numbers as in CSV: header 1, first row 2.
        let line = (self.offset - self.buffered.len() + 2) as u64;
        Ok(self.buffered.pop_front().map(|r| (r, line)))
    }
}

/// The rows of `df` as text records (nulls as empty fields).
fn records_of(df: &DataFrame) -> PolarsResult<Vec<csv::StringRecord>> {
    let n = df.height();
    let mut cols: Vec<Vec<String>> = Vec::with_capacity(df.width());
    for c in df.columns() {
        let s = c.as_materialized_series();
        let text: Vec<String> = match kind_of(s.dtype()) {
            Some(Kind::Int) => s.cast(&DataType::Int64)?.i64()?.iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
            Some(Kind::U64) => s.u64()?.iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
            Some(Kind::Float) => s.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
            Some(Kind::Bool) => s.bool()?.iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
            Some(Kind::Text) => s.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect(),
            None => polars_bail!(ComputeError: "column '{}' has type {}", s.name(), s.dtype()),
        };
        cols.push(text);
    }
    Ok((0..n).map(|r| cols.iter().map(|c| c[r].as_str()).collect()).collect())
}

/// Where scored records go.
pub enum Sink<W: Write> {
    Csv(csv::Writer<W>),
    Parquet(ParquetSink),
}

pub struct ParquetSink {
    path: PathBuf,
    writer: polars::io::parquet::write::BatchedWriter<std::fs::File>,
    names: Vec<String>,
    dtypes: Vec<DataType>,
    columns: Vec<Vec<String>>,
}

/// Rows per Parquet row group written.
const ROW_GROUP: usize = 65_536;

impl<W: Write> Sink<W> {
    pub fn csv(out: W) -> Sink<W> {
        Sink::Csv(csv::Writer::from_writer(out))
    }

    /// A Parquet file at `path` with columns `names` of types `dtypes`.
    pub fn parquet(path: &Path, names: Vec<String>, dtypes: Vec<DataType>) -> Result<Sink<W>> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let schema: Schema = names.iter().zip(&dtypes).map(|(n, d)| Field::new(n.as_str().into(), d.clone())).collect();
        let writer = ParquetWriter::new(file).batched(&schema).map_err(|e| Error::dataset(path, format!("cannot start the Parquet output: {e}")))?;
        let columns = vec![Vec::new(); names.len()];
        Ok(Sink::Parquet(ParquetSink { path: path.to_path_buf(), writer, names, dtypes, columns }))
    }

    /// Writes the header (CSV only; Parquet has its schema).
    pub fn header(&mut self, names: &csv::StringRecord, path: &Path) -> Result<()> {
        match self {
            Sink::Csv(w) => w.write_record(names).map_err(|e| csv_error(path, e)),
            Sink::Parquet(_) => Ok(()),
        }
    }

    pub fn write(&mut self, rec: &csv::StringRecord, path: &Path) -> Result<()> {
        match self {
            Sink::Csv(w) => w.write_record(rec).map_err(|e| csv_error(path, e)),
            Sink::Parquet(p) => {
                for (col, v) in p.columns.iter_mut().zip(rec.iter()) {
                    col.push(v.to_string());
                }
                if p.columns[0].len() >= ROW_GROUP {
                    p.flush()?;
                }
                Ok(())
            }
        }
    }

    pub fn finish(self, path: &Path) -> Result<()> {
        match self {
            Sink::Csv(mut w) => w.flush().map_err(|e| Error::io(path, e)),
            Sink::Parquet(mut p) => {
                p.flush()?;
                p.writer.finish().map_err(|e| Error::dataset(&p.path, format!("cannot finish the Parquet output: {e}")))?;
                Ok(())
            }
        }
    }
}

impl ParquetSink {
    fn flush(&mut self) -> Result<()> {
        if self.columns.is_empty() || self.columns[0].is_empty() {
            return Ok(());
        }
        let mut cols = Vec::with_capacity(self.names.len());
        for ((name, dtype), text) in self.names.iter().zip(&self.dtypes).zip(&mut self.columns) {
            let bad = |v: &str| Error::dataset(&self.path, format!("column '{name}': '{v}' is not a {dtype} value"));
            let name: PlSmallStr = name.as_str().into();
            let s = match kind_of(dtype) {
                Some(Kind::Int) => {
                    let v: Vec<Option<i64>> = text.iter().map(|t| if t.is_empty() { Ok(None) } else { t.trim().parse().map(Some).map_err(|_| bad(t)) }).collect::<Result<_>>()?;
                    Series::new(name, v)
                }
                Some(Kind::U64) => {
                    let v: Vec<Option<u64>> = text.iter().map(|t| if t.is_empty() { Ok(None) } else { t.trim().parse().map(Some).map_err(|_| bad(t)) }).collect::<Result<_>>()?;
                    Series::new(name, v)
                }
                Some(Kind::Float) => {
                    let v: Vec<Option<f64>> = text.iter().map(|t| if t.is_empty() { Ok(None) } else { t.trim().parse().map(Some).map_err(|_| bad(t)) }).collect::<Result<_>>()?;
                    Series::new(name, v)
                }
                Some(Kind::Bool) => {
                    let v: Vec<Option<bool>> = text.iter().map(|t| if t.is_empty() { Ok(None) } else { t.trim().parse().map(Some).map_err(|_| bad(t)) }).collect::<Result<_>>()?;
                    Series::new(name, v)
                }
                _ => Series::new(name, text.as_slice()),
            };
            let s = s.cast(dtype).map_err(|e| Error::dataset(&self.path, format!("column '{}': {e}", s.name())))?;
            cols.push(s.into_column());
            text.clear();
        }
        let df = DataFrame::new_infer_height(cols).map_err(|e| Error::dataset(&self.path, e.to_string()))?;
        self.writer.write_batch(&df).map_err(|e| Error::dataset(&self.path, format!("cannot write the Parquet output: {e}")))
    }
}

/// The output types of the input columns for a Parquet output: the input's own for a Parquet
/// input; for CSV, integers for the id and time columns (`int_cols`), text otherwise.
pub fn output_dtypes(header: &Header, int_cols: &[usize]) -> Vec<DataType> {
    match &header.dtypes {
        Some(d) => d.clone(),
        None => (0..header.names.len()).map(|c| if int_cols.contains(&c) { DataType::Int64 } else { DataType::String }).collect(),
    }
}
