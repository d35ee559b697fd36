//! Test support for the paranix integration tests (`tests/it`).
