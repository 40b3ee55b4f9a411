//! Pieces every domain uses: form fields, and sealing secrets at rest.

pub mod fields;
#[cfg(feature = "ssr")]
pub mod seal;
