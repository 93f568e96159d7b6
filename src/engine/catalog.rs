//! The source's tables seen the ERP way: which company each belongs to, which are
//! per-database, and how big each company is.

use crate::db::{Database, DbError, Kind, Statement, TableDef, Value};
use std::collections::BTreeMap;

/// A company of the source, as in its `Company` table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Company {
    /// The name people see, for example `CRONUS International Ltd.`.
    pub name: String,
    /// The name as it appears in table names, for example `CRONUS International Ltd_`.
    pub sql_name: String,
}

/// The SQL form of a company name: the characters SQL Server table names cannot hold in the
/// ERP's naming become `_`.
pub fn company_sql_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if matches!(c, '.' | '"' | '\\' | '/' | '\'' | '%' | ']' | '[') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// A source table with its place in the ERP.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceTable {
    pub def: TableDef,
    /// The company the table belongs to; None for per-database tables.
    pub company: Option<String>,
    /// The table's name without company and app id, for example `G_L Entry`.
    pub base: String,
    /// The extension's app id of `Company$Table$<app-id>` names.
    pub app_id: Option<String>,
}

impl SourceTable {
    /// The table name people read: the base name, plus the app id where there is one.
    pub fn display_name(&self) -> String {
        match &self.app_id {
            Some(id) => format!("{}${id}", self.base),
            None => self.base.clone(),
        }
    }
}

/// What the source holds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    pub tables: Vec<SourceTable>,
    pub companies: Vec<Company>,
}

/// Size of one company in the source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompanySize {
    pub tables: i64,
    pub rows: i64,
    pub bytes: i64,
}

impl Catalog {
    /// Reads the source: tables, columns, keys and estimates, and the companies.
    pub async fn read(db: &Database) -> Result<Self, DbError> {
        let defs = db.tables().await?;
        let companies = read_companies(db, &defs).await?;
        Ok(Self::from_parts(defs, companies))
    }

    /// Reads the source like `read`, with sizes everywhere: SQLite keeps no size statistics,
    /// so its tables' sizes come from the `dbstat` table, which reads every page of the file
    /// (fine for the SQLite databases of tests and demos, slow for big ones: runs never ask).
    pub async fn read_with_sizes(db: &Database) -> Result<Self, DbError> {
        let mut catalog = Self::read(db).await?;
        if db.dialect() == crate::db::Dialect::Sqlite {
            let rows = db
                .query(
                    &Statement {
                        sql: "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name".into(),
                        params: vec![],
                    },
                    &[Kind::Text, Kind::Int],
                )
                .await?;
            let bytes: std::collections::HashMap<String, i64> = rows
                .into_iter()
                .filter_map(|r| match r.as_slice() {
                    [Value::Text(name), Value::Int(n)] => Some((name.clone(), *n)),
                    _ => None,
                })
                .collect();
            for t in &mut catalog.tables {
                t.def.est_bytes = bytes.get(&t.def.name).copied().unwrap_or(0);
            }
        }
        Ok(catalog)
    }

    /// Splits the tables by company.
    pub fn from_parts(defs: Vec<TableDef>, companies: Vec<Company>) -> Self {
        // Longest SQL name first, so `CRONUS` never claims the tables of `CRONUS Canada`.
        let mut by_length: Vec<&Company> = companies.iter().collect();
        by_length.sort_by_key(|c| std::cmp::Reverse(c.sql_name.len()));
        let tables = defs
            .into_iter()
            .map(|def| {
                let (company, rest) = by_length
                    .iter()
                    .find_map(|c| {
                        def.name
                            .strip_prefix(&c.sql_name)
                            .and_then(|r| r.strip_prefix('$'))
                            .map(|r| (Some(c.name.clone()), r.to_string()))
                    })
                    .unwrap_or_else(|| (None, def.name.clone()));
                let (base, app_id) = split_app_id(&rest);
                SourceTable {
                    def,
                    company,
                    base,
                    app_id,
                }
            })
            .collect();
        Catalog { tables, companies }
    }

    /// Estimated size of each company, by name.
    pub fn company_sizes(&self) -> BTreeMap<String, CompanySize> {
        let mut sizes: BTreeMap<String, CompanySize> = self
            .companies
            .iter()
            .map(|c| (c.name.clone(), CompanySize::default()))
            .collect();
        for t in &self.tables {
            if let Some(c) = &t.company {
                let s = sizes.entry(c.clone()).or_default();
                s.tables += 1;
                s.rows += t.def.est_rows;
                s.bytes += t.def.est_bytes;
            }
        }
        sizes
    }
}

/// `Table$<app-id>` into the table and the app id (a GUID); other names stay whole.
fn split_app_id(name: &str) -> (String, Option<String>) {
    if let Some((base, id)) = name.rsplit_once('$')
        && !base.is_empty()
        && uuid::Uuid::parse_str(id).is_ok()
        && id.len() == 36
    {
        return (base.to_string(), Some(id.to_string()));
    }
    (name.to_string(), None)
}

/// The companies, from the source's `Company` table (column `Name`). A source without one has
/// no companies: every table is per-database.
async fn read_companies(db: &Database, defs: &[TableDef]) -> Result<Vec<Company>, DbError> {
    let Some(table) = defs
        .iter()
        .find(|t| t.name == "Company" && t.column("Name").is_some())
    else {
        return Ok(vec![]);
    };
    let d = db.dialect();
    let sql = format!("SELECT {} FROM {}", d.quote("Name"), d.quote(&table.name));
    let rows = db
        .query(
            &Statement {
                sql,
                params: vec![],
            },
            &[Kind::Text],
        )
        .await?;
    let mut companies: Vec<Company> = rows
        .into_iter()
        .filter_map(|r| match r.into_iter().next() {
            Some(Value::Text(name)) => Some(Company {
                sql_name: company_sql_name(&name),
                name,
            }),
            _ => None,
        })
        .collect();
    companies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(companies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> TableDef {
        TableDef {
            name: name.into(),
            columns: vec![],
            primary_key: vec![],
            est_rows: 10,
            est_bytes: 100,
        }
    }

    fn company(name: &str) -> Company {
        Company {
            name: name.into(),
            sql_name: company_sql_name(name),
        }
    }

    #[test]
    fn company_names_escape_dots() {
        assert_eq!(
            company_sql_name("CRONUS International Ltd."),
            "CRONUS International Ltd_"
        );
        assert_eq!(company_sql_name("Contoso Café"), "Contoso Café");
    }

    #[test]
    fn tables_split_into_company_table_and_app_id() {
        let catalog = Catalog::from_parts(
            vec![
                def("CRONUS International Ltd_$G_L Entry"),
                def("CRONUS International Ltd_$Customer$437dbf0e-84ff-417a-965d-ed2bb9650972"),
                def("CRONUS$Item"),
                def("CRONUS Canada$Item"),
                def("Tenant Media"),
                def("$ndo$tenantdatabaseproperty"),
                def("Orphan$Vendor"),
            ],
            vec![
                company("CRONUS International Ltd."),
                company("CRONUS"),
                company("CRONUS Canada"),
            ],
        );
        let seen: Vec<(Option<&str>, &str, Option<&str>)> = catalog
            .tables
            .iter()
            .map(|t| (t.company.as_deref(), t.base.as_str(), t.app_id.as_deref()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("CRONUS International Ltd."), "G_L Entry", None),
                (
                    Some("CRONUS International Ltd."),
                    "Customer",
                    Some("437dbf0e-84ff-417a-965d-ed2bb9650972")
                ),
                (Some("CRONUS"), "Item", None),
                (Some("CRONUS Canada"), "Item", None),
                (None, "Tenant Media", None),
                (None, "$ndo$tenantdatabaseproperty", None),
                (None, "Orphan$Vendor", None),
            ]
        );
        let sizes = catalog.company_sizes();
        assert_eq!(
            sizes["CRONUS International Ltd."],
            CompanySize {
                tables: 2,
                rows: 20,
                bytes: 200
            }
        );
    }
}
