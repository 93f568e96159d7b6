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

/// The folder of a table's log.
pub const LOG_DIR: &str = "_delta_log";

/// The name of commit `version`'s file in the log's folder: 20 digits, zero-padded.
pub fn commit_name(version: u64) -> String {
    format!("{version:020}.json")
}

/// The file of commit `version`, below the table's folder.
pub fn commit_file(version: u64) -> String {
    format!("{LOG_DIR}/{}", commit_name(version))
}

/// The reader and writer versions the tables ask for: the base protocol (no deletion vectors,
/// no column mapping), which every Delta reader reads.
pub const MIN_READER_VERSION: i32 = 1;
pub const MIN_WRITER_VERSION: i32 = 2;

/// The versions a table with column mapping by name asks for: its column names (with the
/// spaces ERP names have) live in the log, and the Parquet files name columns `col-N`.
pub const MAPPED_READER_VERSION: i32 = 2;
pub const MAPPED_WRITER_VERSION: i32 = 5;

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

/// One column of the table's schema: its name as the source spells it, its type, whether it
/// may be null, and under column mapping its name in the Parquet files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaColumn {
    pub name: String,
    pub delta: DeltaType,
    pub nullable: bool,
    /// `Some(name in the files)` under column mapping by name.
    pub physical: Option<String>,
}

/// The table's schema in the log's own form (`metaData.schemaString`): a struct of the columns
/// in order; under column mapping each has its id (its place, from 1) and physical name.
pub fn schema_string(columns: &[SchemaColumn]) -> String {
    #[derive(Serialize)]
    struct Field<'a> {
        name: &'a str,
        #[serde(rename = "type")]
        type_: String,
        nullable: bool,
        metadata: BTreeMap<&'static str, serde_json::Value>,
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
            .enumerate()
            .map(|(i, c)| Field {
                name: &c.name,
                type_: c.delta.name(),
                nullable: c.nullable,
                metadata: match &c.physical {
                    Some(p) => BTreeMap::from([
                        ("delta.columnMapping.id", serde_json::json!(i + 1)),
                        ("delta.columnMapping.physicalName", serde_json::json!(p)),
                    ]),
                    None => BTreeMap::new(),
                },
            })
            .collect(),
    };
    // Plain data: serializing it cannot fail.
    serde_json::to_string(&schema).unwrap_or_default()
}

/// The table's id (`metaData.id`), a UUID made from its path in the lake: the same table gets
/// the same id on every run, and in every copy of the lake.
pub fn table_id(path: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(path.as_bytes());
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
    /// Milliseconds since the epoch. Left out: no time the source gives would be the same on
    /// a re-run, and the clock's would change the log's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

impl Metadata {
    /// The metadata of the table at `path` in the lake.
    pub fn new(path: &str, columns: &[SchemaColumn]) -> Self {
        let mut configuration = BTreeMap::new();
        if columns.iter().any(|c| c.physical.is_some()) {
            configuration.insert("delta.columnMapping.mode".into(), "name".into());
            configuration.insert(
                "delta.columnMapping.maxColumnId".into(),
                columns.len().to_string(),
            );
        }
        Self {
            id: table_id(path),
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: schema_string(columns),
            partition_columns: vec![],
            configuration,
            created_time: None,
        }
    }

    /// The protocol a table of this metadata needs.
    pub fn protocol(&self) -> Protocol {
        if self.configuration.contains_key("delta.columnMapping.mode") {
            Protocol {
                min_reader_version: MAPPED_READER_VERSION,
                min_writer_version: MAPPED_WRITER_VERSION,
            }
        } else {
            Protocol {
                min_reader_version: MIN_READER_VERSION,
                min_writer_version: MIN_WRITER_VERSION,
            }
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
    /// Milliseconds since the epoch. Always 0: a re-run must write the same bytes, and the
    /// file's name already says what it holds (see `lake::files`).
    pub modification_time: i64,
    pub data_change: bool,
    /// `numRecords`, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    /// `firstKey`: the key of the file's first row (see `lake::table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// A data file that leaves the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    /// Milliseconds since the epoch; left out, for the same reason as `Metadata::created_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<i64>,
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
    replay_from(TableState::default(), commits)
}

/// Replays commits onto `state` (a checkpoint's), in version order from the one after it.
pub fn replay_from(
    mut state: TableState,
    commits: &[(u64, String)],
) -> Result<TableState, LogError> {
    for (version, text) in commits {
        let expected = state.version.map_or(0, |v| v + 1);
        if *version != expected {
            return Err(LogError::Gap {
                after: expected.saturating_sub(1),
                version: *version,
            });
        }
        apply(&mut state, *version, text)?;
        state.version = Some(*version);
    }
    Ok(state)
}

/// Applies the actions of one commit (or a checkpoint's) to `state`; `version` names it in
/// errors.
pub fn apply(state: &mut TableState, version: u64, text: &str) -> Result<(), LogError> {
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| LogError::Line {
            version,
            line: i + 1,
            message: e.to_string(),
        })?;
        let known = ["protocol", "metaData", "add", "remove"];
        if !known.iter().any(|k| value.get(k).is_some()) {
            continue;
        }
        let action: Action = serde_json::from_value(value).map_err(|e| LogError::Line {
            version,
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<SchemaColumn> {
        let c = |name: &str, delta, n: usize| SchemaColumn {
            name: name.into(),
            delta,
            nullable: n > 1,
            physical: Some(format!("col-{n}")),
        };
        vec![
            c("Entry No_", DeltaType::Integer, 1),
            c("Amount", DeltaType::Decimal(38, 20), 2),
            c("Posting Date", DeltaType::Timestamp, 3),
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
            tags: None,
        }
    }

    #[test]
    fn a_commit_is_the_same_bytes_every_time_and_names_its_version() {
        let metadata = Metadata::new("companies/CRONUS/G_L Entry", &columns());
        let actions = vec![
            Action::Protocol(metadata.protocol()),
            Action::MetaData(metadata),
            Action::Add(add("part-00000.parquet")),
        ];
        let first = encode(&actions);
        assert_eq!(first, encode(&actions.clone()));
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"protocol":{"minReaderVersion":2,"minWriterVersion":5}}"#
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
            lines[1].contains(r#"\"delta.columnMapping.physicalName\":\"col-1\""#)
                && lines[1].contains(r#""delta.columnMapping.mode":"name""#),
            "{}",
            lines[1]
        );
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
            Action::MetaData(Metadata::new("t", &columns())),
            Action::Add(add("a.parquet")),
            Action::Add(add("b.parquet")),
        ]);
        let c1 = encode(&[
            Action::Remove(Remove {
                path: "a.parquet".into(),
                deletion_timestamp: None,
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
