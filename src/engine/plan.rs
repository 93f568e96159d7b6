//! The plan of a run: which tables are copied, which are not and why, and where each lands in
//! the target. A pure function of the catalog and the options.

use super::catalog::{Catalog, SourceTable};
use crate::db::Dialect;
use globset::{GlobSet, GlobSetBuilder};
use std::collections::HashMap;

pub use crate::vocabulary::Product;

/// Permission and user tables: the cloud manages these itself, so they never migrate.
pub fn by_design_exclusions(product: Product) -> &'static [&'static str] {
    match product {
        Product::BusinessCentral | Product::Nav => &[
            "Access Control",
            "Aggregate Permission Set",
            "Permission",
            "Permission Set",
            "Permission Set Link",
            "Tenant Permission",
            "Tenant Permission Set",
            "User",
            "User Group",
            "User Group Access Control",
            "User Group Member",
            "User Group Permission Set",
            "User Metadata",
            "User Personalization",
            "User Property",
            "Membership Entitlement",
            "Plan",
            "User Plan",
        ],
        // Dynamics GP keeps users, roles and their assignments in SY tables.
        Product::Gp => &[
            "Permission",
            "Permission Set",
            "Access Control",
            "User",
            "User Property",
            "Permission Set Link",
            "SY01400",
            "SY01401",
            "SY10000",
            "SY10500",
            "SY10550",
            "SY10600",
            "SY10700",
            "SY10750",
            "SY10800",
            "SY09000",
            "SY09100",
            "SY09200",
            "SY60100",
        ],
    }
}

/// The reason reported for tables not migrated by design.
pub const BY_DESIGN: &str = "not migrated by design: permissions and users work differently online";

/// What a run copies.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    pub product: Product,
    /// Globs on the table name without company; empty means every table.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Companies to migrate, by name; None means every company.
    pub companies: Option<Vec<String>>,
    /// The target's dialect, for its identifier limits.
    pub target: Option<Dialect>,
}

/// Why a table is not copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not migrated by design (permissions, users).
    ByDesign,
    /// Excluded by the schedule's table filter.
    Filtered(String),
    /// Its company is not selected.
    CompanyNotSelected,
    /// Its name cannot exist in the target (too long, or it would collide with another).
    NameConflict(String),
    /// Its company is being initialized in the target: no run writes to it meanwhile.
    BeingInitialized,
}

impl Skip {
    /// A name conflict is an error to fix; the other reasons are choices.
    pub fn is_error(&self) -> bool {
        matches!(self, Skip::NameConflict(_))
    }

    pub fn message(&self, table: &SourceTable) -> String {
        match self {
            Skip::ByDesign => BY_DESIGN.to_string(),
            Skip::Filtered(why) => why.clone(),
            Skip::CompanyNotSelected => format!(
                "not migrated: company {:?} is not selected",
                table.company.as_deref().unwrap_or_default()
            ),
            Skip::NameConflict(why) => why.clone(),
            Skip::BeingInitialized => format!(
                "skipped: company {:?} is being initialized in the target; the next run after \
                 the initialization copies it",
                table.company.as_deref().unwrap_or_default()
            ),
        }
    }

    /// The reason's name, as the run log records it beside a table left out.
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::ByDesign => "ByDesign",
            Skip::Filtered(_) => "Filtered",
            Skip::CompanyNotSelected => "CompanyNotSelected",
            Skip::NameConflict(_) => "NameConflict",
            Skip::BeingInitialized => "BeingInitialized",
        }
    }

    /// The result a table skipped for this reason gets.
    pub fn result(&self) -> crate::vocabulary::TableResult {
        use crate::vocabulary::TableResult;
        match self {
            Skip::NameConflict(_) => TableResult::Failed,
            Skip::BeingInitialized => TableResult::Skipped,
            _ => TableResult::Excluded,
        }
    }
}

/// One table of the plan.
#[derive(Clone, Debug)]
pub struct PlannedTable {
    pub source: SourceTable,
    /// The table's name in the target.
    pub target_name: String,
    /// None: copy it.
    pub skip: Option<Skip>,
}

/// The plan of a run.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub tables: Vec<PlannedTable>,
}

impl Plan {
    pub fn to_copy(&self) -> impl Iterator<Item = &PlannedTable> {
        self.tables.iter().filter(|t| t.skip.is_none())
    }
}

/// Errors in the options, worded for the person who wrote them.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid table pattern {pattern:?} in spec.tables: {message}")]
    Pattern { pattern: String, message: String },
    #[error("unknown companies {0:?}: the source has {1:?}")]
    UnknownCompanies(Vec<String>, Vec<String>),
}

/// Patterns on table names without the company, as `spec.tables` takes them: case-insensitive
/// globs.
pub fn table_patterns(patterns: &[String]) -> Result<GlobSet, PlanError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map_err(|e| PlanError::Pattern {
                pattern: p.clone(),
                message: e.kind().to_string(),
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| PlanError::Pattern {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// The name a table gets in a dialect that truncates long identifiers.
pub fn target_name(dialect: Option<Dialect>, name: &str) -> String {
    match dialect.and_then(Dialect::max_identifier) {
        Some(max) if dialect == Some(Dialect::Postgres) && name.len() > max => {
            let mut end = max;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name[..end].to_string()
        }
        Some(max) if name.chars().count() > max => name.chars().take(max).collect(),
        _ => name.to_string(),
    }
}

/// Decides, table by table, what a run does.
pub fn plan(catalog: &Catalog, options: &PlanOptions) -> Result<Plan, PlanError> {
    let include = table_patterns(&options.include)?;
    let exclude = table_patterns(&options.exclude)?;
    if let Some(selected) = &options.companies {
        let known: Vec<String> = catalog.companies.iter().map(|c| c.name.clone()).collect();
        let unknown: Vec<String> = selected
            .iter()
            .filter(|s| !known.contains(s))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(PlanError::UnknownCompanies(unknown, known));
        }
    }
    let by_design = by_design_exclusions(options.product);
    let mut tables: Vec<PlannedTable> = catalog
        .tables
        .iter()
        .map(|t| {
            let base = t.base.as_str();
            let skip = if by_design.iter().any(|d| d.eq_ignore_ascii_case(base)) {
                Some(Skip::ByDesign)
            } else if exclude.is_match(base) {
                Some(Skip::Filtered(
                    "not migrated: matches spec.tables.exclude".into(),
                ))
            } else if !options.include.is_empty() && !include.is_match(base) {
                Some(Skip::Filtered(
                    "not migrated: matches no pattern of spec.tables.include".into(),
                ))
            } else if let (Some(company), Some(selected)) = (&t.company, &options.companies) {
                (!selected.contains(company)).then_some(Skip::CompanyNotSelected)
            } else {
                None
            };
            PlannedTable {
                target_name: target_name(options.target, &t.def.name),
                source: t.clone(),
                skip,
            }
        })
        .collect();
    // Two tables that would land on one target name: neither is copied, nothing is merged.
    let mut by_target: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in tables.iter().enumerate() {
        by_target.entry(t.target_name.clone()).or_default().push(i);
    }
    for indexes in by_target.values().filter(|v| v.len() > 1) {
        let names: Vec<String> = indexes
            .iter()
            .map(|&i| tables[i].source.def.name.clone())
            .collect();
        for &i in indexes {
            let t = &mut tables[i];
            if t.skip.is_none() || t.skip == Some(Skip::ByDesign) {
                t.skip = Some(Skip::NameConflict(format!(
                    "not migrated: the target keeps only the first {} bytes of a name, and {names:?} \
                     would all become {:?}; nothing is merged",
                    options
                        .target
                        .and_then(Dialect::max_identifier)
                        .unwrap_or_default(),
                    t.target_name
                )));
            }
        }
    }
    Ok(Plan { tables })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TableDef;
    use crate::engine::catalog::{Company, company_sql_name};

    fn catalog(names: &[&str]) -> Catalog {
        let defs = names
            .iter()
            .map(|n| TableDef {
                name: n.to_string(),
                columns: vec![],
                primary_key: vec![],
                est_rows: 0,
                est_bytes: 0,
            })
            .collect();
        let companies = ["CRONUS", "Contoso Ltd."]
            .iter()
            .map(|n| Company {
                name: n.to_string(),
                sql_name: company_sql_name(n),
            })
            .collect();
        Catalog::from_parts(defs, companies)
    }

    fn skips(plan: &Plan) -> Vec<(String, Option<Skip>)> {
        plan.tables
            .iter()
            .map(|t| (t.source.def.name.clone(), t.skip.clone()))
            .collect()
    }

    #[test]
    fn permissions_filters_and_companies() {
        let c = catalog(&[
            "CRONUS$Item",
            "CRONUS$Item Buffer",
            "Contoso Ltd_$Item",
            "Access Control",
            "Tenant Media",
            "CRONUS$Customer",
        ]);
        let options = PlanOptions {
            exclude: vec!["*buffer".into()],
            include: vec!["Item*".into(), "Tenant*".into(), "Access*".into()],
            companies: Some(vec!["CRONUS".into()]),
            ..Default::default()
        };
        let p = plan(&c, &options).unwrap();
        assert_eq!(
            skips(&p),
            vec![
                ("CRONUS$Item".into(), None),
                (
                    "CRONUS$Item Buffer".into(),
                    Some(Skip::Filtered(
                        "not migrated: matches spec.tables.exclude".into()
                    ))
                ),
                ("Contoso Ltd_$Item".into(), Some(Skip::CompanyNotSelected)),
                ("Access Control".into(), Some(Skip::ByDesign)),
                ("Tenant Media".into(), None),
                (
                    "CRONUS$Customer".into(),
                    Some(Skip::Filtered(
                        "not migrated: matches no pattern of spec.tables.include".into()
                    ))
                ),
            ]
        );
    }

    #[test]
    fn per_database_tables_migrate_whatever_the_companies() {
        let c = catalog(&["Tenant Media", "CRONUS$Item"]);
        let p = plan(
            &c,
            &PlanOptions {
                companies: Some(vec![]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(skips(&p)[0], ("Tenant Media".into(), None));
        assert_eq!(skips(&p)[1].1, Some(Skip::CompanyNotSelected));
    }

    #[test]
    fn unknown_companies_and_bad_patterns_are_errors() {
        let c = catalog(&["CRONUS$Item"]);
        let e = plan(
            &c,
            &PlanOptions {
                companies: Some(vec!["Nope".into()]),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown companies [\"Nope\"]"),
            "{e}"
        );
        let e = plan(
            &c,
            &PlanOptions {
                exclude: vec!["[abc".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("invalid table pattern \"[abc\""),
            "{e}"
        );
    }

    #[test]
    fn long_names_that_collide_in_postgres_are_not_merged() {
        let long = "x".repeat(60);
        let a = format!("CRONUS${long}Entry A");
        let b = format!("CRONUS${long}Entry B");
        let c = catalog(&[&a, &b, "CRONUS$Item"]);
        let p = plan(
            &c,
            &PlanOptions {
                target: Some(Dialect::Postgres),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(matches!(p.tables[0].skip, Some(Skip::NameConflict(_))));
        assert!(matches!(p.tables[1].skip, Some(Skip::NameConflict(_))));
        assert_eq!(p.tables[2].skip, None);
        assert_eq!(p.tables[0].target_name.len(), 63);
        // Unicode is cut on a character boundary.
        assert_eq!(
            target_name(Some(Dialect::Postgres), &"é".repeat(40)).len(),
            62
        );
    }
}
