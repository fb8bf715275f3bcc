//! Versioned schema migrations, shipped with the crate and applied at start.

use deadpool_postgres::Object;

use crate::PostgresError;

/// The crate's migrations, oldest first: `(version, name, SQL)`. Append only; never edit one
/// that was released.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "orders", include_str!("../migrations/0001_orders.sql")),
    (
        2,
        "placed_by_actor",
        include_str!("../migrations/0002_placed_by_actor.sql"),
    ),
];

/// An arbitrary constant: the advisory lock that serialises migrations of concurrent starts.
const LOCK_KEY: i64 = 0x6f72_6465_725f_6673; // "order_fs"

/// Applies every migration not yet recorded in `order_fsm_migrations`, in one transaction
/// under an advisory lock (workers starting together apply each migration once). Returns
/// the versions applied now.
pub(crate) async fn migrate(client: &mut Object) -> Result<Vec<i32>, PostgresError> {
    let query = |source| PostgresError::Query {
        operation: "migrate",
        source,
    };
    let tx = client.transaction().await.map_err(query)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(query)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS order_fsm_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(query)?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM order_fsm_migrations", &[])
        .await
        .map_err(query)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        let failed = |source| PostgresError::Migration {
            version,
            name,
            source,
        };
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO order_fsm_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(failed)?;
        applied.push(version);
    }
    tx.commit().await.map_err(query)?;
    Ok(applied)
}
