//! Checkpoints of a table's Delta log, as the Delta protocol's classic ones: every `INTERVAL`
//! versions, the table's state after that version (its protocol, metadata and live files) in
//! one Parquet file, `_delta_log/<version>.checkpoint.parquet`, and `_delta_log/_last_checkpoint`
//! naming it. Readers, and `LakeTable::read_log`, start there instead of reading every commit
//! from the first.
//!
//! The rows are the log's own JSON actions, read into Arrow in the checkpoint's schema by
//! `arrow_json`, so a checkpoint holds exactly what the commits say; read back, they are JSON
//! lines again, which `log::replay` takes. The same state always gives the same bytes.

use super::log::{self, Action, TableState};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use std::sync::Arc;

/// How many versions apart checkpoints are (Spark's default too).
pub const INTERVAL: u64 = 10;

/// The file that names the last checkpoint, in the log's folder.
pub const LAST: &str = "_last_checkpoint";

/// Whether a checkpoint is written after committing `version`.
pub fn due(version: u64) -> bool {
    version > 0 && version.is_multiple_of(INTERVAL)
}

/// The checkpoint file of `version`, in the log's folder.
pub fn file_name(version: u64) -> String {
    format!("{version:020}.checkpoint.parquet")
}

/// The version a log file's name says it is the checkpoint of.
pub fn version_of(name: &str) -> Option<u64> {
    name.strip_suffix(".checkpoint.parquet")
        .filter(|v| v.len() == 20)
        .and_then(|v| v.parse().ok())
}

/// `_last_checkpoint`'s text: the version and how many actions the checkpoint holds.
pub fn last(version: u64, size: usize) -> String {
    format!("{{\"version\":{version},\"size\":{size}}}")
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn long(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// A `map<string,string>` field.
fn map(name: &str) -> Field {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    Field::new(
        name,
        DataType::Map(
            Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
            false,
        ),
        true,
    )
}

fn structure(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// The checkpoint's columns: one action a row, in the column of its kind.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        structure(
            "protocol",
            vec![
                Field::new("minReaderVersion", DataType::Int32, true),
                Field::new("minWriterVersion", DataType::Int32, true),
            ],
        ),
        structure(
            "metaData",
            vec![
                text("id"),
                text("name"),
                text("description"),
                structure("format", vec![text("provider"), map("options")]),
                text("schemaString"),
                Field::new(
                    "partitionColumns",
                    DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
                    true,
                ),
                map("configuration"),
                long("createdTime"),
            ],
        ),
        structure(
            "add",
            vec![
                text("path"),
                map("partitionValues"),
                long("size"),
                long("modificationTime"),
                Field::new("dataChange", DataType::Boolean, true),
                text("stats"),
                map("tags"),
            ],
        ),
        structure(
            "remove",
            vec![
                text("path"),
                long("deletionTimestamp"),
                Field::new("dataChange", DataType::Boolean, true),
                long("size"),
            ],
        ),
    ]))
}

/// The checkpoint of a table's state: its bytes, and the number of actions in it.
pub fn encode(state: &TableState) -> Result<(Vec<u8>, usize), String> {
    let mut actions = vec![];
    actions.extend(state.protocol.clone().map(Action::Protocol));
    actions.extend(state.metadata.clone().map(Action::MetaData));
    actions.extend(state.files.values().cloned().map(Action::Add));
    let lines = log::encode(&actions);
    let schema = schema();
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(actions.len().max(1))
        .build_decoder()
        .map_err(|e| format!("the checkpoint's schema: {e}"))?;
    decoder
        .decode(lines.as_bytes())
        .map_err(|e| format!("the log's actions as checkpoint rows: {e}"))?;
    let batch = decoder
        .flush()
        .map_err(|e| format!("the log's actions as checkpoint rows: {e}"))?
        .ok_or_else(|| "a checkpoint of no actions".to_string())?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        // A fixed writer name: the same state gives the same bytes (see `lake::files`).
        .set_created_by("cloudmigrate".into())
        .build();
    let mut out = vec![];
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(properties))
        .map_err(|e| format!("writing the checkpoint: {e}"))?;
    writer
        .write(&batch)
        .map_err(|e| format!("writing the checkpoint: {e}"))?;
    writer
        .close()
        .map_err(|e| format!("writing the checkpoint: {e}"))?;
    Ok((out, actions.len()))
}

/// A checkpoint's actions as the log's JSON lines.
pub fn decode(bytes: bytes::Bytes) -> Result<String, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| format!("the checkpoint is no Parquet file we can read: {e}"))?;
    let mut out = vec![];
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
        for batch in reader {
            let batch = batch.map_err(|e| format!("reading the checkpoint: {e}"))?;
            writer
                .write(&batch)
                .map_err(|e| format!("reading the checkpoint: {e}"))?;
        }
        writer
            .finish()
            .map_err(|e| format!("reading the checkpoint: {e}"))?;
    }
    String::from_utf8(out).map_err(|e| format!("reading the checkpoint: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::log::{Add, DeltaType, Metadata, SchemaColumn};
    use std::collections::BTreeMap;

    fn state() -> TableState {
        let columns = vec![SchemaColumn {
            name: "Entry No_".into(),
            delta: DeltaType::Integer,
            nullable: false,
            physical: Some("col-1".into()),
        }];
        let metadata = Metadata::new("companies/CRONUS/G_L Entry", &columns);
        let add = |path: &str, first: &str| Add {
            path: path.into(),
            partition_values: BTreeMap::new(),
            size: 1234,
            modification_time: 0,
            data_change: true,
            stats: Some(r#"{"numRecords":10}"#.into()),
            tags: Some(BTreeMap::from([(
                "firstKey".to_string(),
                first.to_string(),
            )])),
        };
        TableState {
            version: Some(10),
            protocol: Some(metadata.protocol()),
            metadata: Some(metadata),
            files: BTreeMap::from([
                (
                    "part-a.parquet".to_string(),
                    add("part-a.parquet", "[\"1\"]"),
                ),
                (
                    "part-b.parquet".to_string(),
                    add("part-b.parquet", "[\"5\"]"),
                ),
            ]),
        }
    }

    #[test]
    fn a_checkpoint_reads_back_as_the_state_it_was_made_of_and_is_the_same_bytes_each_time() {
        let s = state();
        let (bytes, size) = encode(&s).unwrap();
        assert_eq!(size, 4);
        assert_eq!(
            encode(&s).unwrap().0,
            bytes,
            "the same state, the same bytes"
        );
        let lines = decode(bytes.into()).unwrap();
        let mut back = TableState::default();
        log::apply(&mut back, 10, &lines).unwrap();
        back.version = s.version;
        assert_eq!(back, s);
        assert!(due(10) && due(20) && !due(0) && !due(11));
        assert_eq!(version_of(&file_name(20)), Some(20));
        assert_eq!(version_of("00000000000000000020.json"), None);
    }
}
