//! The transaction log of one Delta Lake table (`_delta_log/`), written by hand: Delta Kernel's
//! commits carry the wall clock (`commitInfo.timestamp`) and random names, and a re-run of the
//! same change window must write the same bytes. Every value here comes from the caller: file
//! times and the table's creation time from the source, its id from its location.
//!
//! A commit is one JSON object per line, one action each: `protocol`, `metaData`, `add`,
//! `remove`. `replay` reads commits back into the table's live files, so that the next commit
//! can remove exactly the files it replaces. Pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file of commit `version`: 20 digits, zero-padded.
pub fn commit_file(version: u64) -> String {
    format!("_delta_log/{version:020}.json")
}

/// The reader and writer versions the tables ask for: the base protocol (no deletion vectors,
/// no column mapping), which every Delta reader reads.
pub const MIN_READER_VERSION: i32 = 1;
pub const MIN_WRITER_VERSION: i32 = 2;

/// A column's Delta type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaType {
    Long,
    Integer,
    Short,
    Boolean,
    Double,
    Float,
    /// Exact: precision and scale.
    Decimal(u8, i8),
    String,
    Binary,
    Date,
    /// UTC, to the microsecond.
    Timestamp,
}

impl DeltaType {
    fn name(&self) -> String {
        match self {
            Self::Long => "long".into(),
            Self::Integer => "integer".into(),
            Self::Short => "short".into(),
            Self::Boolean => "boolean".into(),
            Self::Double => "double".into(),
            Self::Float => "float".into(),
            Self::Decimal(p, s) => format!("decimal({p},{s})"),
            Self::String => "string".into(),
            Self::Binary => "binary".into(),
            Self::Date => "date".into(),
            Self::Timestamp => "timestamp".into(),
        }
    }
}

/// The table's schema in the log's own form (`metaData.schemaString`): a struct of the columns
/// in order, each with its name as the source spells it.
pub fn schema_string(columns: &[(String, DeltaType, bool)]) -> String {
    #[derive(Serialize)]
    struct Field<'a> {
        name: &'a str,
        #[serde(rename = "type")]
        type_: String,
        nullable: bool,
        metadata: BTreeMap<String, String>,
    }
    #[derive(Serialize)]
    struct Struct<'a> {
        #[serde(rename = "type")]
        type_: &'static str,
        fields: Vec<Field<'a>>,
    }
    let schema = Struct {
        type_: "struct",
        fields: columns
            .iter()
            .map(|(name, t, nullable)| Field {
                name,
                type_: t.name(),
                nullable: *nullable,
                metadata: BTreeMap::new(),
            })
            .collect(),
    };
    // Plain data: serializing it cannot fail.
    serde_json::to_string(&schema).unwrap_or_default()
}

/// The table's id (`metaData.id`), a UUID made from its location: the same table gets the
/// same id on every run.
pub fn table_id(location: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(location.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    pub configuration: BTreeMap<String, String>,
    /// Milliseconds since the epoch, from the source (the run's change window), never the
    /// clock.
    pub created_time: i64,
}

impl Metadata {
    /// The metadata of a new table at `location`.
    pub fn new(location: &str, columns: &[(String, DeltaType, bool)], created_time: i64) -> Self {
        Self {
            id: table_id(location),
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: schema_string(columns),
            partition_columns: vec![],
            configuration: BTreeMap::new(),
            created_time,
        }
    }
}

/// A data file that joins the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table's root.
    pub path: String,
    pub partition_values: BTreeMap<String, String>,
    pub size: i64,
    /// Milliseconds since the epoch, from the source.
    pub modification_time: i64,
    pub data_change: bool,
    /// `numRecords`, and the key range's `minValues`/`maxValues`, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// A data file that leaves the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    /// Milliseconds since the epoch, from the source.
    pub deletion_timestamp: i64,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

/// One line of a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Protocol(Protocol),
    MetaData(Metadata),
    Add(Add),
    Remove(Remove),
}

/// A commit's bytes: one action a line, fields in a fixed order (serde's), each line ended by
/// a newline. The same actions always give the same bytes.
pub fn encode(actions: &[Action]) -> String {
    let mut out = String::new();
    for a in actions {
        // An action is plain data: serializing it cannot fail.
        out.push_str(&serde_json::to_string(a).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// What the log says the table is now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// The last commit read; None for a table without a commit.
    pub version: Option<u64>,
    pub protocol: Option<Protocol>,
    pub metadata: Option<Metadata>,
    /// The live data files, by path.
    pub files: BTreeMap<String, Add>,
}

/// A log that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("commit {version} is missing: the log jumps from {after} to {version}")]
    Gap { after: u64, version: u64 },
    #[error("commit {version}, line {line}: {message}")]
    Line {
        version: u64,
        line: usize,
        message: String,
    },
}

/// Replays commits, in version order from 0: each `add` joins the live files, each `remove`
/// leaves them. Lines of other actions (a `commitInfo` another writer added) are skipped.
pub fn replay(commits: &[(u64, String)]) -> Result<TableState, LogError> {
    let mut state = TableState::default();
    for (version, text) in commits {
        let expected = state.version.map_or(0, |v| v + 1);
        if *version != expected {
            return Err(LogError::Gap {
                after: expected.saturating_sub(1),
                version: *version,
            });
        }
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| LogError::Line {
                    version: *version,
                    line: i + 1,
                    message: e.to_string(),
                })?;
            let known = ["protocol", "metaData", "add", "remove"];
            if !known.iter().any(|k| value.get(k).is_some()) {
                continue;
            }
            let action: Action = serde_json::from_value(value).map_err(|e| LogError::Line {
                version: *version,
                line: i + 1,
                message: e.to_string(),
            })?;
            match action {
                Action::Protocol(p) => state.protocol = Some(p),
                Action::MetaData(m) => state.metadata = Some(m),
                Action::Add(a) => {
                    state.files.insert(a.path.clone(), a);
                }
                Action::Remove(r) => {
                    state.files.remove(&r.path);
                }
            }
        }
        state.version = Some(*version);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<(String, DeltaType, bool)> {
        vec![
            ("Entry No_".into(), DeltaType::Integer, false),
            ("Amount".into(), DeltaType::Decimal(38, 20), true),
            ("Posting Date".into(), DeltaType::Timestamp, true),
        ]
    }

    fn add(path: &str) -> Add {
        Add {
            path: path.into(),
            partition_values: BTreeMap::new(),
            size: 1234,
            modification_time: 1_764_806_400_000,
            data_change: true,
            stats: Some(r#"{"numRecords":10}"#.into()),
        }
    }

    #[test]
    fn a_commit_is_the_same_bytes_every_time_and_names_its_version() {
        let actions = vec![
            Action::Protocol(Protocol {
                min_reader_version: MIN_READER_VERSION,
                min_writer_version: MIN_WRITER_VERSION,
            }),
            Action::MetaData(Metadata::new(
                "file:///lake/CRONUS/G_L Entry",
                &columns(),
                0,
            )),
            Action::Add(add("part-00000.parquet")),
        ];
        let first = encode(&actions);
        assert_eq!(first, encode(&actions.clone()));
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#
        );
        assert!(
            lines[1].starts_with(r#"{"metaData":{"id":""#),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains(r#"\"name\":\"Entry No_\",\"type\":\"integer\""#),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(r#"decimal(38,20)"#), "{}", lines[1]);
        assert!(
            lines[2].starts_with(r#"{"add":{"path":"part-00000.parquet""#),
            "{}",
            lines[2]
        );
        assert_eq!(commit_file(7), "_delta_log/00000000000000000007.json");
        // The id comes from the location alone.
        assert_eq!(table_id("file:///a"), table_id("file:///a"));
        assert_ne!(table_id("file:///a"), table_id("file:///b"));
    }

    #[test]
    fn replaying_keeps_the_live_files_and_refuses_a_gap() {
        let c0 = encode(&[
            Action::MetaData(Metadata::new("file:///t", &columns(), 0)),
            Action::Add(add("a.parquet")),
            Action::Add(add("b.parquet")),
        ]);
        let c1 = encode(&[
            Action::Remove(Remove {
                path: "a.parquet".into(),
                deletion_timestamp: 1,
                data_change: true,
                size: Some(1234),
            }),
            Action::Add(add("c.parquet")),
        ]) + "{\"commitInfo\":{\"timestamp\":5}}\n";
        let state = replay(&[(0, c0.clone()), (1, c1)]).unwrap();
        assert_eq!(state.version, Some(1));
        assert_eq!(
            state.files.keys().collect::<Vec<_>>(),
            vec!["b.parquet", "c.parquet"]
        );
        assert!(state.metadata.is_some());
        assert_eq!(
            replay(&[(0, c0.clone()), (2, String::new())]),
            Err(LogError::Gap {
                after: 0,
                version: 2
            })
        );
        let e = replay(&[(0, "{not json".into())]).unwrap_err();
        assert!(
            matches!(
                e,
                LogError::Line {
                    version: 0,
                    line: 1,
                    ..
                }
            ),
            "{e}"
        );
    }
}
