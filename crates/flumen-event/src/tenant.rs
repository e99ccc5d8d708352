use std::fmt;
use std::sync::Arc;

/// The tenant an event belongs to.
///
/// Every event has exactly one. Until multi-tenancy lands, every sender maps to
/// [`TenantId::default_tenant`]; the field exists from the start so that the durable log, the
/// outputs and (later) the store never need retrofitting. A tenant is decided by the sender's
/// credentials, never by a field the sender writes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The name of the tenant every sender belongs to when no credentials say otherwise.
    pub const DEFAULT_NAME: &'static str = "default";

    /// The single default tenant.
    pub fn default_tenant() -> Self {
        Self(Arc::from(Self::DEFAULT_NAME))
    }

    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
