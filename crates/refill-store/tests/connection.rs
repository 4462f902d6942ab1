//! Connection settings the store relies on: PostgreSQL connections plan every statement with its bound
//! values (`plan_cache_mode = force_custom_plan`), so a one-patient read does not run on a generic plan
//! made for any patient-id range.

mod common;

use refill_store::Pools;

#[tokio::test]
async fn postgres_connections_plan_with_the_bound_values() {
    for db in common::backends().await {
        let Pools::Postgres(pool) = &db.store.pools else { continue };
        let mode: String = sqlx::query_scalar("show plan_cache_mode").fetch_one(pool).await.unwrap();
        assert_eq!(mode, "force_custom_plan", "{}", db.name);
    }
}
