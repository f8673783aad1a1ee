//! The worker's HTTP endpoint: its port and paths.

/// Port of the worker's HTTP endpoint in a Pod.
pub const HTTP_PORT: u16 = 8080;

/// Liveness: `200 ok` while the process serves.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: `200` once restored and caught up, `503` before.
pub const READYZ: &str = "/readyz";
/// Prometheus/OpenMetrics text.
pub const METRICS: &str = "/metrics";
/// [`crate::WorkerStatus`] as JSON.
pub const STATUS: &str = "/status";
/// `POST` a [`crate::TriggerSavepoint`] here to take a savepoint.
pub const SAVEPOINTS: &str = "/savepoints";
/// One savepoint (`GET`, `DELETE`), as a route template with an `{id}` segment.
pub const SAVEPOINT_ROUTE: &str = "/savepoints/{id}";

/// The path of the savepoint `id` (`/savepoints/<id>`).
pub fn savepoint(id: &str) -> String {
    format!("{SAVEPOINTS}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_template_matches_the_path() {
        assert_eq!(SAVEPOINT_ROUTE.replace("{id}", "sp-1"), savepoint("sp-1"));
    }
}
