//! The REST API v1, compatible with Modoboa's (`/api/v1/`, `Authorization: Token <key>`).

use super::Web;

pub fn routes() -> axum::Router<Web> {
    axum::Router::new()
}
