//! A lake table's data files: rows, sorted by key, become Parquet files of at most
//! `ROWS_PER_FILE` rows (or `FILE_BYTES`), each named after what it holds, so that the same
//! rows always give the same file, byte for byte and name for name, and a file that is already
//! in the table is never written again. Memory holds one file being made.

use super::columns::{BATCH_ROWS, LakeColumn, arrow_schema, record_batch};
use crate::db::Value;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows in a file: a change rewrites the files whose key ranges it falls in, so smaller files
/// mean smaller incremental commits, and larger ones fewer files to read.
pub const ROWS_PER_FILE: usize = 65_536;

/// A file is cut early past this many encoded bytes (wide rows, blobs), to bound memory.
pub const FILE_BYTES: usize = 32 << 20;

/// One finished data file.
#[derive(Clone, Debug)]
pub struct DataFile {
    /// `part-<64 hex digits of its SHA-256>.snappy.parquet`.
    pub name: String,
    pub bytes: bytes::Bytes,
    pub rows: u64,
    /// The key of its first row.
    pub first_key: Vec<Value>,
}

/// Makes the data files of one stretch of rows, given in key order.
pub struct FileMaker {
    columns: Vec<LakeColumn>,
    schema: SchemaRef,
    /// The key columns' places in a row.
    key: Vec<usize>,
    writer: Option<ArrowWriter<Vec<u8>>>,
    /// Rows in a file: `ROWS_PER_FILE` unless a test asks for smaller files.
    rows_per_file: usize,
    rows_in_file: usize,
    first_key: Option<Vec<Value>>,
    pending: Vec<Vec<Value>>,
}

fn properties(rows_per_file: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_file))
        // A fixed writer name: a library upgrade alone does not make every file new.
        .set_created_by("cloudmigrate".into())
        .build()
}

impl FileMaker {
    pub fn new(columns: Vec<LakeColumn>, key: Vec<usize>, rows_per_file: usize) -> Self {
        let schema = arrow_schema(&columns);
        Self {
            columns,
            schema,
            key,
            writer: None,
            rows_per_file: rows_per_file.max(1),
            rows_in_file: 0,
            first_key: None,
            pending: Vec::with_capacity(BATCH_ROWS),
        }
    }

    /// Takes rows; returns the files they completed.
    pub fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<Vec<DataFile>, String> {
        let mut done = vec![];
        for row in rows {
            if self.first_key.is_none() {
                self.first_key = Some(self.key.iter().map(|&i| row[i].clone()).collect());
            }
            self.pending.push(row);
            let room = self.rows_per_file - self.rows_in_file;
            if self.pending.len() >= BATCH_ROWS.min(room) {
                self.write_pending()?;
                if self.file_is_full() {
                    done.extend(self.finish_file()?);
                }
            }
        }
        Ok(done)
    }

    /// The last file, if any rows are left.
    pub fn finish(mut self) -> Result<Option<DataFile>, String> {
        self.write_pending()?;
        self.finish_file()
    }

    fn write_pending(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let batch = record_batch(&self.columns, &self.schema, &rows)?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(
                ArrowWriter::try_new(
                    Vec::new(),
                    self.schema.clone(),
                    Some(properties(self.rows_per_file)),
                )
                .map_err(|e| format!("starting a Parquet file: {e}"))?,
            ),
        };
        writer
            .write(&batch)
            .map_err(|e| format!("writing a Parquet file: {e}"))?;
        self.rows_in_file += rows.len();
        Ok(())
    }

    fn file_is_full(&self) -> bool {
        self.rows_in_file >= self.rows_per_file
            || self
                .writer
                .as_ref()
                .is_some_and(|w| w.bytes_written() + w.in_progress_size() >= FILE_BYTES)
    }

    fn finish_file(&mut self) -> Result<Option<DataFile>, String> {
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        let bytes = writer
            .into_inner()
            .map_err(|e| format!("finishing a Parquet file: {e}"))?;
        let rows = std::mem::take(&mut self.rows_in_file) as u64;
        let first_key = self.first_key.take().unwrap_or_default();
        Ok(Some(DataFile {
            name: file_name(&bytes),
            bytes: bytes.into(),
            rows,
            first_key,
        }))
    }
}

/// A data file's name, from its bytes alone.
pub fn file_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "part-{}.snappy.parquet",
        crate::db::hex(&sha2::Sha256::digest(bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{ColumnDef, Dialect, Kind, TableDef};

    fn def() -> TableDef {
        let c = |name: &str, kind, ty: &str| ColumnDef {
            name: name.into(),
            kind,
            type_name: ty.into(),
            nullable: false,
            max_chars: None,
            precision: None,
            scale: None,
        };
        TableDef {
            name: "CRONUS$G_L Entry".into(),
            columns: vec![
                c("Entry No_", Kind::Int, "integer"),
                c("Description", Kind::Text, "text"),
            ],
            primary_key: vec!["Entry No_".into()],
            est_rows: 0,
            est_bytes: 0,
        }
    }

    fn rows(from: i64, to: i64) -> Vec<Vec<Value>> {
        (from..to)
            .map(|i| vec![Value::Int(i), Value::Text(format!("entry {i}"))])
            .collect()
    }

    fn make(chunks: &[Vec<Vec<Value>>]) -> Vec<DataFile> {
        let mut m = FileMaker::new(
            super::super::columns::columns(&def(), Dialect::Postgres),
            vec![0],
            ROWS_PER_FILE,
        );
        let mut files = vec![];
        for c in chunks {
            files.extend(m.push(c.clone()).unwrap());
        }
        files.extend(m.finish().unwrap());
        files
    }

    #[test]
    fn the_same_rows_make_the_same_files_however_they_arrive() {
        let n = ROWS_PER_FILE as i64 + 10;
        let whole = make(&[rows(0, n)]);
        let pieces = make(&[rows(0, 5), rows(5, n / 2), rows(n / 2, n)]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].rows, ROWS_PER_FILE as u64);
        assert_eq!(whole[1].rows, 10);
        assert_eq!(whole[1].first_key, vec![Value::Int(ROWS_PER_FILE as i64)]);
        for (a, b) in whole.iter().zip(&pieces) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.bytes, b.bytes);
        }
        assert_ne!(whole[0].name, make(&[rows(1, n)])[0].name);
        assert!(make(&[]).is_empty());
    }
}
