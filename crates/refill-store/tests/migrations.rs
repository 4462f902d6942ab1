//! Migration parity: both backends carry the same migration versions and names, and once migrated the
//! same tables with the same columns.

mod common;

use std::collections::BTreeMap;

use refill_store::{POSTGRES_MIGRATOR, Pools, SQLITE_MIGRATOR, Store};

#[test]
fn both_backends_have_the_same_migration_versions_and_names() {
    let versions = |migrator: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
        migrator.iter().map(|m| (m.version, m.description.to_string())).collect()
    };
    assert_eq!(versions(&SQLITE_MIGRATOR), versions(&POSTGRES_MIGRATOR));
    assert!(SQLITE_MIGRATOR.iter().any(|m| m.version == 1), "0001_core exists");
}

/// Table name -> sorted column names, without the migration bookkeeping table.
async fn schema(store: &Store) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = match &store.pools {
        Pools::Sqlite { read, .. } => sqlx::query_as(
            "select m.name, p.name from sqlite_master m join pragma_table_info(m.name) p \
             where m.type = 'table' and m.name not like 'sqlite_%' and m.name <> '_sqlx_migrations'",
        )
        .fetch_all(read)
        .await
        .unwrap(),
        Pools::Postgres(pool) => sqlx::query_as(
            "select table_name::text, column_name::text from information_schema.columns \
             where table_schema = 'public' and table_name <> '_sqlx_migrations'",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        tables.entry(table).or_default().push(column);
    }
    for columns in tables.values_mut() {
        columns.sort();
    }
    tables
}

#[tokio::test]
async fn migrated_backends_have_the_same_tables_and_columns() {
    let sqlite = common::sqlite().await;
    let Some(postgres) = common::postgres().await else { return };
    let (left, right) = (schema(&sqlite.store).await, schema(&postgres.store).await);
    for table in left.keys().chain(right.keys()) {
        assert_eq!(left.get(table), right.get(table), "table {table}: sqlite vs postgres columns");
    }
    assert!(left.contains_key("audit_events") && left.contains_key("patients"));
}

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    for db in common::backends().await {
        let before = schema(&db.store).await;
        db.store.migrate().await.unwrap();
        assert_eq!(schema(&db.store).await, before, "{}", db.name);
    }
}
