//! The database: a trivial query within the deadline.

use std::time::Duration;

use super::{unexpected, Clock, ProbeError, ProbeOk};
use crate::store::Store;

/// The database answers a trivial query within the timeout.
pub async fn database(store: &Store, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let count = clock
        .run("the database", async {
            let mut tx = store.begin().await?;
            let count = tx.ping().await?;
            tx.commit().await?;
            Ok(count)
        })
        .await?;
    if count != 1 {
        return Err(unexpected("a count of 1", count.to_string()));
    }
    Ok(ProbeOk {
        detail: format!("{} answered", store.backend().as_str()),
        latency: clock.elapsed(),
        peer_cert: None,
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::health::probes::test_support::*;

    #[tokio::test]
    async fn database_answers() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DatabaseUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("probe.db").display()
        ))
        .unwrap();
        let store = Store::connect(&url).await.unwrap();
        let ok = database(&store, SHORT).await.unwrap();
        assert_eq!(ok.detail, "sqlite answered");
        store.close().await;
    }

    /// A PostgreSQL store whose pool connects on first use, to `addr`.
    fn lazy_postgres(addr: SocketAddr) -> Store {
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("modoboa")
            .database("modoboa");
        Store::from_pool(crate::store::Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new().connect_lazy_with(opts),
        ))
    }

    #[tokio::test]
    async fn database_wrong_silent_refused() {
        // Not PostgreSQL: an SMTP banner, then a hang-up.
        let (listener, addr) = tcp().await;
        hang_up(listener, "220 mail ESMTP\r\n");
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert!(matches!(err, ProbeError::Database(_)), "{err}");

        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the database"
        );

        // sqlx's pool retries a refused connection until its deadline: a timeout here.
        let addr = refused_addr().await;
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
}
