//! The state interface the engine updates, and an in-memory implementation.
//!
//! A store hands out the window state of one user or merchant for update; the
//! worker's implementation keeps a bounded cache in front of RocksDB and writes
//! what changed once per micro-batch.

use std::collections::HashMap;
use std::convert::Infallible;

use crate::config::WindowConfig;
use crate::merchant::MerchantState;
use crate::window::UserState;

/// Mutable access to per-key window state.
pub trait StateStore {
    /// Why state could not be read.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The user's state (empty when new), marked as changed.
    fn user(&mut self, user_id: i64, cfg: &WindowConfig) -> Result<&mut UserState, Self::Error>;

    /// The merchant's state (empty when new), marked as changed.
    fn merchant(
        &mut self,
        merchant_id: i64,
        cfg: &WindowConfig,
    ) -> Result<&mut MerchantState, Self::Error>;
}

/// State held in hash maps: tests, benchmarks of the engine alone, and the
/// brute-force comparisons.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// Users' states.
    pub users: HashMap<i64, UserState>,
    /// Merchants' states.
    pub merchants: HashMap<i64, MerchantState>,
}

impl StateStore for MemoryStore {
    type Error = Infallible;

    fn user(&mut self, user_id: i64, _: &WindowConfig) -> Result<&mut UserState, Infallible> {
        Ok(self.users.entry(user_id).or_default())
    }

    fn merchant(
        &mut self,
        merchant_id: i64,
        _: &WindowConfig,
    ) -> Result<&mut MerchantState, Infallible> {
        Ok(self.merchants.entry(merchant_id).or_default())
    }
}
