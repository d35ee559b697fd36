//! Test support for the paranix integration tests (`tests/it`).

/// A local AWS (moto plus paranix's extensions) for tests that drive the real SDK clients: see
/// [`moto::MotoServer`].
pub mod moto;
