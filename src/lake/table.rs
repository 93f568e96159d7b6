//! One table of a lake: its Delta log read back, then the source's rows written as files
//! sorted by key and cut into key ranges, and one commit that removes the files replaced and
//! adds the new ones.
//!
//! A file's range runs from its first key (its `firstKey` tag in the log; the first file's
//! from the lowest key) up to the next file's first key. A full copy reads the whole table in
//! key order. An incremental copy finds the ranges that hold a changed key and reads only
//! those ranges again from the source, so the table after the commit is the source as of the
//! run: no duplicate, no missed delete. Files are named after their bytes (`files`): a range
//! read again without a change gives the file it had, and no commit is made when no file
//! changed. A crash before the commit leaves files no log names (the next run writes the same
//! ones again) and the table as it was.

use super::checkpoint;
use super::columns::{LakeColumn, columns};
use super::files::{DataFile, FileMaker};
use super::keys;
use super::log::{self, Action, Add, Metadata, Remove, SchemaColumn, TableState};
use super::store::{Lake, LakeError};
use crate::db::{Chunk, Database, KeyRange, ReadProgress, ReadSpec, TableDef, Value};
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The tag of an `add` that holds the key of the file's first row, as JSON texts.
pub const FIRST_KEY_TAG: &str = "firstKey";

/// One lake table and the source table it is written from.
pub struct LakeTable<'a> {
    pub lake: &'a Lake,
    /// The table's folder, as parts below the lake's folder.
    pub parts: Vec<String>,
    pub source: &'a Database,
    pub def: &'a TableDef,
    pub snapshot: Option<String>,
    pub progress: Arc<ReadProgress>,
    /// Rows in a data file (`files::ROWS_PER_FILE`).
    pub rows_per_file: usize,
}

/// What writing a table did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    /// Rows read from the source and written into new files.
    pub rows: u64,
    /// Bytes of the new files.
    pub bytes: u64,
    /// The table's Delta version after the run, None for a table without a commit.
    pub version: Option<u64>,
    /// Whether this run made a commit.
    pub committed: bool,
    /// Files in the table after the run.
    pub files: u64,
    /// Rows in the table after the run.
    pub table_rows: u64,
    /// Files written, and files removed, by this run.
    pub added: u64,
    pub removed: u64,
}

impl LakeTable<'_> {
    fn path(&self) -> Path {
        let parts: Vec<&str> = self.parts.iter().map(String::as_str).collect();
        self.lake.path(&parts)
    }

    /// The table's path in the lake, as its Delta id is made from.
    pub fn relative(&self) -> String {
        self.parts.join("/")
    }

    fn lake_columns(&self) -> Vec<LakeColumn> {
        columns(self.def, self.source.dialect())
    }

    /// The columns the files are sorted and cut by: the primary key, else every column.
    fn key_columns(&self) -> Vec<usize> {
        if self.def.primary_key.is_empty() {
            return (0..self.def.columns.len()).collect();
        }
        self.def
            .primary_key
            .iter()
            .filter_map(|k| self.def.columns.iter().position(|c| &c.name == k))
            .collect()
    }

    fn metadata(&self) -> Metadata {
        let schema: Vec<SchemaColumn> = self
            .lake_columns()
            .into_iter()
            .map(|c| SchemaColumn {
                physical: (c.physical != c.name).then(|| c.physical.clone()),
                name: c.name,
                delta: c.delta,
                nullable: c.nullable,
            })
            .collect();
        Metadata::new(&self.relative(), &schema)
    }

    /// The table's log, replayed from its newest checkpoint (or, without one we can read,
    /// from the first commit): its version and live files.
    pub async fn read_log(&self) -> Result<TableState, LakeError> {
        let dir = self.path().join(log::LOG_DIR);
        let mut versions = vec![];
        let mut checkpoints = vec![];
        let mut listing = self.lake.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.lake.error("reading the table's log", e))?;
            let name = meta.location.filename().unwrap_or_default();
            if let Some(v) = name
                .strip_suffix(".json")
                .filter(|s| s.len() == 20)
                .and_then(|s| s.parse::<u64>().ok())
            {
                versions.push((v, meta.location));
            } else if let Some(v) = checkpoint::version_of(name) {
                checkpoints.push((v, meta.location));
            }
        }
        versions.sort();
        checkpoints.sort();
        let newest = versions.last().map(|(v, _)| *v);
        let start = match checkpoints
            .into_iter()
            .rev()
            .find(|(v, _)| Some(*v) <= newest)
        {
            Some((v, location)) => self.read_checkpoint(v, &location).await?,
            None => TableState::default(),
        };
        let mut commits = Vec::with_capacity(versions.len());
        for (v, location) in versions
            .into_iter()
            .filter(|(v, _)| start.version.is_none_or(|c| *v > c))
        {
            let bytes = self.read(&location).await?;
            commits.push((v, String::from_utf8_lossy(&bytes).into_owned()));
        }
        log::replay_from(start, &commits).map_err(|e| {
            LakeError::Failed(format!(
                "the Delta log of {} cannot be read ({e}); move the table's folder away and \
                 run again to write it anew",
                self.relative()
            ))
        })
    }

    /// One file of the log.
    async fn read(&self, location: &Path) -> Result<bytes::Bytes, LakeError> {
        self.lake
            .store
            .get(location)
            .await
            .map_err(|e| self.lake.error("reading the table's log", e))?
            .bytes()
            .await
            .map_err(|e| self.lake.error("reading the table's log", e))
    }

    /// The table's state at the checkpoint of `version`. A checkpoint we cannot read (another
    /// writer's, of other columns) counts for nothing: the log is replayed from the start.
    async fn read_checkpoint(
        &self,
        version: u64,
        location: &Path,
    ) -> Result<TableState, LakeError> {
        let bytes = self.read(location).await?;
        let mut state = TableState::default();
        let read = checkpoint::decode(bytes)
            .and_then(|lines| log::apply(&mut state, version, &lines).map_err(|e| e.to_string()));
        match read {
            Ok(()) => {
                state.version = Some(version);
                Ok(state)
            }
            Err(e) => {
                tracing::warn!(table = %self.relative(), version, error = %e, "a checkpoint of the log cannot be read; replaying every commit");
                Ok(TableState::default())
            }
        }
    }

    /// Writes the checkpoint of `state` (the table after `version`) and `_last_checkpoint`, when
    /// one is due. A checkpoint that cannot be written is left out: the commit stands, and
    /// readers replay a few more commits.
    async fn checkpoint(&self, version: u64, state: &TableState) {
        if !checkpoint::due(version) {
            return;
        }
        let dir = self.path().join(log::LOG_DIR);
        let written = async {
            let (bytes, size) = checkpoint::encode(state).map_err(LakeError::Failed)?;
            for (name, body) in [
                (checkpoint::file_name(version), bytes),
                (
                    checkpoint::LAST.to_string(),
                    checkpoint::last(version, size).into_bytes(),
                ),
            ] {
                self.lake
                    .store
                    .put(&dir.clone().join(name.as_str()), PutPayload::from(body))
                    .await
                    .map_err(|e| self.lake.error("writing a checkpoint", e))?;
            }
            Ok::<(), LakeError>(())
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(table = %self.relative(), version, error = %e, "no checkpoint of the log");
        }
    }

    /// The kinds of the key columns.
    pub fn key_kinds(&self) -> Vec<crate::db::Kind> {
        self.key_columns()
            .iter()
            .map(|&i| self.def.columns[i].kind)
            .collect()
    }

    /// The live files in key order with their first keys, or None when a file has no key
    /// this table can read (written by another tool, or keys without an order).
    pub fn ranges(&self, state: &TableState) -> Option<Vec<(Vec<Value>, Add)>> {
        let kinds = self.key_kinds();
        if self.def.primary_key.is_empty() || !keys::ordered(&kinds) {
            return None;
        }
        let mut files = vec![];
        for add in state.files.values() {
            let text = add.tags.as_ref()?.get(FIRST_KEY_TAG)?;
            let texts: Vec<Option<String>> = serde_json::from_str(text).ok()?;
            files.push((keys::parse(&kinds, &texts)?, add.clone()));
        }
        files.sort_by(|a, b| keys::compare(&a.0, &b.0));
        Some(files)
    }

    /// Writes the whole table: every row, in key order. Files the table has already are kept.
    pub async fn write_full(&self, state: &TableState) -> Result<Written, LakeError> {
        let new = self.write_range(None, None, state).await?;
        let old: Vec<Add> = state.files.values().cloned().collect();
        self.commit(state, old, new).await
    }

    /// Writes again the ranges (places in `files`, from `ranges`) that hold a changed key.
    pub async fn write_ranges(
        &self,
        state: &TableState,
        files: &[(Vec<Value>, Add)],
        changed: &BTreeSet<usize>,
    ) -> Result<Written, LakeError> {
        let mut removed = vec![];
        let mut added = vec![];
        for &i in changed {
            let from = (i > 0).then(|| files[i].0.clone());
            let before = files.get(i + 1).map(|f| f.0.clone());
            let new = self.write_range(from, before, state).await?;
            removed.push(files[i].1.clone());
            added.extend(new);
        }
        self.commit(state, removed, added).await
    }

    /// Adds to `into` the ranges (places in `files`, which is not empty) that hold these keys
    /// (texts, as the change log has them); None when a key does not read as the table's key.
    pub fn ranges_of(
        files: &[(Vec<Value>, Add)],
        kinds: &[crate::db::Kind],
        changed: &[Vec<Option<String>>],
        into: &mut BTreeSet<usize>,
    ) -> Option<()> {
        for key in changed {
            let key = keys::parse(kinds, key)?;
            let at = files.partition_point(|(first, _)| keys::compare(first, &key).is_le());
            into.insert(at.saturating_sub(1));
        }
        Some(())
    }

    /// Reads one stretch of keys from the source, in key order, into files, and uploads those
    /// the table does not have yet. Returns the files' `add`s, in key order.
    async fn write_range(
        &self,
        from: Option<Vec<Value>>,
        before: Option<Vec<Value>>,
        state: &TableState,
    ) -> Result<Vec<Add>, LakeError> {
        let key = self.key_columns();
        let spec = ReadSpec {
            table: self.def.name.clone(),
            columns: self.def.columns.clone(),
            raw: false,
            snapshot: self.snapshot.clone(),
            progress: self.progress.clone(),
            keys: None,
            range: Some(KeyRange {
                columns: key.iter().map(|&i| self.def.columns[i].clone()).collect(),
                from,
                before,
            }),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(crate::db::CHANNEL_CHUNKS);
        // The reader runs as a task of its own, so that decoding the source's rows and encoding
        // the Parquet files use two cores.
        let source = self.source.clone();
        let reader = tokio::spawn(async move { source.read_table(&spec, tx).await });
        // The writer owns the receiver: when it fails, the reader's next send fails and the
        // reader stops, instead of waiting on a full channel.
        let writer = async move {
            let mut maker = FileMaker::new(self.lake_columns(), key.clone(), self.rows_per_file);
            let mut adds = vec![];
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    Chunk::Rows(rows) => {
                        for f in maker.push(rows).map_err(LakeError::Failed)? {
                            adds.push(self.upload(f, state).await?);
                        }
                    }
                    Chunk::End => break,
                    Chunk::Raw(_) | Chunk::Keys(_) => {}
                }
            }
            if let Some(f) = maker.finish().map_err(LakeError::Failed)? {
                adds.push(self.upload(f, state).await?);
            }
            Ok::<_, LakeError>(adds)
        };
        let (read, written) = tokio::join!(reader, writer);
        // The writer's error first: when it fails, the reader only sees its channel close.
        let adds = written?;
        match read {
            Ok(read) => read.map_err(|e| LakeError::Failed(format!("source database: {e}")))?,
            Err(e) => {
                return Err(LakeError::Failed(format!(
                    "reading the source stopped: {}",
                    crate::engine::panic_message(&*e.into_panic())
                )));
            }
        };
        Ok(adds)
    }

    /// Puts a file into the table's folder, unless the table has it already.
    async fn upload(&self, f: DataFile, state: &TableState) -> Result<Add, LakeError> {
        let size = f.bytes.len() as i64;
        if !state.files.contains_key(&f.name) {
            let path = self.path().join(f.name.as_str());

            self.lake
                .store
                .put(&path, PutPayload::from_bytes(f.bytes))
                .await
                .map_err(|e| self.lake.error("writing a data file", e))?;
        }
        let first = serde_json::to_string(&keys::texts(&f.first_key)).unwrap_or_default();
        Ok(Add {
            path: f.name,
            partition_values: BTreeMap::new(),
            size,
            modification_time: 0,
            data_change: true,
            stats: Some(format!("{{\"numRecords\":{}}}", f.rows)),
            tags: Some(BTreeMap::from([(FIRST_KEY_TAG.to_string(), first)])),
        })
    }

    /// One commit: the metadata when it is new or changed, then the files that leave and the
    /// files that join. Files on both sides (the same bytes) are left out, and nothing is
    /// committed when nothing is left.
    async fn commit(
        &self,
        state: &TableState,
        removed: Vec<Add>,
        added: Vec<Add>,
    ) -> Result<Written, LakeError> {
        let added_names: BTreeSet<&str> = added.iter().map(|a| a.path.as_str()).collect();
        let removed_names: BTreeSet<&str> = removed.iter().map(|a| a.path.as_str()).collect();
        let leaving: Vec<&Add> = removed
            .iter()
            .filter(|a| !added_names.contains(a.path.as_str()))
            .collect();
        let joining: Vec<&Add> = added
            .iter()
            .filter(|a| !removed_names.contains(a.path.as_str()))
            .collect();
        let metadata = self.metadata();
        let mut actions = vec![];
        let mut after = TableState {
            version: None,
            protocol: state.protocol.clone(),
            metadata: state.metadata.clone(),
            files: Default::default(),
        };
        if state.metadata.as_ref() != Some(&metadata) {
            if state.protocol.as_ref() != Some(&metadata.protocol()) {
                actions.push(Action::Protocol(metadata.protocol()));
                after.protocol = Some(metadata.protocol());
            }
            after.metadata = Some(metadata.clone());
            actions.push(Action::MetaData(metadata));
        }
        for a in &leaving {
            actions.push(Action::Remove(Remove {
                path: a.path.clone(),
                deletion_timestamp: None,
                data_change: true,
                size: Some(a.size),
            }));
        }
        actions.extend(joining.iter().map(|a| Action::Add((*a).clone())));
        let mut files = state.files.clone();
        for a in &leaving {
            files.remove(&a.path);
        }
        for a in &joining {
            files.insert(a.path.clone(), (*a).clone());
        }
        let written = Written {
            rows: added.iter().map(records).sum(),
            bytes: joining.iter().map(|a| a.size as u64).sum(),
            version: state.version,
            committed: false,
            files: files.len() as u64,
            table_rows: files.values().map(records).sum(),
            added: joining.len() as u64,
            removed: leaving.len() as u64,
        };
        if actions.is_empty() {
            return Ok(written);
        }
        let version = state.version.map_or(0, |v| v + 1);
        let path = self
            .path()
            .join(log::LOG_DIR)
            .join(log::commit_name(version).as_str());
        let put = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .lake
            .store
            .put_opts(&path, PutPayload::from(log::encode(&actions)), put)
            .await
        {
            Ok(_) => {
                after.version = Some(version);
                after.files = files;
                self.checkpoint(version, &after).await;
                Ok(Written {
                    version: Some(version),
                    committed: true,
                    ..written
                })
            }
            Err(object_store::Error::AlreadyExists { .. }) => Err(LakeError::Failed(format!(
                "another writer committed version {version} of {} while this run wrote it; \
                 the next run writes the table from what is there then",
                self.relative()
            ))),
            Err(e) => Err(self.lake.error("committing", e)),
        }
    }
}

/// A file's row count, from its stats.
pub fn records(a: &Add) -> u64 {
    a.stats
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.get("numRecords").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}
